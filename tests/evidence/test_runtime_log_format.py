"""Event encoding, the RTMR extend rule, replay, and event validation."""

from __future__ import annotations

import base64
import hashlib
import json
import random
from datetime import UTC, datetime

import pytest

from attestd.evidence import (
    INITIAL_LOG_HEAD,
    MAX_EVENT_CONTENT_BYTES,
    Caller,
    EventFormatError,
    EvidenceFormatError,
    LogReplayError,
    RuntimeEvent,
    encode_event,
    event_digest,
    event_from_json,
    event_to_json,
    extend_head,
    now_rfc3339,
    parse_rfc3339,
    replay,
    validate_event_fields,
)
from attestd.evidence.canonical import canonical_json
from attestd.evidence.runtime_log_format import _encode_plain_event

EVENT = RuntimeEvent(7, "pipeline", "stage.start", b"train\x00\xff", "2026-11-23T10:00:00.123456Z")

# SHA-384 of {"content":"dHJhaW4A/w==","domain":"pipeline","operation":"stage.start",
# "recordedAt":"2026-11-23T10:00:00.123456Z","sequence":7}, from `printf ... | sha384sum`.
EVENT_DIGEST_HEX = (
    "45031a86738ea7a1b87d84617a7267bd8a30cfc1ed3140d40080dd415f513262"
    "81c84d53fe738aca26e3a51820ca875c"
)


def _log(n: int) -> list[RuntimeEvent]:
    return [
        RuntimeEvent(i, "pipeline", f"op.{i}", bytes([i]) * i, "2026-11-23T10:00:00Z")
        for i in range(n)
    ]


def test_event_encoding_is_sorted_compact_json_with_base64_content() -> None:
    by_hand = json.dumps(
        {
            "sequence": 7,
            "domain": "pipeline",
            "operation": "stage.start",
            "content": base64.b64encode(b"train\x00\xff").decode(),
            "recordedAt": "2026-11-23T10:00:00.123456Z",
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    assert encode_event(EVENT) == by_hand
    assert hashlib.sha384(by_hand).hexdigest() == EVENT_DIGEST_HEX
    assert event_digest(EVENT).hex() == EVENT_DIGEST_HEX


def test_extend_is_sha384_of_head_then_digest() -> None:
    digest = hashlib.sha384(b"x").digest()
    assert extend_head(INITIAL_LOG_HEAD, digest) == hashlib.sha384(bytes(48) + digest).digest()


def test_extend_rejects_wrong_sizes() -> None:
    with pytest.raises(LogReplayError):
        extend_head(bytes(32), bytes(48))
    with pytest.raises(LogReplayError):
        extend_head(bytes(48), bytes(47))


def test_empty_log_replays_to_48_zero_bytes() -> None:
    assert replay([]) == bytes(48) == INITIAL_LOG_HEAD


def test_replay_equals_iterated_sha384_from_zero() -> None:
    events = _log(5)
    head = bytes(48)
    for event in events:
        head = hashlib.sha384(head + hashlib.sha384(encode_event(event)).digest()).digest()
    assert replay(events) == head
    assert replay(iter(events)) == head  # any iterable


def test_dropping_the_last_event_changes_the_head() -> None:
    events = _log(4)
    assert replay(events[:-1]) != replay(events)


@pytest.mark.parametrize("index", [0, 2])
def test_dropping_an_inner_event_fails_replay(index: int) -> None:
    events = _log(4)
    del events[index]
    with pytest.raises(LogReplayError, match="sequence"):
        replay(events)


def test_reordering_events_fails_replay() -> None:
    events = _log(3)
    events[0], events[1] = events[1], events[0]
    with pytest.raises(LogReplayError):
        replay(events)


def test_reordering_with_renumbering_changes_the_head() -> None:
    events = _log(3)
    swapped = [
        RuntimeEvent(
            0, events[1].domain, events[1].operation, events[1].content, events[1].recorded_at
        ),
        RuntimeEvent(
            1, events[0].domain, events[0].operation, events[0].content, events[0].recorded_at
        ),
        events[2],
    ]
    assert replay(swapped) != replay(events)


@pytest.mark.parametrize("field", ["domain", "operation", "content", "recorded_at"])
def test_modifying_any_field_changes_the_head(field: str) -> None:
    events = _log(3)
    original = events[1]
    changed = {
        "domain": "other",
        "operation": "other",
        "content": b"other",
        "recorded_at": "2026-11-23T10:00:00.000001Z",
    }[field]
    events[1] = RuntimeEvent(**{**original.__dict__, field: changed})
    assert replay(events) != replay(_log(3))


def test_event_json_round_trip() -> None:
    assert event_from_json(event_to_json(EVENT)) == EVENT
    assert event_from_json(json.loads(encode_event(EVENT))) == EVENT


@pytest.mark.parametrize(
    ("mutation", "path"),
    [
        ({"sequence": -1}, "$.sequence"),
        ({"sequence": True}, "$.sequence"),
        ({"sequence": 1.0}, "$.sequence"),
        ({"domain": ""}, "$.domain"),
        ({"domain": "has space"}, "$.domain"),
        ({"operation": "x" * 129}, "$.operation"),
        ({"content": "not base64!"}, "$.content"),
        ({"content": "dHJhaW4"}, "$.content"),  # missing padding
        ({"content": "dHJhaW5="}, "$.content"),  # non-canonical padding bits
        ({"content": base64.b64encode(bytes(MAX_EVENT_CONTENT_BYTES + 1)).decode()}, "$.content"),
        ({"recordedAt": "2026-11-23 10:00:00Z"}, "$.recordedAt"),
        ({"recordedAt": "2026-11-23T10:00:00+00:00"}, "$.recordedAt"),
        ({"recordedAt": "2026-02-30T10:00:00Z"}, "$.recordedAt"),
        ({"extra": 1}, "$.extra"),
    ],
)
def test_event_from_json_names_the_bad_field(mutation: dict[str, object], path: str) -> None:
    obj = {**event_to_json(EVENT), **mutation}
    with pytest.raises(EvidenceFormatError) as info:
        event_from_json(obj)
    assert info.value.path == path
    assert str(info.value).startswith(path)


def test_event_from_json_reports_a_missing_field() -> None:
    obj = event_to_json(EVENT)
    del obj["recordedAt"]
    with pytest.raises(EvidenceFormatError, match=r"\$\.recordedAt: required member is missing"):
        event_from_json(obj)


def test_validate_event_fields_accepts_the_allowed_alphabet() -> None:
    validate_event_fields("a-Z_0.9:/", "x" * 128, bytes(MAX_EVENT_CONTENT_BYTES))


@pytest.mark.parametrize(
    ("domain", "operation", "content", "message"),
    [
        ("", "op", b"", "domain is empty"),
        ("d", "", b"", "operation is empty"),
        ("d" * 129, "op", b"", "more than 128"),
        ("d", "op!", b"", "'!'"),
        ("dömain", "op", b"", "'ö'"),
        ("d", "op", bytes(MAX_EVENT_CONTENT_BYTES + 1), "content is 65537 bytes"),
    ],
)
def test_validate_event_fields_says_what_is_wrong(
    domain: str, operation: str, content: bytes, message: str
) -> None:
    with pytest.raises(EventFormatError, match=message):
        validate_event_fields(domain, operation, content)


def test_now_rfc3339_round_trips_through_parse() -> None:
    text = now_rfc3339()
    assert len(text) == 27 and text.endswith("Z")
    moment = parse_rfc3339(text)
    assert moment.tzinfo is UTC
    assert abs((datetime.now(UTC) - moment).total_seconds()) < 60


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-23T10:00:00Z", datetime(2026, 11, 23, 10, tzinfo=UTC)),
        ("2026-11-23T10:00:00.5Z", datetime(2026, 11, 23, 10, 0, 0, 500000, tzinfo=UTC)),
        ("2026-11-23T10:00:00.123456Z", datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_parse_rfc3339_accepts_the_utc_profile(text: str, expected: datetime) -> None:
    assert parse_rfc3339(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-23T10:00:00",
        "2026-11-23t10:00:00z",
        "2026-11-23T10:00:00.1234567Z",
        "2026-11-23T24:00:00Z",
        "2026-11-23T10:00:60Z",
        "2026-11-23T10:00:00Z\n",
        "\uff12\uff10\uff12\uff16-11-23T10:00:00Z",  # full-width digits
        "",
    ],
)
def test_parse_rfc3339_rejects_everything_else(text: str) -> None:
    with pytest.raises(EvidenceFormatError):
        parse_rfc3339(text)


# -- the caller ------------------------------------------------------------------------

CALLER = Caller(pid=4242, uid=1000, gid=100)
CALLED = RuntimeEvent(
    7, "pipeline", "stage.start", b"train\x00\xff", "2026-11-23T10:00:00.123456Z", CALLER
)


def test_an_event_with_a_caller_encodes_it_as_a_sorted_member() -> None:
    by_hand = (
        b'{"caller":{"gid":100,"pid":4242,"uid":1000},"content":"dHJhaW4A/w==",'
        b'"domain":"pipeline","operation":"stage.start",'
        b'"recordedAt":"2026-11-23T10:00:00.123456Z","sequence":7}'
    )
    assert encode_event(CALLED) == by_hand
    assert event_digest(CALLED) == hashlib.sha384(by_hand).digest()


def test_the_caller_is_bound_by_the_digest_and_an_event_without_one_hashes_as_before() -> None:
    assert event_digest(EVENT).hex() == EVENT_DIGEST_HEX  # no caller: the old encoding
    assert event_digest(CALLED) != event_digest(EVENT)
    other = RuntimeEvent(*[getattr(CALLED, f) for f in ("sequence", "domain", "operation",
                           "content", "recorded_at")], Caller(4242, 0, 100))  # fmt: skip
    assert event_digest(other) != event_digest(CALLED)


def test_a_caller_survives_json_and_replay() -> None:
    assert event_from_json(event_to_json(CALLED)) == CALLED
    assert event_from_json(json.loads(encode_event(CALLED))).caller == CALLER
    log = [RuntimeEvent(0, "pipeline", "a", b"", "2026-11-23T10:00:00Z", CALLER),
           RuntimeEvent(1, "pipeline", "b", b"", "2026-11-23T10:00:00Z")]  # fmt: skip
    parsed = [event_from_json(json.loads(encode_event(e))) for e in log]
    assert replay(parsed) == replay(log)
    assert parsed[0].caller == CALLER and parsed[1].caller is None


@pytest.mark.parametrize(
    ("caller", "path", "message"),
    [
        (None, "$.caller", "expected an object, got null"),
        ([1, 2, 3], "$.caller", "expected an object, got array"),
        ({"pid": 1, "uid": 2}, "$.caller.gid", "required member is missing"),
        ({"pid": 1, "uid": 2, "gid": 3, "exe": "x"}, "$.caller.exe", "unknown member"),
        ({"pid": "1", "uid": 2, "gid": 3}, "$.caller.pid", "expected an integer, got string"),
        ({"pid": 1, "uid": True, "gid": 3}, "$.caller.uid", "expected an integer, got boolean"),
        ({"pid": -1, "uid": 2, "gid": 3}, "$.caller.pid", "outside 0..2147483647"),
        ({"pid": 2**31, "uid": 2, "gid": 3}, "$.caller.pid", "outside 0..2147483647"),
        ({"pid": 1, "uid": 2**32 - 1, "gid": 3}, "$.caller.uid", "outside 0..4294967294"),
        ({"pid": 1, "uid": 2, "gid": 2**32}, "$.caller.gid", "outside 0..4294967294"),
        ({"pid": 1.0, "uid": 2, "gid": 3}, "$.caller.pid", "expected an integer, got number"),
    ],
)
def test_a_malformed_caller_is_refused_naming_the_member(
    caller: object, path: str, message: str
) -> None:
    obj = event_to_json(EVENT) | {"caller": caller}
    with pytest.raises(EvidenceFormatError) as refused:
        event_from_json(obj)
    assert refused.value.path == path
    assert message in str(refused.value)


def test_an_unknown_event_member_is_still_refused_beside_a_caller() -> None:
    obj = event_to_json(CALLED) | {"callerExe": "/usr/bin/python3"}
    with pytest.raises(EvidenceFormatError) as refused:
        event_from_json(obj)
    assert refused.value.path == "$.callerExe"


def _encode_event_cases() -> list[RuntimeEvent]:
    """Events that the plain path writes and events it must leave to canonical_json."""
    rng = random.Random(20261123)
    awkward = ['a"b', "back\\slash", "tab\t", "nl\n", "\x00\x1f\x7f", "é", "日本", "😀", "\u2028"]
    names = ["pipeline", "train.step", "a:b/c-d_e", "x", "~!@#$%^&*()+={}[]|;'<>,?` "]
    cases: list[RuntimeEvent] = []
    for i in range(600):
        rare = rng.random() < 0.2  # otherwise plain: a pipeline's names
        domain = rng.choice(names + awkward) if rare else rng.choice(names)
        operation = rng.choice(names) + (rng.choice(awkward) if rng.random() < 0.2 else "")
        recorded_at = rng.choice(["2026-11-23T10:00:00.123456Z", "2026-11-23T10:00:00Z", 'ü"'])
        content = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 80)))
        sequence = (
            i if rng.random() < 0.8 else rng.choice([0, 2**53 - 1, -(2**53 - 1), 2**53, -(2**60)])
        )
        caller = rng.choice(
            [None, Caller(1, 2, 3), Caller(0, 2**32 - 2, 0), Caller(2**31 - 1, 0, 2**60)]
        )
        cases.append(RuntimeEvent(sequence, domain, operation, content, recorded_at, caller))
    return cases


@pytest.mark.parametrize("event", _encode_event_cases())
def test_encode_event_is_canonical_json_byte_for_byte(event: RuntimeEvent) -> None:
    try:
        expected: bytes | type[Exception] = canonical_json(event_to_json(event))
    except EvidenceFormatError:
        expected = EvidenceFormatError
    if expected is EvidenceFormatError:
        with pytest.raises(EvidenceFormatError):
            encode_event(event)
    else:
        assert encode_event(event) == expected


def test_encode_event_plain_path_covers_pipeline_events() -> None:
    """The cases above exercise both paths: most pipeline events take the plain one."""
    cases = _encode_event_cases()
    plain = [e for e in cases if _encode_plain_event(e) is not None]
    assert 50 < len(plain) < len(cases)
    event = RuntimeEvent(7, "pipeline", "train.step", b"\xff\x00", "2026-11-23T10:00:00Z")
    assert _encode_plain_event(event) == canonical_json(event_to_json(event))
