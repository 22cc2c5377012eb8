"""The subject rule: artifacts, or the agent alone; a forged agent subject is a broken link."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from attestd.evidence import EvidenceFormatError, Statement, Subject, canonical_json, key_id
from attestd.evidence.provenance import StageProvenance
from attestd.evidence.subjects import (
    AGENT_SUBJECT_MISMATCH,
    AgentSubjectError,
    agent_subject,
    agent_subject_link,
    artifact_subjects,
    statement_subjects,
)
from tests.evidence.builders import example_key, example_subjects, make_statement
from tests.evidence.test_provenance import make

KEY = key_id(example_key().public_key())
OTHER = "sha256:" + "ee" * 32


def test_the_agent_subject_is_the_sha256_of_the_keys_spki_der() -> None:
    der = (
        example_key()
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    subject = agent_subject(KEY)
    assert subject.name == f"attestd:agent/{KEY}"
    assert dict(subject.digest) == {"sha256": hashlib.sha256(der).hexdigest()}


def test_artifacts_are_the_subjects_and_none_means_the_agent_alone() -> None:
    artifacts = list(example_subjects())
    assert statement_subjects(artifacts, KEY) == artifacts
    assert statement_subjects([], KEY) == [agent_subject(KEY)]
    assert artifact_subjects([agent_subject(KEY)]) == []
    assert artifact_subjects([*artifacts]) == artifacts


def test_an_artifact_under_the_reserved_prefix_is_refused() -> None:
    with pytest.raises(AgentSubjectError) as err:
        statement_subjects([Subject(f"attestd:agent/{KEY}", {"sha256": "00" * 32})], KEY)
    assert err.value.reason == AGENT_SUBJECT_MISMATCH


def test_a_malformed_key_id_makes_no_agent_subject() -> None:
    with pytest.raises(AgentSubjectError):
        agent_subject("sha256:xyz")


def test_the_agent_subject_of_the_evidence_key_holds() -> None:
    assert agent_subject_link([agent_subject(KEY)], KEY) is None
    assert agent_subject_link(list(example_subjects()), KEY) is None


@pytest.mark.parametrize(
    "subjects",
    [
        pytest.param([agent_subject(OTHER)], id="another-key"),
        pytest.param([Subject(f"attestd:agent/{KEY}", {"sha256": "00" * 32})], id="wrong-digest"),
        pytest.param(
            [Subject(f"attestd:agent/{KEY}", {"sha256": KEY[7:], "blake3": "11" * 32})],
            id="extra-digest",
        ),
        pytest.param([Subject("attestd:agent/me", {"sha256": KEY[7:]})], id="wrong-name"),
        pytest.param([*example_subjects(), agent_subject(KEY)], id="beside-artifacts"),
    ],
)
def test_a_forged_or_misplaced_agent_subject_is_a_broken_link(subjects: list[Subject]) -> None:
    broken = agent_subject_link(subjects, KEY)
    assert broken is not None
    assert broken.reason == AGENT_SUBJECT_MISMATCH


def test_a_statement_without_subjects_is_malformed() -> None:
    statement = make_statement()
    doc: Any = json.loads(canonical_json(statement.to_json()))
    assert Statement.from_json(doc) == statement
    doc["subject"] = []
    with pytest.raises(EvidenceFormatError, match="at least one subject"):
        Statement.from_json(doc)


def test_a_stage_without_outputs_names_its_agent_and_reads_back_without_outputs() -> None:
    provenance = dataclasses.replace(make(), outputs=())
    statement: Any = provenance.to_statement()
    key = provenance.builder_id.rpartition("#")[2]
    assert statement["subject"] == [agent_subject(key).to_json()]
    parsed = StageProvenance.from_statement(json.loads(canonical_json(statement)))
    assert parsed == provenance
    assert parsed.outputs == ()


@pytest.mark.parametrize(
    "subject",
    [
        pytest.param([], id="empty"),
        pytest.param([agent_subject(OTHER).to_json()], id="another-key"),
        pytest.param(
            [{"name": f"attestd:agent/{OTHER}", "digest": {"sha256": "00" * 32}}], id="forged"
        ),
    ],
)
def test_a_stage_without_outputs_must_name_exactly_its_builders_agent(subject: object) -> None:
    statement: Any = dataclasses.replace(make(), outputs=()).to_statement()
    statement["subject"] = subject
    with pytest.raises(EvidenceFormatError):
        StageProvenance.from_statement(json.loads(canonical_json(statement)))


def test_an_agent_subject_beside_outputs_is_refused_in_provenance() -> None:
    provenance = make()
    statement: Any = provenance.to_statement()
    key = provenance.builder_id.rpartition("#")[2]
    statement["subject"].append(agent_subject(key).to_json())
    with pytest.raises(EvidenceFormatError):
        StageProvenance.from_statement(json.loads(canonical_json(statement)))
