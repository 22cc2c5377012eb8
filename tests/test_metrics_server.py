"""The /metrics endpoint both daemons serve, and its address parser."""

from __future__ import annotations

import urllib.request

import pytest

from attestd._metrics import MetricsAddressError, parse_metrics_address, serve_metrics
from attestd.verifier.metrics import VerifierMetrics


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:0", ("::1", 0)),
        ("0.0.0.0:1", ("0.0.0.0", 1)),
    ],
)
def test_address_parses(text: str, expected: tuple[str, int]) -> None:
    assert parse_metrics_address(text) == expected


@pytest.mark.parametrize(
    "text", ["9464", ":9464", "localhost:9464", "127.0.0.1:", "127.0.0.1:65536", "1.2.3.4:x"]
)
def test_bad_address_is_refused_with_its_reason(text: str) -> None:
    with pytest.raises(MetricsAddressError) as info:
        parse_metrics_address(text)
    assert info.value.reason == "metrics_address_invalid"


def test_served_values_are_the_registry_of_this_service_only() -> None:
    first, second = VerifierMetrics(), VerifierMetrics()
    first.appraised("contraindicated", "log_regression", seconds=0.002)
    first.agents_by_status({"affirming": 3})
    first.webhook_attempt("failed")
    second.appraised("affirming", "ok", seconds=0.001)
    server = serve_metrics("127.0.0.1:0", first.registry)
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5).read()
    finally:
        server.close()
    text = body.decode()
    assert (
        'attestd_verifier_appraisals_total{reason="log_regression",status="contraindicated"} 1.0'
        in text
    )
    assert 'attestd_verifier_agents{status="affirming"} 3.0' in text
    assert 'attestd_verifier_agents{status="unreachable"} 0.0' in text
    assert "attestd_verifier_webhook_failures_total 1.0" in text
    assert 'status="affirming",reason="ok"' not in text and 'reason="ok"' not in text
