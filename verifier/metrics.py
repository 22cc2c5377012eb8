"""The verifier service's Prometheus metrics, on a registry of its own.

    metrics = VerifierMetrics()
    metrics.appraised("affirming", "ok", seconds=0.004)
    metrics.agents_by_status({"affirming": 9, "contraindicated": 1})
    serve_metrics("127.0.0.1:9465", metrics.registry)     # attestd._metrics

The names are a public interface: the Grafana dashboard (``deploy/grafana``) and
alert rules query them, and a test checks the dashboard against this module.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["STATUSES", "VerifierMetrics"]

#: Every status an agent can have in the fleet registry (AR4SI tiers plus the service's own).
STATUSES = ("affirming", "warning", "contraindicated", "none", "unreachable")

# Appraisals take milliseconds; a pull that includes fetching evidence over mTLS
# from an agent whose quote takes a second needs the upper buckets.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class VerifierMetrics:
    """The metric families one verifier replica exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.appraisals = Counter(
            "attestd_verifier_appraisals",
            "Appraisals finished, by resulting status and reason (ok when affirming).",
            ["status", "reason"],
            registry=self.registry,
        )
        self.appraisal_seconds = Histogram(
            "attestd_verifier_appraisal_seconds",
            "Time to appraise one piece of evidence, fetching excluded.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.pull_seconds = Histogram(
            "attestd_verifier_pull_seconds",
            "Time of one pull: nonce, evidence over mTLS, appraisal, storing the result.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.agents = Gauge(
            "attestd_verifier_agents",
            "Registered agents by current status.",
            ["status"],
            registry=self.registry,
        )
        self.leases_held = Gauge(
            "attestd_verifier_leases_held",
            "Agent leases this replica holds now.",
            registry=self.registry,
        )
        self.webhook_deliveries = Counter(
            "attestd_verifier_webhook_deliveries",
            "Webhook delivery attempts, by outcome (delivered, failed, dropped).",
            ["outcome"],
            registry=self.registry,
        )
        self.webhook_failures = Counter(
            "attestd_verifier_webhook_failures",
            "Webhook delivery attempts that failed (connection, timeout or non-2xx).",
            registry=self.registry,
        )

    def appraised(self, status: str, reason: str, *, seconds: float) -> None:
        """Count one appraisal and its latency."""
        self.appraisals.labels(status=status, reason=reason).inc()
        self.appraisal_seconds.observe(seconds)

    def agents_by_status(self, counts: Mapping[str, int]) -> None:
        """Set the per-status agent gauge; statuses absent from ``counts`` read 0."""
        for status in STATUSES:
            self.agents.labels(status=status).set(counts.get(status, 0))

    def webhook_attempt(self, outcome: str) -> None:
        """Count a webhook attempt: ``delivered``, ``failed`` (will retry) or ``dropped``."""
        self.webhook_deliveries.labels(outcome=outcome).inc()
        if outcome != "delivered":
            self.webhook_failures.inc()
