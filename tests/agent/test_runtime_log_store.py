"""The durable runtime log: round trips, crash recovery, and refusal of any other damage."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from attestd.agent.errors import RuntimeLogCorruptError
from attestd.agent.runtime_log_store import LOG_FORMAT, RuntimeLogStore, rotate_on_new_boot
from attestd.evidence import (
    INITIAL_LOG_HEAD,
    RuntimeEvent,
    canonical_json,
    event_to_json,
    replay,
)

STAMP = "2026-01-01T00:00:00.000001Z"
HEADER = canonical_json({"format": LOG_FORMAT}) + b"\n"


def event(sequence: int, content: bytes = b"x") -> RuntimeEvent:
    return RuntimeEvent(sequence, "pipeline", f"step.{sequence}", content, STAMP)


def line(ev: RuntimeEvent) -> bytes:
    return canonical_json(event_to_json(ev)) + b"\n"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "runtime-log.jsonl"


@pytest.fixture
def opened() -> Iterator[list[RuntimeLogStore]]:
    """Stores a test opens, closed afterwards whatever happens."""
    stores: list[RuntimeLogStore] = []
    yield stores
    for store in stores:
        store.close()


def open_store(path: Path, opened: list[RuntimeLogStore]) -> RuntimeLogStore:
    store = RuntimeLogStore.open(path)
    opened.append(store)
    return store


def write_log(path: Path, events: list[RuntimeEvent], tail: bytes = b"") -> bytes:
    data = HEADER + b"".join(line(ev) for ev in events) + tail
    path.write_bytes(data)
    return data


def test_new_log_is_empty_with_the_initial_head(path: Path, opened: list[RuntimeLogStore]) -> None:
    store = open_store(path, opened)
    assert len(store) == 0
    assert store.head == INITIAL_LOG_HEAD
    assert store.events() == ()
    assert path.read_bytes() == HEADER


def test_log_file_is_created_with_mode_0600(path: Path, opened: list[RuntimeLogStore]) -> None:
    previous = os.umask(0)  # the mode must not rely on a friendly umask
    try:
        open_store(path, opened)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_appended_events_survive_reopening_with_heads_equal_to_replay(
    path: Path, opened: list[RuntimeLogStore]
) -> None:
    events = [event(i, bytes([i]) * (i + 1)) for i in range(5)]
    store = open_store(path, opened)
    for i, ev in enumerate(events):
        assert store.append(ev) == replay(events[: i + 1])
    assert store.head == replay(events)

    reopened = open_store(path, opened)
    assert list(reopened.events()) == events
    assert len(reopened) == 5
    assert reopened.head == replay(events)
    for length in range(6):
        assert reopened.head_at(length) == replay(events[:length])
    assert reopened.events(1, 3) == tuple(events[1:3])


def test_each_append_is_one_line_on_disk_before_it_returns(
    path: Path, opened: list[RuntimeLogStore]
) -> None:
    store = open_store(path, opened)
    store.append(event(0))
    assert path.read_bytes() == HEADER + line(event(0))


def test_append_with_the_wrong_sequence_raises_and_writes_nothing(
    path: Path, opened: list[RuntimeLogStore]
) -> None:
    store = open_store(path, opened)
    store.append(event(0))
    before = path.read_bytes()
    for sequence in (0, 2, -1):
        with pytest.raises(ValueError, match="sequence"):
            store.append(event(sequence))
    assert path.read_bytes() == before
    assert len(store) == 1


def test_failed_fsync_leaves_no_half_line_and_no_event(
    path: Path, opened: list[RuntimeLogStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(path, opened)
    store.append(event(0))
    before = path.read_bytes()

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    with monkeypatch.context() as patched:
        patched.setattr(os, "fsync", broken_fsync)
        with pytest.raises(OSError):
            store.append(event(1))
    assert path.read_bytes() == before
    assert len(store) == 1
    store.append(event(1))
    # The store keeps the file's length itself: a later failure cuts back to the new end.
    after = path.read_bytes()
    with monkeypatch.context() as patched:
        patched.setattr(os, "fsync", broken_fsync)
        with pytest.raises(OSError):
            store.append(event(2))
    assert path.read_bytes() == after
    assert list(open_store(path, opened).events()) == [event(0), event(1)]


# -- crash recovery ------------------------------------------------------------------


def test_torn_final_line_is_cut_off_and_the_next_append_works(
    path: Path, opened: list[RuntimeLogStore]
) -> None:
    events = [event(0), event(1)]
    torn = line(event(2))[:-10]
    intact = write_log(path, events, tail=torn)[: -len(torn)]

    store = open_store(path, opened)
    assert list(store.events()) == events
    assert path.read_bytes() == intact
    assert store.append(event(2, b"again")) == replay([*events, event(2, b"again")])
    store.close()
    opened.remove(store)

    assert list(open_store(path, opened).events()) == [*events, event(2, b"again")]


def test_complete_event_missing_only_its_newline_is_cut_off(
    path: Path, opened: list[RuntimeLogStore]
) -> None:
    # The newline is written with the line; without it, the fsync never finished.
    write_log(path, [event(0)], tail=line(event(1))[:-1])
    store = open_store(path, opened)
    assert list(store.events()) == [event(0)]
    assert path.read_bytes() == HEADER + line(event(0))


@pytest.mark.parametrize("size", [0, 1, len(HEADER) // 2, len(HEADER) - 1])
def test_file_with_only_a_partial_header_is_recovered_as_empty(
    path: Path, opened: list[RuntimeLogStore], size: int
) -> None:
    path.write_bytes(HEADER[:size])
    store = open_store(path, opened)
    assert len(store) == 0
    assert store.head == INITIAL_LOG_HEAD
    assert path.read_bytes() == HEADER
    store.append(event(0))
    assert path.read_bytes() == HEADER + line(event(0))


# -- corruption is refused -----------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        b"not json\n",
        b'{"sequence": 1}\n',
        b"[]\n",
        b"\n",
        b"\xff\xfe\n",
        line(event(1)).replace(b'"step.1"', b'"step 1"'),  # a name outside the alphabet
    ],
)
def test_corrupt_line_in_the_middle_is_refused(
    path: Path, opened: list[RuntimeLogStore], bad: bytes
) -> None:
    data = HEADER + line(event(0)) + bad + line(event(2))
    path.write_bytes(data)
    with pytest.raises(RuntimeLogCorruptError, match=r":3: unreadable event") as err:
        RuntimeLogStore.open(path)
    assert err.value.reason == "runtime_log_corrupt"
    assert path.read_bytes() == data


def test_corrupt_last_complete_line_is_refused_not_cut(path: Path) -> None:
    data = HEADER + line(event(0)) + b'{"sequence":1,"dom\n'
    path.write_bytes(data)
    with pytest.raises(RuntimeLogCorruptError, match="unreadable event"):
        RuntimeLogStore.open(path)
    assert path.read_bytes() == data


@pytest.mark.parametrize(
    "header",
    [
        canonical_json({"format": "attestd-runtime-log/2"}) + b"\n",
        b'{"format": "attestd-runtime-log/1"}\n',  # not the canonical form
        b"\n",
        line(event(0)),
    ],
)
def test_wrong_header_is_refused(path: Path, header: bytes) -> None:
    data = header + line(event(0))
    path.write_bytes(data)
    with pytest.raises(RuntimeLogCorruptError, match="header"):
        RuntimeLogStore.open(path)
    assert path.read_bytes() == data


@pytest.mark.parametrize("sequences", [[0, 2], [1], [0, 1, 1], [0, 0]])
def test_sequence_gap_or_repeat_is_refused(path: Path, sequences: list[int]) -> None:
    write_log(path, [event(s) for s in sequences])
    with pytest.raises(RuntimeLogCorruptError, match="event sequence"):
        RuntimeLogStore.open(path)


@pytest.mark.parametrize(
    "content", [b"some unrelated file", b'{"format":"other"}', b"\x00" * 64, HEADER[:-1] + b"X"]
)
def test_unrelated_file_without_newlines_is_refused_not_wiped(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    with pytest.raises(RuntimeLogCorruptError, match="not an attestd runtime log"):
        RuntimeLogStore.open(path)
    assert path.read_bytes() == content


def test_unrelated_file_with_newlines_is_refused(path: Path) -> None:
    content = b"# my notes\nimportant line\n"
    path.write_bytes(content)
    with pytest.raises(RuntimeLogCorruptError, match="header"):
        RuntimeLogStore.open(path)
    assert path.read_bytes() == content


def test_unrelated_file_with_an_unterminated_last_line_is_refused_untouched(path: Path) -> None:
    content = b"# my notes\nthe last line, not newline-terminated"
    path.write_bytes(content)
    with pytest.raises(RuntimeLogCorruptError):
        RuntimeLogStore.open(path)
    assert path.read_bytes() == content


def test_a_log_from_another_boot_is_set_aside(tmp_path: Path) -> None:
    log_path = tmp_path / "runtime-log.jsonl"
    assert rotate_on_new_boot(log_path, "boot-a") is None  # first start: nothing to set aside
    store = RuntimeLogStore.open(log_path)
    store.append(event(0))
    store.close()
    assert rotate_on_new_boot(log_path, "boot-a") is None  # a restart within the boot keeps it
    assert len(RuntimeLogStore.open(log_path)) == 1

    archived = rotate_on_new_boot(log_path, "boot-b")
    assert archived == tmp_path / "runtime-log.boot-a.jsonl"
    assert len(RuntimeLogStore.open(archived)) == 1  # kept whole, for the record
    assert not log_path.exists()
    assert len(RuntimeLogStore.open(log_path)) == 0
    assert (tmp_path / "runtime-log.jsonl.boot").read_text() == "boot-b\n"


def test_a_log_predating_the_boot_marker_is_kept(tmp_path: Path) -> None:
    log_path = tmp_path / "runtime-log.jsonl"
    store = RuntimeLogStore.open(log_path)
    store.append(event(0))
    store.close()
    assert rotate_on_new_boot(log_path, "boot-a") is None
    assert len(RuntimeLogStore.open(log_path)) == 1
