"""The verifier service's store, the same tests on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import replace

import pytest
from sqlalchemy import select

from attestd.evidence import LogCheckpoint
from attestd.verifier.service.schema import SCHEMA_VERSION, schema_version
from attestd.verifier.service.store import (
    AgentExistsError,
    AgentNotFoundError,
    AgentSpec,
    DatabaseUrlError,
    LeaseLostError,
    Outcome,
    Retention,
    Store,
)


def _spec(name: str = "gpu-01", interval_s: float = 10.0) -> AgentSpec:
    return AgentSpec(
        name=name,
        address="127.0.0.1:7443",
        cert_path="/etc/v/client.pem",
        key_path="/etc/v/client.key",
        ca_path="/etc/v/ca.pem",
        server_name="localhost",
        policy_path="/etc/v/policy.toml",
        interval_s=interval_s,
    )


def _affirming(started_at: float, checkpoint: LogCheckpoint | None = None) -> Outcome:
    return Outcome("affirming", "ok", started_at, ear="x.y.z", log_length=3, checkpoint=checkpoint)


def test_migrations_are_applied_once_and_reopening_is_idempotent(
    store: Store, database_url: str
) -> None:
    again = Store.open(database_url, now=time.time())
    with again.engine.connect() as connection:
        versions = list(connection.execute(select(schema_version.c.version)).scalars())
    again.close()
    assert versions == list(range(1, SCHEMA_VERSION + 1))


def test_agents_are_registered_listed_and_removed(store: Store) -> None:
    record = store.add_agent(_spec("b"), now=100.0)
    store.add_agent(_spec("a"), now=100.0)
    assert record.status == "none" and record.next_due_at == 100.0
    assert [a.spec.name for a in store.agents()] == ["a", "b"]
    with pytest.raises(AgentExistsError):
        store.add_agent(_spec("a"), now=101.0)
    store.remove_agent("a")
    assert [a.spec.name for a in store.agents()] == ["b"]
    with pytest.raises(AgentNotFoundError):
        store.remove_agent("a")
    assert store.summary() == {"none": 1}


def test_a_due_agent_is_leased_to_one_replica_until_it_expires(store: Store) -> None:
    agent = store.add_agent(_spec(), now=100.0)
    assert [a.id for a in store.claim_due("r1", now=100.0, lease_s=5, limit=4)] == [agent.id]
    assert store.claim_due("r2", now=101.0, lease_s=5, limit=4) == []
    assert store.leases_held("r1", now=101.0) == 1
    # r1 died: once its lease expires, r2 takes the agent.
    assert [a.id for a in store.claim_due("r2", now=105.0, lease_s=5, limit=4)] == [agent.id]
    with pytest.raises(LeaseLostError):
        store.finish(agent.id, "r1", _affirming(100.0), now=105.5, next_due_at=200.0)
    assert store.latest_result("gpu-01") is None  # the fenced write left nothing


def test_finishing_stores_the_result_moves_the_checkpoint_and_records_the_change(
    store: Store,
) -> None:
    agent = store.add_agent(_spec(), now=100.0)
    store.claim_due("r1", now=100.0, lease_s=5, limit=1)
    checkpoint = LogCheckpoint(3, b"\x07" * 48)
    change = store.finish(
        agent.id, "r1", _affirming(100.0, checkpoint), now=101.0, next_due_at=110.0
    )
    assert change is not None and (change.old_status, change.new_status) == ("none", "affirming")
    assert store.checkpoint(agent.id) == checkpoint
    latest = store.latest_result("gpu-01")
    assert latest is not None and latest.ear == "x.y.z" and latest.replica == "r1"
    # Not due before next_due_at; the same status again is no change.
    assert store.claim_due("r1", now=109.0, lease_s=5, limit=1) == []
    store.claim_due("r1", now=110.0, lease_s=5, limit=1)
    assert store.finish(agent.id, "r1", _affirming(110.0), now=111.0, next_due_at=120.0) is None
    assert store.checkpoint(agent.id) == checkpoint  # an outcome without one keeps it
    store.claim_due("r1", now=120.0, lease_s=5, limit=1)
    store.finish(
        agent.id, "r1", Outcome("contraindicated", "log_fork", 120.0), now=121.0, next_due_at=130.0
    )
    changes = store.status_changes()
    assert [(c.new_status, c.reason) for c in changes] == [
        ("affirming", "ok"),
        ("contraindicated", "log_fork"),
    ]
    assert store.status_changes(after=changes[0].id) == changes[1:]
    assert store.agent("gpu-01").status_reason == "log_fork"


def test_a_nonce_is_accepted_at_most_once(store: Store) -> None:
    agent = store.add_agent(_spec(), now=100.0)
    store.issue_nonce(agent.id, b"n" * 32, now=100.0, ttl_s=30)
    store.issue_nonce(agent.id, b"o" * 32, now=100.0, ttl_s=30)
    assert store.consume_nonce(agent.id, b"n" * 32, now=101.0)
    assert not store.consume_nonce(agent.id, b"n" * 32, now=101.0)
    assert not store.consume_nonce(agent.id, b"u" * 32, now=101.0)  # never issued
    assert not store.consume_nonce(agent.id, b"o" * 32, now=131.0)  # expired


def test_concurrent_consumers_of_one_nonce_get_one_acceptance(store: Store) -> None:
    agent = store.add_agent(_spec(), now=100.0)
    store.issue_nonce(agent.id, b"n" * 32, now=100.0, ttl_s=30)
    accepted: list[bool] = []
    threads = [
        threading.Thread(
            target=lambda: accepted.append(store.consume_nonce(agent.id, b"n" * 32, now=101.0))
        )
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Counter(accepted) == {True: 1, False: 7}


def test_concurrent_claims_never_hand_one_agent_to_two_replicas(store: Store) -> None:
    for i in range(40):
        store.add_agent(_spec(f"a{i:02}"), now=100.0)
    claimed: dict[str, list[int]] = {}

    def claim(owner: str) -> None:
        got: list[int] = []
        while batch := store.claim_due(owner, now=100.0, lease_s=30, limit=3):
            got.extend(a.id for a in batch)
        claimed[owner] = got

    threads = [threading.Thread(target=claim, args=(f"r{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [agent_id for got in claimed.values() for agent_id in got]
    assert sorted(everything) == sorted({a.id for a in store.agents()})  # each exactly once


def test_retention_prunes_beyond_the_count_and_the_age(store: Store) -> None:
    agent = store.add_agent(_spec(), now=0.0)
    for t in range(10):
        store.claim_due("r1", now=float(t * 10), lease_s=5, limit=1)
        store.finish(
            agent.id, "r1", _affirming(t * 10.0), now=t * 10.0 + 1, next_due_at=t * 10 + 10
        )
    deleted = store.prune(Retention(per_agent=5, max_age_s=60.0), now=100.0)
    kept = [r.appraised_at for r in store.history("gpu-01")]
    assert kept == [41.0, 51.0, 61.0, 71.0, 81.0, 91.0][-5:]
    assert deleted == 5


def test_the_webhook_queue_is_bounded_and_records_attempts(store: Store) -> None:
    assert store.enqueue_delivery("a", "http://h/x", b"{}", now=1.0, max_queued=2)
    assert store.enqueue_delivery("a", "http://h/x", b"{}", now=1.0, max_queued=2)
    assert not store.enqueue_delivery("a", "http://h/x", b"{}", now=1.0, max_queued=2)
    first, second = store.claim_deliveries(now=1.0, limit=10, hold_s=30)
    assert store.claim_deliveries(now=2.0, limit=10, hold_s=30) == []  # held by the first sender
    store.delivery_attempted(first.id, state="delivered", error="", next_attempt_at=1.0)
    store.delivery_attempted(second.id, state="queued", error="HTTP 500", next_attempt_at=9.0)
    assert store.claim_deliveries(now=5.0, limit=10, hold_s=30) == []
    (retry,) = store.claim_deliveries(now=9.0, limit=10, hold_s=30)
    assert retry.attempts == 1


@pytest.mark.parametrize("url", ["mysql://x/y", "sqlite://", "sqlite:///:memory:", "not a url"])
def test_unsupported_database_urls_are_refused_by_name(url: str) -> None:
    with pytest.raises(DatabaseUrlError):
        Store.open(url, now=0.0)


def test_a_password_file_and_a_password_in_the_url_are_refused_together() -> None:
    with pytest.raises(DatabaseUrlError) as caught:
        Store.open("postgresql://verifier:s3cret@db.invalid/fleet", now=0.0, password="other")
    assert "s3cret" not in str(caught.value) and "other" not in str(caught.value)


def test_an_outcome_whose_nonce_was_already_used_is_stored_as_a_replay(store: Store) -> None:
    agent = store.add_agent(_spec(), now=100.0)
    assert store.begin_pull(agent.id, b"n" * 32, now=100.0, ttl_s=30) is None
    store.claim_due("r1", now=100.0, lease_s=5, limit=1)
    assert store.consume_nonce(agent.id, b"n" * 32, now=100.5)  # someone answered it already
    replayed = replace(_affirming(100.0, LogCheckpoint(3, b"\x07" * 48)), nonce=b"n" * 32)
    store.finish(agent.id, "r1", replayed, now=101.0, next_due_at=110.0)
    latest = store.latest_result("gpu-01")
    assert latest is not None
    assert (latest.status, latest.reason, latest.ear) == ("contraindicated", "nonce_replayed", None)
    assert store.checkpoint(agent.id) is None  # a replayed answer verifies nothing


def test_a_claim_for_pulls_issues_the_nonces_and_reads_the_checkpoints(store: Store) -> None:
    first = store.add_agent(_spec("gpu-01"), now=100.0)
    store.claim_due("r1", now=100.0, lease_s=5, limit=1)
    verified = _affirming(100.0, LogCheckpoint(3, b"\x07" * 48))
    store.finish(first.id, "r1", verified, now=100.5, next_due_at=101)
    store.add_agent(_spec("gpu-02"), now=100.0)
    nonces = iter([b"a" * 32, b"b" * 32])
    pulls = store.claim_pulls("r1", now=102.0, lease_s=5, limit=4, nonce=lambda: next(nonces))
    by_name = {p.agent.spec.name: p for p in pulls}
    assert by_name["gpu-01"].checkpoint == LogCheckpoint(3, b"\x07" * 48)
    assert by_name["gpu-02"].checkpoint is None
    for pull in pulls:  # issued for that agent, once, within the lease
        assert not store.consume_nonce(10_000, pull.nonce, now=102.0)
        assert store.consume_nonce(pull.agent.id, pull.nonce, now=106.9)
        assert not store.consume_nonce(pull.agent.id, pull.nonce, now=106.9)


def test_finishing_and_claiming_the_next_pull_is_one_transaction(store: Store) -> None:
    first = store.add_agent(_spec("gpu-01"), now=100.0)
    second = store.add_agent(_spec("gpu-02"), now=100.5)
    nonces = iter([b"a" * 32, b"b" * 32])
    [pull] = store.claim_pulls("r1", now=101.0, lease_s=5, limit=1, nonce=lambda: next(nonces))
    assert pull.agent.id == first.id  # the longest due first
    outcome = replace(_affirming(101.0, LogCheckpoint(3, b"\x07" * 48)), nonce=pull.nonce)
    change, following = store.finish_and_claim(
        first.id, "r1", outcome, now=102.0, next_due_at=112.0,
        next_pulls=1, lease_s=5, nonce=lambda: next(nonces),
    )  # fmt: skip
    assert change is not None and change.new_status == "affirming"
    assert [p.agent.id for p in following] == [second.id]
    assert following[0].nonce == b"b" * 32 and following[0].checkpoint is None
    assert store.checkpoint(first.id) == LogCheckpoint(3, b"\x07" * 48)
    # The next agent is leased to r1 and its nonce issued, as a claim_pulls would.
    assert store.claim_due("r2", now=102.5, lease_s=5, limit=4) == []
    assert store.consume_nonce(second.id, b"b" * 32, now=103.0)


def test_a_lost_lease_stores_nothing_and_claims_nothing(store: Store) -> None:
    first = store.add_agent(_spec("gpu-01"), now=100.0)
    store.add_agent(_spec("gpu-02"), now=100.5)
    store.claim_due("r1", now=101.0, lease_s=5, limit=1)
    assert [a.id for a in store.claim_due("r2", now=106.5, lease_s=5, limit=1)] == [first.id]
    with pytest.raises(LeaseLostError):
        store.finish_and_claim(
            first.id, "r1", _affirming(101.0), now=107.0, next_due_at=117.0,
            next_pulls=1, lease_s=5, nonce=lambda: b"c" * 32,
        )  # fmt: skip
    assert store.latest_result("gpu-01") is None
    # gpu-02 was not claimed by the rolled-back transaction: it is free for anyone.
    assert [a.spec.name for a in store.claim_due("r2", now=107.0, lease_s=5, limit=4)] == ["gpu-02"]


def test_a_chained_claim_ahead_takes_an_agent_due_soon_but_no_push_agent_before_overdue(
    store: Store,
) -> None:
    first = store.add_agent(_spec("gpu-01"), now=100.0)
    soon = store.add_agent(_spec("gpu-02"), now=102.15)  # registered agents are due at once
    store.add_agent(_spec("gpu-03"), now=103.0)
    # A pushing agent is claimed only when overdue: at 110, a whole interval past due.
    store.add_agent(replace(_spec("gpu-nat"), push_pin="sha256:" + "a" * 64), now=100.0)
    store.claim_due("r1", now=101.0, lease_s=5, limit=1)  # gpu-01, the only one due
    _, following = store.finish_and_claim(
        first.id, "r1", _affirming(101.0), now=102.0, next_due_at=112.0,
        next_pulls=2, lease_s=5, nonce=lambda: b"d" * 32, ahead_s=0.2,
    )  # fmt: skip
    # gpu-02 (due in 0.15 s) only: gpu-03 is due later, and gpu-nat is not overdue.
    assert [p.agent.id for p in following] == [soon.id]
    assert following[0].agent.next_due_at == pytest.approx(102.15)
    # Without looking ahead, nothing is due yet.
    assert store.claim_due("r2", now=102.0, lease_s=5, limit=4) == []


def test_finishing_with_the_claimed_record_records_the_change_from_the_stored_status(
    store: Store,
) -> None:
    agent = store.add_agent(_spec(), now=100.0)
    [claimed] = store.claim_due("r1", now=100.0, lease_s=5, limit=1)
    change = store.finish(
        agent.id, "r1", _affirming(100.0), now=101.0, next_due_at=110.0, as_claimed=claimed
    )
    assert change is not None and (change.old_status, change.new_status) == ("none", "affirming")
    assert change.agent_name == "gpu-01"
    assert store.agent("gpu-01").status == "affirming"
    # A record older than the stored status (a push's, read before its lease) is not
    # trusted: the change is from the status stored, "affirming", not the record's "none".
    store.claim_due("r1", now=110.0, lease_s=5, limit=1)
    stale = replace(claimed, status="none")
    failed = Outcome("contraindicated", "log_fork", 110.0)
    change = store.finish(agent.id, "r1", failed, now=111.0, next_due_at=120.0, as_claimed=stale)
    assert change is not None and (change.old_status, change.new_status) == (
        "affirming",
        "contraindicated",
    )
    assert store.agent("gpu-01").status_reason == "log_fork"
    # The record of the status stored, and the same status again: no change, but stored.
    [current] = store.claim_due("r1", now=120.0, lease_s=5, limit=1)
    assert current.status == "contraindicated"
    again = Outcome("contraindicated", "log_regression", 120.0)
    assert (
        store.finish(agent.id, "r1", again, now=121.0, next_due_at=130.0, as_claimed=current)
        is None
    )
    assert store.agent("gpu-01").status_reason == "log_regression"
    assert store.agent("gpu-01").next_due_at == 130.0
    assert [c.new_status for c in store.status_changes()] == ["affirming", "contraindicated"]
