"""GetEvidence at scale: one quote serves a batch, and the pipeline never waits for a quote.

Real simulated TDX with a quote latency, the agent in process; every piece of
evidence is appraised by the verifier.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from attestd.agent.config import parse_config
from attestd.agent.evidence_batcher import SIGNING_BURST_S, EvidenceBatcher, Pending, _SigningBudget
from attestd.agent.service import Agent
from attestd.evidence import Statement, open_evidence, replay
from attestd.tee.tdx.simulated import SimulatedTdxBackend
from attestd.verifier import Policy, appraise, load_policy

MakeAgent = Callable[..., Agent]


@pytest.fixture
def make_agent(tmp_path: Path) -> Iterator[MakeAgent]:
    agents: list[Agent] = []

    def make(*, latency_ms: int, **evidence: Any) -> Agent:
        raw = {
            "agent": {"state_dir": "state"},
            "tee": {"backend": "simulated-tdx", "simulated": {"quote_latency_ms": latency_ms}},
            "evidence": evidence,
        }
        agent = Agent.open(parse_config(raw, base_dir=tmp_path))
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.close()


def _policy(tmp_path: Path) -> Policy:
    backend = SimulatedTdxBackend.open(tmp_path / "state")
    (tmp_path / "root.pem").write_bytes(backend.trust_root_pem())
    (tmp_path / "policy.toml").write_text(
        '[trust]\nroot = "simulated"\nsimulated_root = "root.pem"\n'
        "[freshness]\nmax_age_seconds = 300\n"
    )
    return load_policy(tmp_path / "policy.toml")


def _ask(agent: Agent, count: int) -> list[tuple[bytes, bytes]]:
    """``count`` concurrent GetEvidence calls: (nonce, envelope) each."""
    nonces = [os.urandom(32) for _ in range(count)]
    with ThreadPoolExecutor(count) as pool:
        envelopes = list(pool.map(lambda n: agent.evidence(n, []), nonces))
    return list(zip(nonces, envelopes, strict=True))


def _statement(envelope: bytes) -> Statement:
    return open_evidence(envelope)[1]


def _assert_all_appraise(answers: list[tuple[bytes, bytes]], policy: Policy) -> None:
    for nonce, envelope in answers:
        result = appraise(envelope, nonce=nonce, policy=policy)
        assert not result.failures, result.to_json()["checks"]


def test_concurrent_requests_share_fewer_quotes(make_agent: MakeAgent, tmp_path: Path) -> None:
    agent = make_agent(latency_ms=100)
    answers = _ask(agent, 40)
    statements = [_statement(e) for _, e in answers]
    quotes = {s.predicate.quote for s in statements}
    assert len(quotes) <= 10  # 40 requests, a handful of quotes
    assert max(s.predicate.membership.proof.tree_size for s in statements) > 1
    _assert_all_appraise(answers, _policy(tmp_path))


def test_the_maximum_batch_size_is_honoured(make_agent: MakeAgent, tmp_path: Path) -> None:
    agent = make_agent(latency_ms=50, max_batch=4)
    answers = _ask(agent, 16)
    statements = [_statement(e) for _, e in answers]
    sizes = {s.predicate.quote: s.predicate.membership.proof.tree_size for s in statements}
    assert max(sizes.values()) == 4
    assert len(sizes) >= 4
    _assert_all_appraise(answers, _policy(tmp_path))


def test_batching_off_takes_one_quote_per_request(make_agent: MakeAgent, tmp_path: Path) -> None:
    agent = make_agent(latency_ms=20, batching=False)
    answers = _ask(agent, 6)
    statements = [_statement(e) for _, e in answers]
    assert len({s.predicate.quote for s in statements}) == 6
    assert {s.predicate.membership.proof.tree_size for s in statements} == {1}
    _assert_all_appraise(answers, _policy(tmp_path))


def test_events_recorded_while_quotes_are_in_flight_keep_evidence_valid(
    make_agent: MakeAgent, tmp_path: Path
) -> None:
    agent = make_agent(latency_ms=80)
    # Another user of the quote device: the agent's TD report is then taken up to one
    # quote latency after its batch was cut, as under configfs-tsm's global lock.
    other = SimulatedTdxBackend.open(tmp_path / "state")
    other.set_quote_latency(80)
    stop = threading.Event()

    def record() -> None:
        while not stop.is_set():
            agent.record_event("pipeline", "step", b"x")
            time.sleep(0.002)

    def quote_elsewhere() -> None:
        while not stop.is_set():
            other.get_quote(bytes(64))

    threads = [threading.Thread(target=record), threading.Thread(target=quote_elsewhere)]
    for thread in threads:
        thread.start()
    try:
        answers = [pair for _ in range(4) for pair in _ask(agent, 8)]
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    statements = [_statement(e) for _, e in answers]
    # The race happened: some quotes saw events recorded after their batch was cut.
    assert any(replay(s.predicate.runtime_log) != s.predicate.binding.log_head for s in statements)
    _assert_all_appraise(answers, _policy(tmp_path))


def test_recording_does_not_wait_for_a_quote_in_flight(make_agent: MakeAgent) -> None:
    agent = make_agent(latency_ms=1000)
    pending = agent.evidence_future(os.urandom(32), [])
    time.sleep(0.1)  # the quote is now in flight
    started = time.monotonic()
    agent.record_event("pipeline", "during", b"quote")
    assert time.monotonic() - started < 0.5
    assert not pending.done()
    pending.result(timeout=10)


# -- the batcher: signing overlaps the next quote ------------------------------------------


def test_the_next_quote_is_taken_while_the_previous_batch_is_still_being_signed() -> None:
    signing, release = threading.Event(), threading.Event()
    served: list[int] = []

    def serve(batch: Any) -> Callable[[], None] | None:
        served.append(len(batch))
        if len(served) > 1:
            for pending in batch:
                pending.future.set_result(b"second")
            return None

        def sign() -> None:
            signing.set()
            assert release.wait(10)
            for pending in batch:
                pending.future.set_result(b"first")

        return sign

    batcher: EvidenceBatcher[str] = EvidenceBatcher(serve, max_batch=8)
    first = batcher.submit("a")
    assert signing.wait(10)
    second = batcher.submit("b")
    assert second.result(10) == b"second"  # quoted and answered while batch one signs
    assert not first.done()
    release.set()
    assert first.result(10) == b"first"
    batcher.close()


def test_a_failed_signing_step_fails_what_it_left_unanswered() -> None:
    started, gate = threading.Event(), threading.Event()

    def serve(batch: list[Pending[str]]) -> Callable[[], None] | None:
        if batch[0].request == "hold":  # keeps the worker busy while the next batch gathers
            started.set()
            assert gate.wait(10)
            batch[0].future.set_result(b"held")
            return None

        def sign() -> None:
            batch[0].future.set_result(b"signed")
            raise RuntimeError("the signer broke")

        return sign

    batcher: EvidenceBatcher[str] = EvidenceBatcher(serve, max_batch=8)
    held = batcher.submit("hold")
    assert started.wait(10)
    answered, left = batcher.submit("a"), batcher.submit("b")
    gate.set()
    assert held.result(10) == b"held"
    assert answered.result(10) == b"signed"
    with pytest.raises(RuntimeError, match="signer broke"):
        left.result(10)
    batcher.close()


# -- the batcher: signing's share of the time is bounded --------------------------------------


class _FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_signing_beyond_its_share_waits_until_the_budget_refills() -> None:
    clock = _FakeClock()
    budget = _SigningBudget(0.5, clock, clock.sleep)
    budget.wait()
    assert clock.slept == []  # a full burst is there to spend
    started = budget.start()
    clock.now += SIGNING_BURST_S + 3.0  # the burst, and 3 s more
    budget.spend(started)
    budget.wait()
    # Overdrawn by 3 s, of which 0.5 s per second of signing (2.5 s) refilled meanwhile:
    # the 0.5 s left is refilled after 1 s more.
    assert clock.slept == [pytest.approx(1.0)]
    budget.wait()
    assert clock.slept == [pytest.approx(1.0)]  # paid off: no more waiting


def test_a_signer_busy_all_the_time_is_held_to_its_share() -> None:
    clock = _FakeClock()
    budget = _SigningBudget(0.5, clock, clock.sleep)
    began = clock.now
    signing = 0.0
    for _ in range(200):  # batches of 0.1 s each, back to back
        budget.wait()
        started = budget.start()
        clock.now += 0.1
        signing += 0.1
        budget.spend(started)
    elapsed = clock.now - began
    # Over 20 s of signing: at most half the time, plus the initial burst.
    assert signing <= 0.5 * elapsed + SIGNING_BURST_S + 0.1
    assert signing >= 0.5 * elapsed - 0.1  # and no less: the budget is spent, not wasted


def test_an_occasional_batch_is_signed_without_waiting() -> None:
    clock = _FakeClock()
    budget = _SigningBudget(0.5, clock, clock.sleep)
    for _ in range(20):  # a slow quote's batch: 0.6 s of signing once a second
        budget.wait()
        started = budget.start()
        clock.now += 0.6
        budget.spend(started)
        clock.now += 0.6  # the next quote
    assert clock.slept == []


@pytest.mark.parametrize("share", [0.0, -0.5, 1.5])
def test_a_signing_share_outside_zero_to_one_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="signing_share"):
        EvidenceBatcher(lambda batch: None, max_batch=1, signing_share=share)
