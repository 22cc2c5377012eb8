"""Log checkpoints: replay from one, the predicate's logStart, and page-by-page prefixes."""

from __future__ import annotations

import pytest

from attestd.evidence import (
    INITIAL_LOG_HEAD,
    LOG_START,
    EvidenceFormatError,
    LogCheckpoint,
    LogPrefixError,
    LogReplayError,
    RuntimeEvent,
    checkpoint_after,
    parse_checkpoint,
    replay,
    replay_from,
    verify_log_prefix,
)

EVENTS = tuple(
    RuntimeEvent(i, "pipeline", "step", bytes([i]), "2026-11-23T10:00:00.000000Z")
    for i in range(10)
)
CHECKPOINT = LogCheckpoint(7, replay(EVENTS[:7]))


def test_replay_from_a_checkpoint_equals_the_whole_replay() -> None:
    assert replay_from(CHECKPOINT, EVENTS[7:]) == replay(EVENTS)
    assert replay_from(LOG_START, EVENTS) == replay(EVENTS)
    assert checkpoint_after(CHECKPOINT, EVENTS[7:]) == LogCheckpoint(10, replay(EVENTS))


def test_replay_from_a_checkpoint_needs_the_events_right_after_it() -> None:
    with pytest.raises(LogReplayError):
        replay_from(CHECKPOINT, EVENTS[8:])  # event 7 is missing
    with pytest.raises(LogReplayError):
        replay_from(CHECKPOINT, EVENTS)  # starts over from 0


def test_checkpoint_forms_round_trip() -> None:
    assert parse_checkpoint(str(CHECKPOINT)) == CHECKPOINT
    assert LogCheckpoint.from_json(CHECKPOINT.to_json(), "$") == CHECKPOINT
    assert CHECKPOINT.to_json() == {"length": 7, "head": {"sha384": CHECKPOINT.head.hex()}}


@pytest.mark.parametrize(
    "text", ["7", "x:00", f"7:{'AB' * 48}", "7:abcd", f"0:{'01' * 48}", f"-1:{'00' * 48}"]
)
def test_malformed_checkpoints_are_refused(text: str) -> None:
    with pytest.raises(EvidenceFormatError):
        parse_checkpoint(text)


def test_the_start_of_the_log_has_only_the_initial_head() -> None:
    assert LogCheckpoint(0, INITIAL_LOG_HEAD) == LOG_START and LOG_START.is_start
    with pytest.raises(EvidenceFormatError):
        LogCheckpoint(0, bytes([1]) * 48)


def _pages(size: int, events: tuple[RuntimeEvent, ...] = EVENTS) -> list[list[RuntimeEvent]]:
    return [list(events[i : i + size]) for i in range(0, len(events), size)]


@pytest.mark.parametrize("size", [1, 3, 7, 10])
def test_pages_that_chain_to_the_checkpoint_are_its_prefix(size: int) -> None:
    assert verify_log_prefix(_pages(size), CHECKPOINT) == EVENTS[:7]


def test_the_prefix_stops_fetching_at_the_checkpoint() -> None:
    fetched: list[int] = []

    def lazy() -> object:
        for page in _pages(2):
            fetched.append(page[0].sequence)
            yield page

    verify_log_prefix(lazy(), CHECKPOINT)  # type: ignore[arg-type]
    assert fetched == [0, 2, 4, 6]


def test_a_broken_chain_is_refused() -> None:
    tampered = list(EVENTS)
    tampered[3] = RuntimeEvent(3, "pipeline", "step", b"other", EVENTS[3].recorded_at)
    with pytest.raises(LogPrefixError) as caught:
        verify_log_prefix(_pages(3, tuple(tampered)), CHECKPOINT)
    assert caught.value.reason == "log_prefix_mismatch"


def test_a_gap_between_pages_is_refused() -> None:
    pages = _pages(3)
    del pages[1]
    with pytest.raises(LogPrefixError, match="gap or repeat"):
        verify_log_prefix(pages, CHECKPOINT)


def test_a_log_shorter_than_the_checkpoint_is_refused() -> None:
    with pytest.raises(LogPrefixError, match="ended after 5"):
        verify_log_prefix(_pages(5, EVENTS[:5]), CHECKPOINT)
