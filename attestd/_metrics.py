"""Serving Prometheus metrics: one HTTP endpoint per daemon, on its own registry.

    registry = CollectorRegistry()
    server = serve_metrics("127.0.0.1:9464", registry)   # GET /metrics
    ...
    server.close()

Each daemon (the agent, the verifier service) keeps its metrics in a registry of
its own rather than prometheus-client's global one, so that two services in one
process (tests, the fleet demo) never count into each other's series.
"""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from attestd.errors import AttestdError

__all__ = ["MetricsAddressError", "MetricsServer", "parse_metrics_address", "serve_metrics"]


class MetricsAddressError(AttestdError):
    """A metrics address is not ``HOST:PORT`` with an IP literal and a port in 0..65535."""

    reason = "metrics_address_invalid"


def parse_metrics_address(address: str) -> tuple[str, int]:
    """``"127.0.0.1:9464"`` or ``"[::1]:9464"`` as (host, port); port 0 picks a free one."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host:
        raise MetricsAddressError(f"metrics address {address!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        # A name would be resolved at bind time; an IP literal says exactly where it listens.
        raise MetricsAddressError(f"metrics host {host!r} is not an IP address") from None
    if not port_text.isascii() or not port_text.isdigit() or int(port_text) > 65535:
        raise MetricsAddressError(f"metrics port {port_text!r} is not in 0..65535")
    return host, int(port_text)


@dataclass(frozen=True)
class MetricsServer:
    """A running ``/metrics`` endpoint; ``port`` is the bound one (useful after port 0)."""

    host: str
    port: int
    _server: WSGIServer
    _thread: threading.Thread

    def close(self) -> None:
        """Stop serving and wait for the serving thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(address: str, registry: CollectorRegistry) -> MetricsServer:
    """Serve ``registry`` in the text exposition format at ``http://address/metrics``."""
    host, port = parse_metrics_address(address)
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(host, server.server_address[1], server, thread)
