"""Continuous appraisal against real agents on simulated TDX, on each database backend."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from attestd.verifier.ear import result_statuses, verify_result
from attestd.verifier.metrics import VerifierMetrics
from attestd.verifier.service.poller import (
    AGENT_NOT_SERVING,
    LOG_FORK,
    LOG_REGRESSION,
    UNREACHABLE,
    Poller,
    PollerSettings,
)
from attestd.verifier.service.store import StatusChange, Store
from tests.harness import SIMULATED_TEES, AgentProcess
from tests.verifier.service.fleet import restore_state, snapshot_state, spec_for

pytestmark = pytest.mark.slow


@pytest.fixture
def agent(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[AgentProcess]:
    process = AgentProcess(tmp_path / "agent", tee=getattr(request, "param", "simulated-tdx"))
    process.start()
    yield process
    if process.process is not None:
        process.stop()


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _poller(
    store: Store, key: ec.EllipticCurvePrivateKey, changes: list[StatusChange] | None = None
) -> Poller:
    def record(change: StatusChange, _ear: str | None) -> None:
        if changes is not None:
            changes.append(change)

    settings = PollerSettings(replica_id="r1", lease_s=10.0, jitter=0.0)
    return Poller(store, settings, key, VerifierMetrics(), on_change=record)


def _pull(poller: Poller) -> None:
    time.sleep(0.06)  # past the 0.05 s interval
    assert poller.pull_due() == 1


def _record(agent: AgentProcess, *operations: str) -> None:
    with agent.pipeline() as client:
        for operation in operations:
            client.record("pipeline.train", operation, b"{}")


@pytest.mark.parametrize("agent", SIMULATED_TEES, indirect=True)
def test_each_pull_appraises_only_the_new_events_and_signs_an_ear(
    store: Store, agent: AgentProcess, key: ec.EllipticCurvePrivateKey
) -> None:
    changes: list[StatusChange] = []
    poller = _poller(store, key, changes)
    record = store.add_agent(spec_for(agent, "gpu-01"), now=time.time())
    _record(agent, "a", "b")
    _pull(poller)
    first = store.latest_result("gpu-01")
    assert first is not None and first.ear is not None
    # A simulated TEE is at best a warning; the stored status is the EAR's.
    assert first.status == "warning", first.reason
    claims = verify_result(first.ear, key.public_key())
    assert set(result_statuses(claims).values()) == {"warning"}
    checkpoint = store.checkpoint(record.id)
    assert checkpoint is not None and checkpoint.length == first.log_length
    _record(agent, "c")
    _pull(poller)
    second = store.latest_result("gpu-01")
    assert second is not None and second.status == "warning"
    after = store.checkpoint(record.id)
    assert after is not None and after.length == checkpoint.length + 1
    assert [(c.old_status, c.new_status) for c in changes] == [("none", "warning")]


def test_a_log_rolled_back_is_a_regression_and_a_rewritten_one_a_fork(
    store: Store, agent: AgentProcess, key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    poller = _poller(store, key)
    store.add_agent(spec_for(agent, "gpu-01"), now=time.time())
    _record(agent, "a")
    snapshot_state(agent, tmp_path / "backup")
    _record(agent, "b", "c")
    _pull(poller)
    assert store.agent("gpu-01").status == "warning"
    # The state directory restored from a backup: the log is shorter than verified.
    agent.stop()
    restore_state(agent, tmp_path / "backup")
    agent.start()
    _pull(poller)
    regressed = store.agent("gpu-01")
    assert (regressed.status, regressed.status_reason) == ("contraindicated", LOG_REGRESSION)
    # Now as long as the verified log, but with other events: a fork.
    _record(agent, "x", "y", "z")
    _pull(poller)
    forked = store.agent("gpu-01")
    assert (forked.status, forked.status_reason) == ("contraindicated", LOG_FORK)
    latest = store.latest_result("gpu-01")
    assert latest is not None and latest.ear is None  # no appraisal, so no EAR to hand out


@pytest.mark.parametrize("agent", SIMULATED_TEES, indirect=True)
def test_a_pushed_whole_log_that_left_the_checkpoint_is_a_regression_or_a_fork(
    store: Store, agent: AgentProcess, key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    poller = _poller(store, key)
    record = store.add_agent(spec_for(agent, "gpu-01"), now=time.time())
    _record(agent, "a")
    snapshot_state(agent, tmp_path / "backup")
    _record(agent, "b", "c")
    _pull(poller)
    checkpoint = store.checkpoint(record.id)
    assert checkpoint is not None and checkpoint.length >= 3

    def push_whole_log() -> tuple[str, str]:
        # What agent/push.py sends when its log no longer holds the checkpoint.
        nonce = os.urandom(32)
        with agent.pipeline() as client:
            envelope = client.evidence(nonce)
        outcome = poller.appraise_pushed(
            store.agent("gpu-01"), envelope, nonce, checkpoint, started=time.time()
        )
        return outcome.status, outcome.reason

    # A whole log that does hold the checkpoint is refused for not starting there.
    assert push_whole_log() == ("contraindicated", "log_start_mismatch")
    agent.stop()
    restore_state(agent, tmp_path / "backup")
    agent.start()
    assert push_whole_log() == ("contraindicated", LOG_REGRESSION)
    _record(agent, "x", "y", "z")
    assert push_whole_log() == ("contraindicated", LOG_FORK)


def test_an_agent_that_stops_answering_is_unreachable(
    store: Store, agent: AgentProcess, key: ec.EllipticCurvePrivateKey
) -> None:
    poller = _poller(store, key)
    store.add_agent(spec_for(agent, "gpu-01"), now=time.time())
    _pull(poller)
    agent.stop()
    _pull(poller)
    gone = store.agent("gpu-01")
    assert (gone.status, gone.status_reason) == (UNREACHABLE, UNREACHABLE)
    assert store.summary() == {UNREACHABLE: 1}


def test_an_agent_whose_log_was_edited_disowns_it_and_is_contraindicated(
    store: Store, agent: AgentProcess, key: ec.EllipticCurvePrivateKey
) -> None:
    poller = _poller(store, key)
    store.add_agent(spec_for(agent, "gpu-01"), now=time.time())
    _record(agent, "train")
    _pull(poller)
    assert store.agent("gpu-01").status == "warning"
    _record(agent, "evaluate")  # after the verified checkpoint
    agent.stop()
    log = agent.state_dir / "runtime-log.jsonl"
    log.write_bytes(log.read_bytes().replace(b'"evaluate"', b'"evaluatE"'))
    agent.start()  # the log no longer replays to the simulated RTMR3: no evidence served
    _pull(poller)
    tampered = store.agent("gpu-01")
    assert (tampered.status, tampered.status_reason) == ("contraindicated", AGENT_NOT_SERVING)
    # An edit inside the verified prefix is caught earlier, as a fork from the checkpoint.
    agent.stop()
    log.write_bytes(log.read_bytes().replace(b'"train"', b'"trains"'))
    agent.start()
    _pull(poller)
    assert store.agent("gpu-01").status_reason == LOG_FORK
