"""Evidence larger than gRPC's default 4 MiB reaches the client whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from attestd.evidence import open_evidence
from tests.harness import SIMULATED_TEES, AgentProcess


@pytest.mark.parametrize("tee", SIMULATED_TEES)
def test_evidence_over_four_mebibytes_is_delivered(tmp_path: Path, tee: str) -> None:
    agent = AgentProcess(tmp_path, tee=tee)
    agent.start()
    try:
        with agent.pipeline() as client:
            for i in range(40):
                client.record("pipeline.big", "chunk", bytes([i % 256]) * (64 * 1024))
        with agent.verifier() as client:
            envelope = client.evidence(b"k" * 32)
    finally:
        assert agent.stop() == 0
    assert len(envelope) > 4 << 20
    _, statement = open_evidence(envelope)
    assert len(statement.predicate.runtime_log) == 40
