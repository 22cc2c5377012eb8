"""Webhooks: each status change POSTed, signed, to every configured URL, retried with backoff.

    sender = WebhookSender(store, WebhookConfig(urls=("https://alerts/x",)), ear_key, metrics)
    poller = Poller(..., on_change=sender.status_changed)
    sender.start()

The body (``Content-Type: application/jwt``) is a compact JWS, ES256, signed
with the service's EAR key, whose claims are the change (``agent``,
``old_status``, ``new_status``, ``reason``, ``change_id``, ``iat``) and
``ear``, the EAR of the appraisal that caused it (absent when there was
none: an unreachable agent, a log that went backwards). A receiver checks
the signature with the same public key it checks EARs with.

Deliveries live in the store, so a restart or another replica carries on with
them. The queue is bounded (``max_queued``): beyond it a change is dropped and
counted (``attestd_verifier_webhook_deliveries{outcome="dropped"}``), never
held in memory. A failed attempt (connection error, timeout, non-2xx) is
retried after 1, 2, 4, ... seconds (at most 5 minutes, with jitter) up to
``max_attempts``, then marked failed.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from attestd.verifier.metrics import VerifierMetrics
from attestd.verifier.service.config import WebhookConfig
from attestd.verifier.service.store import Delivery, StatusChange, Store

__all__ = ["BODY_TYPE", "WebhookSender", "backoff_s"]

_log = logging.getLogger("attestd.verifier.service.webhooks")

BODY_TYPE = "attestd-status+jwt"
_TIMEOUT_S = 5.0
_HOLD_S = 30.0  # longer than one attempt can take
_MAX_BACKOFF_S = 300.0


def backoff_s(attempts: int) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones (jittered by ±20 %)."""
    base = min(_MAX_BACKOFF_S, 2.0 ** max(0, attempts - 1))
    return base * random.uniform(0.8, 1.2)  # noqa: S311 - scheduling, not secrets


class WebhookSender:
    """Queues signed status changes and delivers them from a thread of its own."""

    def __init__(
        self,
        store: Store,
        config: WebhookConfig,
        key: ec.EllipticCurvePrivateKey,
        metrics: VerifierMetrics,
        *,
        tick_s: float = 0.2,
    ) -> None:
        self._store = store
        self._config = config
        self._key = key
        self._metrics = metrics
        self._tick_s = tick_s
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def status_changed(self, change: StatusChange, ear: str | None) -> None:
        """Queue ``change`` for every URL (a ``Poller`` change listener)."""
        if not self._config.urls:
            return
        claims: dict[str, Any] = {
            "agent": change.agent_name,
            "change_id": change.id,
            "old_status": change.old_status,
            "new_status": change.new_status,
            "reason": change.reason,
            "iat": int(change.at),
        }
        if ear is not None:
            claims["ear"] = ear
        body = jwt.encode(claims, self._key, algorithm="ES256", headers={"typ": BODY_TYPE})
        for url in self._config.urls:
            queued = self._store.enqueue_delivery(
                change.agent_name,
                url,
                body.encode("ascii"),
                now=time.time(),
                max_queued=self._config.max_queued,
            )
            if not queued:
                _log.error("webhook queue full: change %d to %s dropped", change.id, url)
                self._metrics.webhook_attempt("dropped")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(_TIMEOUT_S * 2)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.deliver_due()
            except Exception:
                _log.exception("webhook delivery failed")
            self._stopping.wait(self._tick_s)

    def deliver_due(self) -> int:
        """Attempt every due delivery once; how many were attempted."""
        due = self._store.claim_deliveries(now=time.time(), limit=32, hold_s=_HOLD_S)
        for delivery in due:
            self._attempt(delivery)
        return len(due)

    def _attempt(self, delivery: Delivery) -> None:
        error = _post(delivery.url, delivery.body)
        attempts = delivery.attempts + 1
        now = time.time()
        if error is None:
            self._store.delivery_attempted(
                delivery.id, state="delivered", error="", next_attempt_at=now
            )
            self._metrics.webhook_attempt("delivered")
            return
        state = "queued" if attempts < self._config.max_attempts else "failed"
        _log.warning("webhook %s (attempt %d): %s", delivery.url, attempts, error)
        self._store.delivery_attempted(
            delivery.id, state=state, error=error, next_attempt_at=now + backoff_s(attempts)
        )
        self._metrics.webhook_attempt("failed" if state == "queued" else "dropped")


def _post(url: str, body: bytes) -> str | None:
    """POST ``body``; None on a 2xx answer, else what went wrong."""
    request = urllib.request.Request(  # noqa: S310 - the config admits http(s) URLs only
        url, data=body, method="POST", headers={"Content-Type": "application/jwt"}
    )
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:  # noqa: S310
            status = int(response.status)
    except urllib.error.HTTPError as err:
        return f"HTTP {err.code}"
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        return f"{type(err).__name__}: {err}"
    return None if 200 <= status < 300 else f"HTTP {status}"
