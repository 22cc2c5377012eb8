"""Property tests: no input makes a parser raise anything but EvidenceError."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attestd.evidence import (
    Binding,
    EvidenceError,
    RuntimeEvent,
    canonical_json,
    event_from_json,
    event_to_json,
    parse_envelope,
    parse_statement,
    replay,
    sign_statement,
)
from tests.evidence.builders import example_key, make_statement

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)

KEY = example_key()
VALID_STATEMENT = make_statement(KEY, log_length=2).to_json()
VALID_ENVELOPE = json.loads(sign_statement(make_statement(KEY, log_length=2), KEY))


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _replace(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = json.loads(json.dumps(document))
    target = copy
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return copy


STATEMENT_PATHS = _paths(VALID_STATEMENT)
ENVELOPE_PATHS = _paths(VALID_ENVELOPE)
EVENT_PATHS = _paths(event_to_json(RuntimeEvent(0, "d", "o", b"c", "2026-11-23T10:00:00Z")))


def _only_evidence_errors(call: Any, *args: Any) -> None:
    with contextlib.suppress(EvidenceError):
        call(*args)


@given(st.binary(max_size=512))
def test_random_bytes_into_parsers_only_raise_evidence_error(data: bytes) -> None:
    _only_evidence_errors(parse_envelope, data)
    _only_evidence_errors(parse_statement, data)


@given(json_values)
def test_random_json_into_parsers_only_raise_evidence_error(value: Any) -> None:
    data = json.dumps(value).encode()
    _only_evidence_errors(parse_envelope, data)
    _only_evidence_errors(parse_statement, data)
    _only_evidence_errors(event_from_json, value)
    _only_evidence_errors(Binding.from_json, value)
    _only_evidence_errors(canonical_json, value)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=200)
@given(st.sampled_from(STATEMENT_PATHS), json_values)
def test_mutated_statements_only_raise_evidence_error(path: tuple[Any, ...], value: Any) -> None:
    _only_evidence_errors(
        parse_statement, json.dumps(_replace(VALID_STATEMENT, path, value)).encode()
    )


@settings(max_examples=200)
@given(st.sampled_from(ENVELOPE_PATHS), json_values)
def test_mutated_envelopes_only_raise_evidence_error(path: tuple[Any, ...], value: Any) -> None:
    _only_evidence_errors(
        parse_envelope, json.dumps(_replace(VALID_ENVELOPE, path, value)).encode()
    )


@given(st.sampled_from(EVENT_PATHS), json_values)
def test_mutated_events_only_raise_evidence_error(path: tuple[Any, ...], value: Any) -> None:
    _only_evidence_errors(
        event_from_json,
        _replace(
            event_to_json(RuntimeEvent(0, "d", "o", b"c", "2026-11-23T10:00:00Z")), path, value
        ),
    )


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[A-Za-z0-9._:/-]{1,16}", fullmatch=True),
            st.binary(max_size=64),
        ),
        max_size=6,
    )
)
def test_any_valid_log_round_trips_and_replays(entries: list[tuple[str, bytes]]) -> None:
    events = [
        RuntimeEvent(i, name, name, content, "2026-11-23T10:00:00.000001Z")
        for i, (name, content) in enumerate(entries)
    ]
    assert [event_from_json(event_to_json(e)) for e in events] == events
    assert len(replay(events)) == 48
