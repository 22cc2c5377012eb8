"""Incremental runtime logs: evidence from a verifier's checkpoint carries only later events.

The agent in process on simulated TDX (and SEV-SNP, which has no register);
every piece of evidence is appraised with the checkpoint its request named.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from attestd.agent.config import parse_config
from attestd.agent.errors import CheckpointUnknownError, EvidenceTooLargeError
from attestd.agent.service import Agent
from attestd.evidence import (
    LOG_START,
    LogCheckpoint,
    Statement,
    canonical_json,
    checkpoint_after,
    open_evidence,
    replay,
)
from attestd.evidence.envelope import sign_payload
from attestd.tee.snp.simulated import SimulatedSnpBackend
from attestd.tee.tdx.simulated import SimulatedTdxBackend
from attestd.verifier import AppraisalResult, Policy, appraise, load_policy

MakeAgent = Callable[..., Agent]
TEES = ("simulated-tdx", "simulated-snp")


@pytest.fixture
def make_agent(tmp_path: Path) -> Iterator[MakeAgent]:
    agents: list[Agent] = []

    def make(*, tee: str = "simulated-tdx", latency_ms: int = 0, **limits: Any) -> Agent:
        raw: dict[str, Any] = {
            "agent": {"state_dir": "state"},
            "tee": {"backend": tee, "simulated": {"quote_latency_ms": latency_ms}},
        }
        if limits:
            raw["limits"] = limits
        agent = Agent.open(parse_config(raw, base_dir=tmp_path))
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.close()


def _policy(tmp_path: Path, tee: str = "simulated-tdx") -> Policy:
    if tee == "simulated-tdx":
        root, name = SimulatedTdxBackend.open(tmp_path / "state").trust_root_pem(), "tdx"
    else:
        root, name = SimulatedSnpBackend.open(tmp_path / "state").trust_root_pem(), "sev-snp"
    (tmp_path / "root.pem").write_bytes(root)
    (tmp_path / "policy.toml").write_text(
        f'[trust]\nroot = "simulated"\nsimulated_root = "root.pem"\ntee = "{name}"\n'
        "[freshness]\nmax_age_seconds = 300\n"
    )
    return load_policy(tmp_path / "policy.toml")


def _record(agent: Agent, count: int, size: int = 8) -> None:
    for i in range(count):
        agent.record_event("pipeline", "step", bytes([i % 256]) * size)


def _statement(envelope: bytes) -> Statement:
    return open_evidence(envelope)[1]


def _ok(result: AppraisalResult) -> bool:
    """No check failed (the policy names no artifacts, so ``artifacts`` only warns)."""
    return not result.failures


def _check(result: AppraisalResult, name: str) -> tuple[str, str | None]:
    [check] = [c for c in result.checks if c.name == name]
    return check.status.value, check.reason


@pytest.mark.parametrize("tee", TEES)
def test_evidence_from_a_checkpoint_carries_only_later_events_and_appraises(
    make_agent: MakeAgent, tmp_path: Path, tee: str
) -> None:
    agent = make_agent(tee=tee)
    policy = _policy(tmp_path, tee)
    _record(agent, 5)
    nonce = os.urandom(32)
    first = agent.evidence(nonce, [])
    assert _ok(appraise(first, nonce=nonce, policy=policy))
    whole = _statement(first).predicate
    assert whole.log_start == LOG_START
    assert "logStart" not in whole.to_json()  # evidence from the beginning is unchanged
    checkpoint = checkpoint_after(LOG_START, whole.runtime_log)
    assert checkpoint.length == 5

    _record(agent, 3)
    nonce = os.urandom(32)
    later = agent.evidence(nonce, [], checkpoint)
    predicate = _statement(later).predicate
    assert predicate.log_start == checkpoint
    assert [e.sequence for e in predicate.runtime_log] == [5, 6, 7]
    result = appraise(later, nonce=nonce, policy=policy, checkpoint=checkpoint)
    assert _ok(result), result.to_json()["checks"]
    assert result.evidence.log_length == 8  # the log's length, not the events carried
    # The next checkpoint is the whole log's head: the slices chain.
    assert checkpoint_after(checkpoint, predicate.runtime_log).head == agent.info().log_head


def test_evidence_from_the_current_head_carries_no_events(
    make_agent: MakeAgent, tmp_path: Path
) -> None:
    agent = make_agent()
    _record(agent, 4)
    info = agent.info()
    checkpoint = LogCheckpoint(info.log_length, info.log_head)
    nonce = os.urandom(32)
    envelope = agent.evidence(nonce, [], checkpoint)
    assert _statement(envelope).predicate.runtime_log == ()
    assert _ok(appraise(envelope, nonce=nonce, policy=_policy(tmp_path), checkpoint=checkpoint))


@pytest.mark.parametrize(
    "make_checkpoint",
    [
        pytest.param(lambda agent: LogCheckpoint(99, bytes(48)), id="beyond-the-log"),
        pytest.param(lambda agent: LogCheckpoint(2, bytes([7]) * 48), id="another-head"),
        pytest.param(lambda agent: LogCheckpoint(2, agent.info().log_head), id="head-elsewhere"),
    ],
)
def test_a_checkpoint_the_agent_does_not_know_is_refused(
    make_agent: MakeAgent, make_checkpoint: Callable[[Agent], LogCheckpoint]
) -> None:
    agent = make_agent()
    _record(agent, 3)
    with pytest.raises(CheckpointUnknownError) as caught:
        agent.evidence(os.urandom(32), [], make_checkpoint(agent))
    assert caught.value.reason == "checkpoint_unknown"


def test_evidence_from_another_start_than_the_verifier_sent_is_refused(
    make_agent: MakeAgent, tmp_path: Path
) -> None:
    agent = make_agent()
    policy = _policy(tmp_path)
    _record(agent, 4)
    checkpoint = LogCheckpoint(
        2, replay(_statement(agent.evidence(os.urandom(32), [])).predicate.runtime_log[:2])
    )
    nonce = os.urandom(32)
    envelope = agent.evidence(nonce, [], checkpoint)
    # A verifier that sent no checkpoint, or another one, cannot vouch for the skipped events.
    for sent in (None, LogCheckpoint(1, agent._store.head_at(1))):
        result = appraise(envelope, nonce=nonce, policy=policy, checkpoint=sent)
        assert _check(result, "runtime_log") == ("fail", "log_start_mismatch")
        assert not _ok(result)
    # Whole-log evidence appraised as if from a checkpoint is refused the same way.
    nonce = os.urandom(32)
    whole = agent.evidence(nonce, [])
    result = appraise(whole, nonce=nonce, policy=policy, checkpoint=checkpoint)
    assert _check(result, "runtime_log") == ("fail", "log_start_mismatch")


def test_a_tampered_log_start_is_refused_even_when_re_signed(
    make_agent: MakeAgent, tmp_path: Path
) -> None:
    agent = make_agent()
    policy = _policy(tmp_path)
    _record(agent, 4)
    checkpoint = LogCheckpoint(2, agent._store.head_at(2))
    nonce = os.urandom(32)
    statement = _statement(agent.evidence(nonce, [], checkpoint)).to_json()
    predicate = statement["predicate"]
    assert isinstance(predicate, dict)
    # Claim the slice starts one event later, with that point's true head; signed by the
    # agent's own key, so only the log-start rule can catch it.
    moved = LogCheckpoint(3, agent._store.head_at(3))
    predicate["logStart"] = moved.to_json()
    forged = sign_payload(canonical_json(statement), agent._key)
    result = appraise(forged, nonce=nonce, policy=policy, checkpoint=checkpoint)
    assert _check(result, "runtime_log") == ("fail", "log_start_mismatch")
    # And a verifier fooled into sending the moved checkpoint still fails the replay.
    result = appraise(forged, nonce=nonce, policy=policy, checkpoint=moved)
    assert _check(result, "runtime_log") == ("fail", "runtime_log_mismatch")


def test_evidence_size_depends_on_the_events_since_the_checkpoint(
    make_agent: MakeAgent, tmp_path: Path
) -> None:
    agent = make_agent(max_log_events_in_evidence=50)
    policy = _policy(tmp_path)
    _record(agent, 400, size=2048)  # 400 events: eight times what evidence may carry
    with pytest.raises(EvidenceTooLargeError):
        agent.evidence(os.urandom(32), [])  # the whole log, as before, is refused
    sizes = {}
    for since in (2, 40):
        length = 400 - since
        checkpoint = LogCheckpoint(length, agent._store.head_at(length))
        nonce = os.urandom(32)
        envelope = agent.evidence(nonce, [], checkpoint)
        assert len(_statement(envelope).predicate.runtime_log) == since
        assert _ok(appraise(envelope, nonce=nonce, policy=policy, checkpoint=checkpoint))
        sizes[since] = len(envelope)
    # Each event carried costs its encoding (2 KiB content, base64); the history costs nothing.
    assert sizes[40] - sizes[2] > 38 * 2048
    assert sizes[2] < 400 * 2048 // 4


def test_one_batch_serves_members_from_different_checkpoints(
    make_agent: MakeAgent, tmp_path: Path
) -> None:
    agent = make_agent(latency_ms=300)
    policy = _policy(tmp_path)
    _record(agent, 6)
    starts = [
        None,
        LogCheckpoint(2, agent._store.head_at(2)),
        LogCheckpoint(5, agent._store.head_at(5)),
    ]
    blocker = agent.evidence_future(os.urandom(32), [])  # holds the quote device meanwhile
    time.sleep(0.1)  # the blocker's batch is cut; the three below wait for the next quote
    nonces = [os.urandom(32) for _ in starts]
    futures = [agent.evidence_future(n, [], s) for n, s in zip(nonces, starts, strict=True)]
    blocker.result()
    envelopes = [f.result() for f in futures]
    statements = [_statement(e).predicate for e in envelopes]
    assert len({p.quote for p in statements}) == 1  # one quote and one root for all three
    assert len({p.membership.root for p in statements}) == 1
    assert {p.membership.proof.tree_size for p in statements} == {3}
    assert [len(p.runtime_log) for p in statements] == [6, 4, 1]
    for nonce, envelope, start in zip(nonces, envelopes, starts, strict=True):
        result = appraise(envelope, nonce=nonce, policy=policy, checkpoint=start)
        assert _ok(result), result.to_json()["checks"]


def test_a_member_over_the_cap_fails_alone(make_agent: MakeAgent, tmp_path: Path) -> None:
    agent = make_agent(latency_ms=300, max_log_events_in_evidence=5)
    _record(agent, 8)
    blocker = agent.evidence_future(os.urandom(32), [], LogCheckpoint(8, agent._store.head_at(8)))
    time.sleep(0.1)  # both below join the next batch
    whole = agent.evidence_future(os.urandom(32), [])
    nonce = os.urandom(32)
    checkpoint = LogCheckpoint(6, agent._store.head_at(6))
    recent = agent.evidence_future(nonce, [], checkpoint)
    blocker.result()
    with pytest.raises(EvidenceTooLargeError):
        whole.result()
    result = appraise(recent.result(), nonce=nonce, policy=_policy(tmp_path), checkpoint=checkpoint)
    assert _ok(result)
