"""Subjects, the binding, report_data and nonces."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from attestd.evidence import (
    MAX_NONCE_BYTES,
    MIN_NONCE_BYTES,
    Binding,
    EvidenceFormatError,
    NonceError,
    Subject,
    agent_key_link,
    canonical_json,
    log_head_link,
    public_key_pem,
    report_data_for,
    subjects_digest,
    subjects_link,
    validate_nonce,
)
from tests.evidence.builders import example_binding, example_subjects, make_statement


def test_binding_json_round_trip_is_exact() -> None:
    binding = example_binding()
    obj = binding.to_json()
    assert Binding.from_json(obj) == binding
    assert Binding.from_json(json.loads(canonical_json(obj))).to_json() == obj


def test_binding_json_shape() -> None:
    obj: Any = example_binding().to_json()
    assert set(obj) == {"nonce", "subjectsDigest", "runtimeLogHead", "agentKeyId", "issuedAt"}
    assert obj["issuedAt"] == "2026-11-23T10:00:02.000000Z"
    assert set(obj["subjectsDigest"]) == {"sha256"}
    assert set(obj["runtimeLogHead"]) == {"sha384"}


def test_issued_at_in_another_zone_is_written_as_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    binding = dataclasses.replace(
        example_binding(), issued_at=datetime(2026, 11, 23, 12, 0, 2, tzinfo=plus_two)
    )
    assert binding.to_json()["issuedAt"] == "2026-11-23T10:00:02.000000Z"


def test_naive_issued_at_is_refused() -> None:
    binding = dataclasses.replace(example_binding(), issued_at=datetime(2026, 11, 23))
    with pytest.raises(EvidenceFormatError, match="time zone"):
        binding.to_json()


def test_report_data_is_sha512_of_the_tagged_root_of_a_batch_of_one() -> None:
    binding = example_binding()
    report_data = report_data_for(binding)
    assert len(report_data) == 64
    # A batch of one: the root is the RFC 9162 leaf hash of JCS(binding).
    root = hashlib.sha256(b"\x00" + canonical_json(binding.to_json())).digest()
    assert report_data == hashlib.sha512(b"attestd-evidence-batch-root-v1\x00" + root).digest()


@pytest.mark.parametrize(
    "change",
    [
        {"nonce": bytes(range(1, 33))},
        {"subjects_digest": "00" * 32},
        {"log_head": bytes(48)},
        {"agent_key_id": "sha256:" + "00" * 32},
        {"issued_at": datetime(2026, 11, 23, 10, 0, 2, 1, tzinfo=UTC)},
    ],
)
def test_report_data_changes_when_any_field_changes(change: dict[str, Any]) -> None:
    binding = example_binding()
    assert report_data_for(dataclasses.replace(binding, **change)) != report_data_for(binding)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("nonce", "00" * 15),
        ("nonce", "00" * 65),
        ("nonce", "AA" * 32),
        ("nonce", 12),
        ("subjectsDigest", {"sha256": "00" * 31}),
        ("subjectsDigest", {"sha512": "00" * 64}),
        ("subjectsDigest", "00" * 32),
        ("runtimeLogHead", {"sha384": "00" * 32}),
        ("runtimeLogHead", {"sha384": "00" * 48, "sha256": "00" * 32}),
        ("agentKeyId", "sha256:" + "0" * 63),
        ("agentKeyId", "SHA256:" + "0" * 64),
        ("issuedAt", "2026-11-23T10:00:02Z"),  # not canonical: six fraction digits required
        ("issuedAt", "2026-13-23T10:00:02.000000Z"),
        ("issuedAt", None),
    ],
)
def test_binding_from_json_is_strict(path: str, value: object) -> None:
    obj = {**example_binding().to_json(), path: value}
    with pytest.raises(EvidenceFormatError) as info:
        Binding.from_json(obj)
    assert info.value.path is not None and info.value.path.startswith(f"$.{path}")


def test_short_nonce_in_binding_is_a_nonce_error() -> None:
    obj = {**example_binding().to_json(), "nonce": "00" * 8}
    with pytest.raises(NonceError) as info:
        Binding.from_json(obj)
    assert info.value.reason == "nonce_invalid"
    assert info.value.path == "$.nonce"


@pytest.mark.parametrize("size", [MIN_NONCE_BYTES, 32, MAX_NONCE_BYTES])
def test_validate_nonce_accepts_16_to_64_bytes(size: int) -> None:
    validate_nonce(bytes(size))


@pytest.mark.parametrize(
    "nonce", [b"", bytes(MIN_NONCE_BYTES - 1), bytes(MAX_NONCE_BYTES + 1), "ab" * 16]
)
def test_validate_nonce_rejects_other_lengths_and_types(nonce: bytes) -> None:
    with pytest.raises(NonceError, match="nonce"):
        validate_nonce(nonce)


def test_subjects_digest_ignores_order() -> None:
    subjects = example_subjects()
    assert subjects_digest(subjects) == subjects_digest(tuple(reversed(subjects)))


def test_subjects_digest_is_sha256_of_sorted_jcs_list() -> None:
    subjects = example_subjects()
    by_hand = json.dumps(
        sorted(
            ({"name": s.name, "digest": dict(s.digest)} for s in subjects), key=lambda o: o["name"]
        ),
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    assert subjects_digest(subjects) == hashlib.sha256(by_hand).hexdigest()


def test_subjects_digest_changes_with_any_digest() -> None:
    subjects = list(example_subjects())
    before = subjects_digest(subjects)
    subjects[0] = Subject(subjects[0].name, {"sha256": "00" * 32})
    assert subjects_digest(subjects) != before


def test_duplicate_subject_names_are_an_error() -> None:
    subject = example_subjects()[0]
    with pytest.raises(EvidenceFormatError, match="more than once"):
        subjects_digest([subject, Subject(subject.name, {"sha256": "11" * 32})])


def test_empty_subjects_digest_is_sha256_of_empty_array() -> None:
    assert subjects_digest([]) == hashlib.sha256(b"[]").hexdigest()


def test_subject_json_round_trip_with_extra_algorithm() -> None:
    subject = Subject("m", {"sha256": "ab" * 32, "blake3": "cd" * 32})
    assert Subject.from_json(subject.to_json()) == subject


@pytest.mark.parametrize(
    ("obj", "path"),
    [
        ({"name": "", "digest": {"sha256": "00" * 32}}, "$.name"),
        ({"name": "m", "digest": {}}, "$.digest.sha256"),
        ({"name": "m", "digest": {"sha256": "00" * 31}}, "$.digest.sha256"),
        ({"name": "m", "digest": {"sha256": "00" * 32, "bad alg": "00"}}, "$.digest.bad alg"),
        ({"name": "m", "digest": {"sha256": "00" * 32, "blake3": ""}}, "$.digest.blake3"),
        ({"name": "m"}, "$.digest"),
        ({"name": 1, "digest": {"sha256": "00" * 32}}, "$.name"),
        ([], "$"),
    ],
)
def test_subject_from_json_is_strict(obj: object, path: str) -> None:
    with pytest.raises(EvidenceFormatError) as info:
        Subject.from_json(obj)
    assert info.value.path == path


# -- the links the binding names ---------------------------------------------------------


def test_a_consistent_statement_breaks_no_link() -> None:
    statement = make_statement()
    binding = statement.predicate.binding
    assert agent_key_link(binding, statement.predicate.agent_key_pem) is None
    assert subjects_link(binding, statement.subjects) is None
    assert log_head_link(binding, statement.predicate.runtime_log) is None


def test_subjects_not_in_the_binding_break_the_subjects_link() -> None:
    statement = make_statement()
    extra = (*statement.subjects, Subject("extra", {"sha256": "00" * 32}))
    broken = subjects_link(statement.predicate.binding, extra)
    assert broken is not None and broken.reason == "subjects_digest_mismatch"


def test_another_agent_key_breaks_the_agent_key_link() -> None:
    statement = make_statement()
    other = public_key_pem(ec.generate_private_key(ec.SECP256R1()).public_key())
    broken = agent_key_link(statement.predicate.binding, other)
    assert broken is not None and broken.reason == "agent_key_mismatch"


def test_a_truncated_log_breaks_the_log_head_link() -> None:
    statement = make_statement()
    broken = log_head_link(statement.predicate.binding, statement.predicate.runtime_log[:-1])
    assert broken is not None and broken.reason == "runtime_log_mismatch"
    assert statement.predicate.binding.log_head.hex() in broken.detail


def test_a_log_with_a_gap_breaks_the_log_head_link() -> None:
    statement = make_statement()
    log = statement.predicate.runtime_log
    assert len(log) >= 2
    broken = log_head_link(statement.predicate.binding, log[1:])
    assert broken is not None and broken.reason == "runtime_log_mismatch"
    assert "sequence" in broken.detail
