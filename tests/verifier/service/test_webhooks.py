"""Webhooks: signed status changes to a loopback HTTP server, retried, bounded; both backends."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from attestd.verifier.metrics import VerifierMetrics
from attestd.verifier.service.config import WebhookConfig
from attestd.verifier.service.store import StatusChange, Store
from attestd.verifier.service.webhooks import BODY_TYPE, WebhookSender


class _Receiver(HTTPServer):
    def __init__(self, answers: list[int]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answers = answers  # status codes to answer with, in order; then 200
        self.bodies: list[bytes] = []


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        self.server.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        code = self.server.answers.pop(0) if self.server.answers else 200
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver([500])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _change(change_id: int = 1) -> StatusChange:
    return StatusChange(change_id, "gpu-01", time.time(), "warning", "contraindicated", "log_fork")


def _counter(metrics: VerifierMetrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "attestd_verifier_webhook_deliveries_total", {"outcome": outcome}
    )
    return value or 0.0


def test_a_change_is_posted_signed_and_retried_after_a_failure(
    store: Store, receiver: _Receiver
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    metrics = VerifierMetrics()
    url = f"http://127.0.0.1:{receiver.server_port}/hook"
    sender = WebhookSender(store, WebhookConfig(urls=(url,)), key, metrics)
    sender.status_changed(_change(), None)
    assert sender.deliver_due() == 1  # answered 500
    assert _counter(metrics, "failed") == 1
    assert sender.deliver_due() == 0  # backing off
    time.sleep(1.3)  # the first backoff: 1 s, jittered by at most 20 %
    assert sender.deliver_due() == 1
    assert _counter(metrics, "delivered") == 1
    (delivery,) = store.deliveries()
    assert (delivery["state"], delivery["attempts"]) == ("delivered", 2)
    body = receiver.bodies[-1].decode()
    assert jwt.get_unverified_header(body)["typ"] == BODY_TYPE
    claims = jwt.decode(body, key.public_key(), algorithms=["ES256"])
    assert (claims["agent"], claims["new_status"], claims["reason"]) == (
        "gpu-01",
        "contraindicated",
        "log_fork",
    )
    assert "ear" not in claims  # no appraisal caused this change


def test_a_full_queue_drops_and_counts_and_a_dead_url_fails_after_max_attempts(
    store: Store,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    metrics = VerifierMetrics()
    # Nothing listens on port 9 of loopback here: every attempt is a connection error.
    config = WebhookConfig(urls=("http://127.0.0.1:9/hook",), max_queued=1, max_attempts=1)
    sender = WebhookSender(store, config, key, metrics)
    sender.status_changed(_change(1), "a.b.c")
    sender.status_changed(_change(2), "a.b.c")
    assert _counter(metrics, "dropped") == 1
    assert sender.deliver_due() == 1
    (delivery,) = store.deliveries()
    assert delivery["state"] == "failed" and delivery["last_error"]
    assert _counter(metrics, "dropped") == 2  # the give-up counts as dropped
