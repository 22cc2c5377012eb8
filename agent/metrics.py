"""The agent daemon's Prometheus metrics, on a registry of its own.

    metrics = AgentMetrics()
    metrics.event_recorded("pipeline")                 # or the agent's own domains
    metrics.refused("GetEvidence", "checkpoint_unknown")
    metrics.hashed("cpu", 4096)
    serve_metrics("127.0.0.1:9464", metrics.registry)   # attestd._metrics

The names are a public interface: the Grafana dashboard (``deploy/grafana``)
and alert rules query them, docs/metrics.md lists them, and tests check both
against this module.

Labels are bounded on purpose. A pipeline chooses its event domains freely, so
a ``domain`` label would let one pipeline grow the agent's memory and every
Prometheus server's without limit: events are counted by *kind* instead
(``pipeline``, ``artifact``, ``stage``). Refusal reasons are the class-level
``reason`` of the agent's typed errors and RPC names are those of
attestd.v1.Agent, so both are fixed sets.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Histogram

from attestd.agent.measurement_events import ARTIFACT_DOMAIN
from attestd.agent.stages import STAGE_DOMAIN

__all__ = ["EVENT_KINDS", "HASHERS", "AgentMetrics", "EventKind", "event_kind"]

#: What ``attestd_agent_events_recorded_total`` counts by (label ``kind``).
EVENT_KINDS = ("pipeline", "artifact", "stage")
#: Where artifact bytes are hashed (label ``hasher``).
HASHERS = ("cpu", "gpu")

EventKind = Literal["pipeline", "artifact", "stage"]

_AGENT_DOMAINS: dict[str, EventKind] = {ARTIFACT_DOMAIN: "artifact", STAGE_DOMAIN: "stage"}

# A quote is a few milliseconds simulated, tens to hundreds on TDX (the QGS
# round trip) and up to seconds when SNP fetches collateral; evidence adds
# the wait for the batch in flight.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Requests served by one quote: 1 (unbatched) up to [evidence] max_batch (at most 65536).
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536)


def event_kind(domain: str) -> EventKind:
    """The bounded ``kind`` label of an event of ``domain``: every pipeline domain is one."""
    return _AGENT_DOMAINS.get(domain, "pipeline")


class AgentMetrics:
    """The metric families one agent exports; every method is safe from any thread."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.evidence_seconds = Histogram(
            "attestd_agent_evidence_seconds",
            "Time from a GetEvidence request joining the queue to its signed envelope: "
            "the wait for the quote in flight, its own batch's quote, and signing.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.evidence_batch_size = Histogram(
            "attestd_agent_evidence_batch_size",
            "Evidence requests served by one quote.",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.quote_seconds = Histogram(
            "attestd_agent_quote_seconds",
            "Time the TEE backend took for one quote (report, quote and collateral).",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.events_recorded = Counter(
            "attestd_agent_events_recorded",
            "Events durably appended to the runtime log and extended into the register, "
            "by kind: pipeline (RecordEvent), artifact (measurements), stage.",
            ["kind"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "attestd_agent_refusals",
            "Calls answered with an error, by RPC and the error's stable reason "
            "(the attestd-reason trailer).",
            ["rpc", "reason"],
            registry=self.registry,
        )
        self.hashed_bytes = Counter(
            "attestd_agent_hashed_bytes",
            "Artifact bytes hashed by completed measurements, by hasher (cpu: sha256, "
            "gpu: BLAKE3 on the GPU).",
            ["hasher"],
            registry=self.registry,
        )
        # Every labelled series exists from the start at 0, so rate() and absent-series
        # alerts work before the first event (unknown reasons appear when first seen).
        for kind in EVENT_KINDS:
            self.events_recorded.labels(kind=kind)
        for hasher in HASHERS:
            self.hashed_bytes.labels(hasher=hasher)

    def event_recorded(self, domain: str, count: int = 1) -> None:
        """Count ``count`` events of ``domain`` that are logged and extended."""
        self.events_recorded.labels(kind=event_kind(domain)).inc(count)

    def refused(self, rpc: str, reason: str) -> None:
        """Count one call of ``rpc`` answered with the error whose reason is ``reason``."""
        self.refusals.labels(rpc=rpc, reason=reason).inc()

    def hashed(self, hasher: Literal["cpu", "gpu"], count: int) -> None:
        """Count ``count`` artifact bytes hashed on ``hasher``."""
        self.hashed_bytes.labels(hasher=hasher).inc(count)

    def time_evidence(self, future: Future[bytes]) -> Future[bytes]:
        """Observe the time until ``future`` yields evidence (failures are refusals, not
        latency); returns ``future`` so a call site stays one expression."""
        started = time.perf_counter()

        def done(settled: Future[bytes]) -> None:
            if not settled.cancelled() and settled.exception() is None:
                self.evidence_seconds.observe(time.perf_counter() - started)

        future.add_done_callback(done)
        return future
