"""The appraisal's fast paths give exactly the bytes and answers of the general code."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from attestd.evidence import (
    Binding,
    EvidenceFormatError,
    RuntimeEvent,
    Subject,
    canonical_json,
    event_digest,
    key_id,
    leaf_bytes,
    load_public_key_pem,
    public_key_pem,
    subjects_digest,
)
from attestd.evidence import binding as binding_module
from attestd.evidence import keys as keys_module
from attestd.evidence import runtime_log_format as log_format
from attestd.evidence import statement as statement_module
from attestd.evidence.envelope import _b64_dsse
from attestd.evidence.keys import pem_key_id
from attestd.evidence.runtime_log_format import (
    encode_event,
    event_from_json,
    event_to_json,
    format_rfc3339,
)
from attestd.tee import _cache


def _binding(agent_key_id: str, subjects: str = "ab" * 32) -> Binding:
    issued = datetime(2026, 12, 2, 6, 55, 38, 123456, tzinfo=UTC)
    return Binding(os.urandom(32), subjects, os.urandom(48), agent_key_id, issued)


def test_leaf_bytes_equal_the_jcs_of_the_binding() -> None:
    binding = _binding("sha256:" + "cd" * 32)
    assert leaf_bytes(binding) == canonical_json(binding.to_json())


@pytest.mark.parametrize("odd", ['key "quoted"', "clé\u2028", "sha256:" + "CD" * 32])
def test_leaf_bytes_of_strings_that_need_escaping_take_the_general_encoder(odd: str) -> None:
    binding = _binding(odd, subjects=odd)
    assert leaf_bytes(binding) == canonical_json(binding.to_json())


@pytest.mark.parametrize("size", [0, 1, 2, 3, 31, 32, 33])
def test_dsse_base64_decodes_every_accepted_spelling_alike(size: int) -> None:
    data = os.urandom(size)
    standard = base64.b64encode(data).decode()
    for text in (standard, standard.rstrip("="), base64.urlsafe_b64encode(data).decode()):
        assert _b64_dsse(text, "$.payload", max_size=64) == data


def test_dsse_base64_over_the_limit_is_refused_on_the_fast_path_too() -> None:
    with pytest.raises(EvidenceFormatError, match="more than the limit"):
        _b64_dsse(base64.b64encode(bytes(65)).decode(), "$.payload", max_size=64)


def test_pem_key_id_is_the_key_id_and_refuses_what_load_refuses() -> None:
    pem = public_key_pem(ec.generate_private_key(ec.SECP256R1()).public_key())
    assert pem_key_id(pem) == key_id(load_public_key_pem(pem))
    assert pem_key_id(pem) == pem_key_id(pem)
    for bad in ("not a key", b"bytes"):
        with pytest.raises(EvidenceFormatError):
            pem_key_id(bad)  # type: ignore[arg-type]


# -- caches of parsed events, subjects digests, JCS sizes and key ids ----------------------


@pytest.fixture(autouse=True)
def empty_caches() -> Iterator[None]:
    _cache.clear_all()
    yield
    _cache.clear_all()


def _event_json(sequence: object = 0, **extra: object) -> dict[str, object]:
    event = RuntimeEvent(0, "pipeline", "stage.start", b"train", "2026-12-02T06:55:38.123456Z")
    return event_to_json(event) | {"sequence": sequence} | extra


def test_an_event_is_parsed_once_and_equals_a_fresh_parse() -> None:
    first = event_from_json(_event_json())
    assert event_from_json(_event_json()) is first
    with _cache.caching(False):
        fresh = event_from_json(_event_json())
    assert fresh is not first and fresh == first
    assert event_digest(first) == event_digest(fresh)


def test_a_cached_event_is_never_served_for_a_json_true_or_a_float_sequence() -> None:
    event_from_json(_event_json(1))  # cached under sequence 1 (== True == 1.0 in Python)
    for odd in (True, 1.0):
        with pytest.raises(EvidenceFormatError, match="sequence"):
            event_from_json(_event_json(odd))


def test_events_with_a_caller_are_keyed_by_it() -> None:
    caller = {"pid": 10, "uid": 1000, "gid": 1000}
    with_caller = event_from_json(_event_json(caller=caller))
    other = event_from_json(_event_json(caller=caller | {"pid": 11}))
    plain = event_from_json(_event_json())
    assert with_caller.caller is not None and with_caller.caller.pid == 10
    assert other.caller is not None and other.caller.pid == 11
    assert plain.caller is None
    with pytest.raises(EvidenceFormatError, match="caller"):
        event_from_json(_event_json(caller=caller | {"pid": True}))
    with pytest.raises(EvidenceFormatError):
        event_from_json(_event_json(caller=None))


def test_a_malformed_event_is_refused_every_time_and_large_content_is_not_kept() -> None:
    bad = _event_json(domain="bad domain!")
    for _ in range(2):
        with pytest.raises(EvidenceFormatError, match="domain"):
            event_from_json(bad)
    assert len(log_format._EVENTS) == 0
    big = base64.b64encode(bytes(log_format._CACHED_CONTENT_CHARS)).decode()
    event_from_json(_event_json(content=big))
    assert len(log_format._EVENTS) == 0


def test_the_event_cache_stays_within_its_bound() -> None:
    small = _cache.ValidityCache[tuple[object, ...], RuntimeEvent]("test.events", maxsize=3)
    original = log_format._EVENTS
    log_format._EVENTS = small
    try:
        events = [event_from_json(_event_json(i)) for i in range(10)]
        assert len(small) == 3
        assert [e.sequence for e in events] == list(range(10))
    finally:
        log_format._EVENTS = original


def test_an_events_remembered_digest_is_its_digest() -> None:
    event = RuntimeEvent(3, "pipeline", "stage.end", b"x", "2026-12-02T06:55:38.123456Z")
    expected = hashlib.sha384(encode_event(event)).digest()
    assert event_digest(event) == expected
    assert event_digest(event) == expected  # the remembered one
    content = bytearray(b"x")
    mutable = RuntimeEvent(3, "pipeline", "stage.end", content, "2026-12-02T06:55:38.123456Z")  # type: ignore[arg-type]
    before = event_digest(mutable)
    content[0] = ord("y")  # mutable content: its digest is computed afresh, never remembered
    assert event_digest(mutable) != before
    with pytest.raises(EvidenceFormatError):
        event_digest(RuntimeEvent(True, "a", "b", b"", "t"))


def test_a_subjects_digest_is_remembered_and_follows_the_subjects() -> None:
    subjects = [Subject("/m", {"sha256": "11" * 32}), Subject("/n", {"sha256": "22" * 32})]
    first = subjects_digest(subjects)
    assert subjects_digest(subjects) == first
    assert binding_module._SUBJECTS_DIGESTS.hits >= 1
    changed = [Subject("/m", {"sha256": "33" * 32}), subjects[1]]
    assert subjects_digest(changed) != first
    with _cache.caching(False):
        assert subjects_digest(subjects) == first
        assert subjects_digest(changed) == subjects_digest(list(reversed(changed)))
    with pytest.raises(EvidenceFormatError, match="more than once"):
        subjects_digest([subjects[0], subjects[0]])


def test_jcs_sizes_are_remembered_and_refusals_keep_their_path() -> None:
    members = {"hostname": "bench", "kernel": "6.8"}
    size = statement_module._jcs_size(members, "$.host")
    assert size == len(canonical_json(members))
    assert statement_module._jcs_size(dict(members), "$.host") == size
    assert statement_module._JCS_SIZES.hits >= 1
    with pytest.raises(EvidenceFormatError) as e:
        statement_module._jcs_size({"x": float("nan")}, "$.predicate.host")
    assert e.value.path == "$.predicate.host"


def test_key_ids_are_remembered_per_key_object_within_a_bound() -> None:
    keys = [ec.generate_private_key(ec.SECP256R1()).public_key() for _ in range(3)]
    for key in keys:
        assert key_id(key) == key_id(load_public_key_pem(public_key_pem(key)))
        assert key_id(key) == key_id(key)  # the remembered one
    original = keys_module._KEY_IDS_MAX
    keys_module._KEY_IDS_MAX = 2
    try:
        for _ in range(3):
            key_id(ec.generate_private_key(ec.SECP256R1()).public_key())
        assert len(keys_module._KEY_IDS) <= 2
    finally:
        keys_module._KEY_IDS_MAX = original


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 12, 2, 6, 55, 38, 123456, tzinfo=UTC),
        datetime(1000, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(999, 1, 1, tzinfo=UTC),
    ],
)
def test_format_rfc3339_fast_path_writes_what_strftime_writes(moment: datetime) -> None:
    assert format_rfc3339(moment) == moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.mark.parametrize(
    "text", ["QQ==", "QR==", "QUJD", "QUJD=", "QQ", "-_-_", "QU=D", "", " QUJD", "QUJDQQ==QUJD"]
)
def test_strict_base64_fast_paths_agree_with_the_general_checks(text: str) -> None:
    from attestd.evidence import _json

    def general(call: object) -> object:
        try:
            return call()  # type: ignore[operator]
        except EvidenceFormatError as exc:
            return exc.message

    fast_dsse = general(lambda: _b64_dsse(text, "$.payload", max_size=64))
    fast_std = general(lambda: _json.b64_bytes(text, "$.quote", max_size=64))
    try:
        standard = base64.b64decode(text, validate=True)
        canonical = base64.b64encode(standard).decode() == text
    except ValueError:
        standard, canonical = None, False
    if canonical:
        assert fast_std == standard and fast_dsse == standard
    else:
        assert isinstance(fast_std, str)  # refused, with the general message


def test_a_subject_is_parsed_once_and_no_change_to_one_reaches_another() -> None:
    raw = {"name": "/srv/models/demo", "digest": {"sha256": "11" * 32}}
    first = Subject.from_json(raw)
    first.digest["sha256"] = "22" * 32  # type: ignore[index]  # a caller's own copy
    second = Subject.from_json(dict(raw, digest=dict(raw["digest"])))  # type: ignore[arg-type]
    assert second.digest == {"sha256": "11" * 32}
    assert binding_module._SUBJECTS.hits >= 1
    with _cache.caching(False):
        assert Subject.from_json(raw) == second
    for bad in ({"name": "/m", "digest": {"sha256": "XY"}}, {"name": 1, "digest": {}}):
        for _ in range(2):
            with pytest.raises(EvidenceFormatError):
                Subject.from_json(bad)
    assert len(binding_module._SUBJECTS) == 1


@pytest.mark.parametrize(
    "text", ["", "00", "ab", "AB", "a b", "abc", "0g", " ab", "ab ", "abcd" * 8, "ABcd" * 8, "é0"]
)
@pytest.mark.parametrize("size", [None, 1, 16])
def test_hex_fast_path_agrees_with_the_general_checks(text: str, size: int | None) -> None:
    from attestd.evidence import _json

    try:
        got: object = _json.hex_bytes(text, "$.x", size=size)
    except EvidenceFormatError as exc:
        got = exc.message
    lowercase = len(text) % 2 == 0 and all(c in "0123456789abcdef" for c in text)
    if lowercase and (size is None or len(text) == 2 * size):
        assert got == bytes.fromhex(text)
    else:
        assert isinstance(got, str)
