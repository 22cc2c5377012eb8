"""Group commit: concurrent appends share one write and one fsync, keep their order,
and share a failure; a restart rolls forward a group that was fsynced but not all extended."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from attestd.agent.config import parse_config
from attestd.agent.errors import NotServingError
from attestd.agent.runtime_log_store import GroupCommitter, RuntimeLogStore, Written
from attestd.agent.service import Agent
from attestd.evidence import RuntimeEvent, event_digest, now_rfc3339, replay
from tests.fakes.tee import FakeRegister, FakeTeeBackend

N = 16


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RuntimeLogStore]:
    opened = RuntimeLogStore.open(tmp_path / "runtime-log.jsonl")
    yield opened
    opened.close()


class Gate:
    """An ``apply`` that records events and can hold the first group's leader."""

    def __init__(self) -> None:
        self.applied: list[RuntimeEvent] = []
        self.hold = threading.Event()
        self.holding = threading.Event()
        self.release = threading.Event()
        self.fail_at: int | None = None

    def __call__(self, event: RuntimeEvent, digest: bytes) -> None:
        assert digest == event_digest(event)
        if self.hold.is_set() and not self.holding.is_set():
            self.holding.set()
            self.release.wait(10)
        if event.sequence == self.fail_at:
            raise RuntimeError(f"extension {event.sequence} failed")
        self.applied.append(event)


def _admit() -> None:
    return None


def _one_group_behind_a_held_leader(
    committer: GroupCommitter,
    gate: Gate,
    pool: ThreadPoolExecutor,
    before_release: Callable[[], None],
) -> tuple[Future[tuple[RuntimeEvent, bytes]], list[Future[tuple[RuntimeEvent, bytes]]]]:
    """Hold a first commit in ``apply`` until N more callers queue; they then form one group."""
    gate.hold.set()
    first = pool.submit(committer.commit, "pipeline", "first", b"0")
    assert gate.holding.wait(10)
    rest = [
        pool.submit(committer.commit, "pipeline", f"step.{i}", str(i).encode()) for i in range(N)
    ]
    deadline = time.monotonic() + 10
    while committer.queued < N and time.monotonic() < deadline:
        time.sleep(0.001)
    assert committer.queued == N
    before_release()
    gate.release.set()
    return first, rest


def test_concurrent_commits_share_one_fsync_and_keep_their_order(store: RuntimeLogStore) -> None:
    gate = Gate()
    committer = GroupCommitter(store, apply=gate, admit=_admit)
    with ThreadPoolExecutor(N + 1) as pool:
        first, rest = _one_group_behind_a_held_leader(committer, gate, pool, lambda: None)
        results = [first.result(10)] + [f.result(10) for f in rest]
    # Two groups for N + 1 events: the held one, and everyone who queued behind it.
    assert store.groups_written == 2
    events = [event for event, _ in results]
    assert sorted(e.sequence for e in events) == list(range(N + 1))
    # Extended in sequence order, each answered with the head after its own event.
    assert [e.sequence for e in gate.applied] == list(range(N + 1))
    by_sequence = sorted(results, key=lambda r: r[0].sequence)
    for length, (_, head) in enumerate(by_sequence, start=1):
        assert head == replay([e for e, _ in by_sequence[:length]])
    assert list(store.events()) == [e for e, _ in by_sequence]
    assert store.head == replay(gate.applied)


def test_many_threads_without_a_gate_need_fewer_fsyncs_than_events(
    store: RuntimeLogStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:  # a disk slower than the callers, as real ones are
        time.sleep(0.005)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    gate = Gate()
    committer = GroupCommitter(store, apply=gate, admit=_admit)
    with ThreadPoolExecutor(32) as pool:
        futures = [pool.submit(committer.commit, "p", "s", bytes([i % 256])) for i in range(128)]
        [f.result(30) for f in futures]
    assert len(store) == 128
    assert store.groups_written < 64
    assert replay(store.events()) == replay(gate.applied) == store.head


def test_a_failed_fsync_fails_every_caller_of_its_group_and_leaves_nothing(
    store: RuntimeLogStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate()
    committer = GroupCommitter(store, apply=gate, admit=_admit)

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    size_after_first: list[int] = []

    def break_fsync() -> None:
        size_after_first.append(store.path.stat().st_size)
        monkeypatch.setattr(os, "fsync", broken_fsync)

    with ThreadPoolExecutor(N + 1) as pool:
        first, rest = _one_group_behind_a_held_leader(committer, gate, pool, break_fsync)
        first.result(10)
        for future in rest:
            with pytest.raises(OSError, match="Input/output"):
                future.result(10)
    monkeypatch.undo()
    assert store.path.stat().st_size == size_after_first[0]
    assert len(store) == 1
    assert store.groups_written == 1
    # The log goes on after the failed group, with the next sequence number.
    event, head = committer.commit("pipeline", "after", b"")
    assert event.sequence == 1
    assert head == replay(store.events())


def test_a_failed_extension_fails_its_caller_and_every_later_one_of_the_group(
    store: RuntimeLogStore,
) -> None:
    gate = Gate()
    committer = GroupCommitter(store, apply=gate, admit=_admit)
    gate.fail_at = 1 + N // 2
    with ThreadPoolExecutor(N + 1) as pool:
        first, rest = _one_group_behind_a_held_leader(committer, gate, pool, lambda: None)
        first.result(10)
        answered, failed = [], []
        for future in rest:
            try:
                answered.append(future.result(10)[0].sequence)
            except RuntimeError:
                failed.append(future)
    assert sorted(answered) == list(range(1, gate.fail_at))
    assert len(failed) == N + 1 - gate.fail_at
    # Durable events are published (the log is what is on disk); the register stopped short.
    assert len(store) == N + 1
    assert [e.sequence for e in gate.applied] == list(range(gate.fail_at))


def test_a_batch_that_fails_to_write_fails_its_whole_group_yet_publishes_it(
    store: RuntimeLogStore,
) -> None:
    gate = Gate()
    batches: list[int] = []  # the events applied inside each batch

    @contextmanager
    def batch() -> Iterator[None]:
        before = len(gate.applied)
        yield
        batches.append(len(gate.applied) - before)
        if len(batches) == 2:  # the group queued behind the held leader
            raise OSError(28, "the register's write failed")

    committer = GroupCommitter(store, apply=gate, admit=_admit, batch=batch)
    with ThreadPoolExecutor(N + 1) as pool:
        first, rest = _one_group_behind_a_held_leader(committer, gate, pool, lambda: None)
        first.result(10)
        failures = [future.exception(10) for future in rest]
    # One batch per group, around every extension of the group; nobody of the failed
    # group is told its event is in the register.
    assert batches == [1, N]
    assert all(isinstance(failure, OSError) for failure in failures)
    assert len(store) == N + 1  # durable, so published: a restart rolls the register forward


def test_a_refusing_admit_fails_the_group_before_anything_is_written(
    store: RuntimeLogStore,
) -> None:
    def refuse() -> None:
        raise NotServingError("not serving")

    committer = GroupCommitter(store, apply=Gate(), admit=refuse)
    with pytest.raises(NotServingError):
        committer.commit("pipeline", "refused", b"")
    assert store.groups_written == 0
    assert len(store) == 0


# -- a crash after a group's fsync, before all of its extensions --------------------------


def _agent(tmp_path: Path, register: FakeRegister) -> Agent:
    config = parse_config(
        {"agent": {"state_dir": "state"}, "tee": {"backend": "simulated-tdx"}}, base_dir=tmp_path
    )
    store = RuntimeLogStore.open(config.state_dir / "runtime-log.jsonl")
    return Agent(config, FakeTeeBackend(register), store, ec.generate_private_key(ec.SECP256R1()))


def _events(first: int, count: int) -> list[RuntimeEvent]:
    return [
        RuntimeEvent(first + i, "pipeline", f"step.{first + i}", b"x", now_rfc3339())
        for i in range(count)
    ]


@pytest.mark.parametrize("extended", [0, 1, 4])
def test_restart_rolls_forward_a_group_fsynced_but_partly_extended(
    tmp_path: Path, extended: int
) -> None:
    (tmp_path / "state").mkdir()
    register = FakeRegister()
    store = RuntimeLogStore.open(tmp_path / "state" / "runtime-log.jsonl")
    before = _events(0, 2)
    for event in before:
        store.write([event])
        register.extend(event_digest(event))
    group = _events(2, 5)
    store.write(group)  # one write, one fsync: then the "crash", after `extended` extensions
    for event in group[:extended]:
        register.extend(event_digest(event))
    store.close()

    agent = _agent(tmp_path, register)
    try:
        assert agent.serving, agent.serving_problem
        assert register.value == replay(before + group) == agent.info().log_head
    finally:
        agent.close()


def test_restart_refuses_a_register_behind_more_than_the_last_group(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    register = FakeRegister()
    store = RuntimeLogStore.open(tmp_path / "state" / "runtime-log.jsonl")
    store.write(_events(0, 3))  # never extended
    store.write(_events(3, 2))  # the last group: the only one a crash can leave unextended
    store.close()

    agent = _agent(tmp_path, register)
    try:
        assert not agent.serving
        assert "does not replay" in agent.serving_problem
        assert register.value == replay([])  # nothing was "repaired"
    finally:
        agent.close()


def test_submitted_events_join_the_group_of_blocking_ones_and_keep_their_order(
    store: RuntimeLogStore,
) -> None:
    gate = Gate()
    committer = GroupCommitter(store, apply=gate, admit=_admit)
    with ThreadPoolExecutor(N + 1) as pool:
        submitted: list[Future[Written]] = []

        def submit_all() -> None:
            submitted.extend(
                committer.submit("pipeline", f"async.{i}", str(i).encode()) for i in range(N)
            )

        first, rest = _one_group_behind_a_held_leader(committer, gate, pool, submit_all)
        first.result(10)
        results = [f.result(10)[0] for f in rest] + [f.result(10).event for f in submitted]
    committer.close()
    # The held leader's group, then one group for everything queued behind it.
    assert store.groups_written == 2
    assert [e.sequence for e in gate.applied] == list(range(1 + 2 * N))
    # Each caller got its own event back: the blocking ones, then the submitted ones.
    assert [e.operation for e in results] == [e.operation for e in gate.applied[1:]]
    assert [e.operation for e in results[N:]] == [f"async.{i}" for i in range(N)]


def test_a_submitted_event_cancelled_before_its_group_is_never_written(
    store: RuntimeLogStore,
) -> None:
    gate = Gate()
    committer = GroupCommitter(store, apply=gate, admit=_admit)
    with ThreadPoolExecutor(2) as pool:
        kept: list[Future[Written]] = []
        withdrawn: list[Future[Written]] = []

        def queue_two() -> None:
            withdrawn.append(committer.submit("pipeline", "withdrawn", b"w"))
            kept.append(committer.submit("pipeline", "kept", b"k"))
            assert withdrawn[0].cancel()

        gate.hold.set()
        first = pool.submit(committer.commit, "pipeline", "first", b"0")
        assert gate.holding.wait(10)
        queue_two()
        gate.release.set()
        first.result(10)
        written = kept[0].result(10)
    committer.close()
    assert withdrawn[0].cancelled()
    assert written.event.sequence == 1
    assert [e.operation for e in store.events()] == ["first", "kept"]


def test_close_commits_what_was_submitted_and_refuses_what_comes_later(
    store: RuntimeLogStore,
) -> None:
    committer = GroupCommitter(store, apply=Gate(), admit=_admit)
    futures = [committer.submit("pipeline", "step", b"%d" % i) for i in range(8)]
    committer.close()
    assert [f.result(0).event.sequence for f in futures] == list(range(8))
    with pytest.raises(NotServingError):
        committer.submit("pipeline", "late", b"")
    with pytest.raises(NotServingError):
        committer.commit("pipeline", "late", b"")


def test_busy_says_a_group_is_being_committed_or_waits(store: RuntimeLogStore) -> None:
    gate = Gate()
    committer = GroupCommitter(store, apply=gate, admit=_admit)
    assert not committer.busy
    with ThreadPoolExecutor(N + 1) as pool:
        seen: list[bool] = []
        first, rest = _one_group_behind_a_held_leader(
            committer, gate, pool, lambda: seen.append(committer.busy)
        )
        [f.result(10) for f in [first, *rest]]
    assert seen == [True]  # a leader held in apply, N callers queued behind it
    assert not committer.busy  # both groups committed, nothing queued


class _Committer:
    """A committer whose ``busy`` is True for its first ``reads`` looks."""

    def __init__(self, reads: int) -> None:
        self.reads = reads
        self.looks = 0

    @property
    def busy(self) -> bool:
        self.looks += 1
        return self.looks <= self.reads


def test_signing_steps_aside_while_a_group_is_committed_and_no_longer() -> None:
    from types import SimpleNamespace

    done = _Committer(reads=0)
    Agent._step_aside(SimpleNamespace(_committer=done))  # type: ignore[arg-type]
    assert done.looks == 1  # not busy: straight on

    three = _Committer(reads=3)
    Agent._step_aside(SimpleNamespace(_committer=three))  # type: ignore[arg-type]
    assert three.looks == 4  # waited while busy, went on at the first look it was not

    stuck = _Committer(reads=10**9)
    began = time.monotonic()
    Agent._step_aside(SimpleNamespace(_committer=stuck))  # type: ignore[arg-type]
    assert stuck.looks > 1 and time.monotonic() - began < 5  # bounded, never a hang
