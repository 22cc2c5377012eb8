"""Simulated evidence as the agent builds it: the one builder the suite and the tests share.

    events = demo_events(format_rfc3339(issued_at))       # a train stage loading MODEL
    bound = binding(key, subjects, events, nonce=nonce, issued_at=issued_at)
    statement = simulated_statement(backend, key, subjects, events, bound, host=HOST)
    evidence = sign_statement(statement, key)

The conformance generator (``generate.py``, ``_chains.py``), the tests'
evidence builders (``tests/verifier/simulated_evidence.py``,
``snp_evidence.py``) and ``benchmarks/appraisal.py`` make their evidence here;
the predicate's layout is the agent's own
(:func:`attestd.agent.service.evidence_predicate`). Which subjects a statement
names, and any forged change to its binding, stay the caller's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric import ec

from attestd.agent.service import evidence_predicate
from attestd.evidence import (
    Binding,
    RuntimeEvent,
    Statement,
    Subject,
    TeeClaims,
    key_id,
    public_key_pem,
    replay,
    report_data_for,
    subjects_digest,
)
from attestd.tee.snp.simulated import SimulatedSnpBackend
from attestd.tee.tdx.simulated import SimulatedTdxBackend

AGENT_VERSION = "0.1.0"
"""The agent version simulated evidence claims: fixed, so the suite does not follow releases."""

MODEL = Subject("/srv/models/demo", {"sha256": "11" * 32})
DATASET = Subject("/srv/data/train.parquet", {"sha256": "22" * 32})


def demo_events(stamp: str) -> tuple[RuntimeEvent, ...]:
    """The runtime log of a ``train`` stage that loads :data:`MODEL`, every event at ``stamp``."""
    return (
        RuntimeEvent(0, "pipeline", "stage.start", b"train", stamp),
        RuntimeEvent(1, "artifacts", "model.load", MODEL.name.encode(), stamp),
        RuntimeEvent(2, "pipeline", "stage.end", b"train", stamp),
    )


def binding(
    key: ec.EllipticCurvePrivateKey,
    subjects: Sequence[Subject],
    events: Sequence[RuntimeEvent],
    *,
    nonce: bytes,
    issued_at: datetime,
) -> Binding:
    """The binding the agent makes for ``subjects`` and the log ``events``, answering ``nonce``."""
    return Binding(
        nonce=nonce,
        subjects_digest=subjects_digest(subjects),
        log_head=replay(events),
        agent_key_id=key_id(key.public_key()),
        issued_at=issued_at,
    )


def simulated_statement(
    backend: SimulatedTdxBackend | SimulatedSnpBackend,
    key: ec.EllipticCurvePrivateKey,
    subjects: Sequence[Subject],
    events: Sequence[RuntimeEvent],
    bound: Binding,
    *,
    host: str,
) -> Statement:
    """The statement over ``bound`` with a fresh quote from ``backend``, as the agent makes it.

    ``host`` is the hostname claimed; the quote carries ``report_data_for(bound)``
    and the evidence ships what the backend's ``attest`` gives beside it (the
    TDX collateral, the SEV-SNP certificate chain).
    """
    predicate = evidence_predicate(
        bound,
        TeeClaims.of(backend.describe()),
        backend.attest(report_data_for(bound)),
        tuple(events),
        public_key_pem(key.public_key()),
        host={"hostname": host},
        agent_version=AGENT_VERSION,
    )
    return Statement(tuple(subjects), predicate)
