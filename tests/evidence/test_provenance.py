"""Stage provenance: SLSA v1 in, the same values out; anything else is a format error."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from attestd.evidence import EvidenceFormatError, RuntimeEvent, canonical_json
from attestd.evidence.provenance import (
    PREVIOUS_STAGE,
    SLSA_PROVENANCE_TYPE,
    STAGE_BUILD_TYPE,
    StageArtifact,
    StageAttestation,
    StageProvenance,
    builder_id,
    provenance_digest,
    stage_nonce,
)

WHEN = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def make(previous: str | None = "ab" * 32) -> StageProvenance:
    return StageProvenance(
        pipeline="llm-release",
        run_id="run-42",
        stage="train",
        inputs=(StageArtifact("/data/train", {"sha256": "11" * 32}, "CC-BY-4.0", ("pii:none",)),),
        outputs=(StageArtifact("/models/base", {"sha256": "22" * 32}, "Apache-2.0"),),
        previous=previous,
        builder_id=builder_id("tdx", "simulated-tdx", "sha256:" + "cd" * 32),
        agent_version="0.1.0",
        started_on=WHEN,
        finished_on=WHEN,
        log_segment=(RuntimeEvent(3, "pipeline.train", "epoch", b"{}", "2026-11-23T10:00:00Z"),),
    )


@pytest.mark.parametrize("previous", ["ab" * 32, None])
def test_round_trip(previous: str | None) -> None:
    provenance = make(previous)
    statement = provenance.to_statement()
    assert StageProvenance.from_statement(json.loads(canonical_json(statement))) == provenance


def test_statement_is_slsa_provenance_v1() -> None:
    statement: Any = make().to_statement()
    assert statement["predicateType"] == SLSA_PROVENANCE_TYPE
    build = statement["predicate"]["buildDefinition"]
    assert build["buildType"] == STAGE_BUILD_TYPE
    assert build["resolvedDependencies"][-1] == {
        "name": PREVIOUS_STAGE,
        "digest": {"sha256": "ab" * 32},
    }
    assert statement["subject"][0]["annotations"] == {"license": "Apache-2.0"}
    assert statement["predicate"]["runDetails"]["builder"]["id"].startswith(
        "https://attestd.dev/builder/tdx/simulated-tdx#sha256:"
    )


def test_nonce_and_digest_are_sha256_of_the_payload() -> None:
    payload = canonical_json(make().to_statement())
    assert len(stage_nonce(payload)) == 32
    assert stage_nonce(payload).hex() == provenance_digest(payload)


def test_attestation_file_round_trip() -> None:
    attestation = StageAttestation(provenance=b'{"a":1}', evidence=b'{"b":2}')
    assert StageAttestation.from_json(attestation.to_json()) == attestation


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (lambda s: s.update(predicateType="x"), "predicateType"),
        (lambda s: s["predicate"]["buildDefinition"].update(buildType="x"), "buildType"),
        (lambda s: s["subject"][0].update(name=5), "subject[0].name"),
        (lambda s: s["subject"].append(dict(s["subject"][0])), "subject"),
        (lambda s: s["predicate"]["runDetails"]["metadata"].update(invocationId="x/y"),
         "invocationId"),
        (lambda s: s["predicate"]["runDetails"]["byproducts"][0].update(content="e30="), "digest"),
        (lambda s: s["subject"][0].update(annotations={"licence": "MIT"}), "annotations.licence"),
        (lambda s: s["predicate"]["buildDefinition"]["resolvedDependencies"].append(
            {"name": PREVIOUS_STAGE, "digest": {"sha256": "00" * 32}}), "appears twice"),
    ],
)  # fmt: skip
def test_malformed_provenance_names_the_problem(edit: Any, where: str) -> None:
    statement: Any = json.loads(canonical_json(make().to_statement()))
    edit(statement)
    with pytest.raises(EvidenceFormatError, match=where.replace("[", r"\[").replace("]", r"\]")):
        StageProvenance.from_statement(statement)


def test_attestation_with_another_media_type_is_refused() -> None:
    with pytest.raises(EvidenceFormatError, match="mediaType"):
        StageAttestation.from_json(b'{"mediaType":"x","provenance":{},"evidence":{}}')


def test_read_provenance_gives_the_signed_payload_its_digest_and_subjects() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from attestd.evidence.envelope import sign_json

    provenance = make()
    envelope = sign_json(provenance.to_statement(), ec.generate_private_key(ec.SECP256R1()))
    attestation = StageAttestation(provenance=envelope, evidence=b'{"b":2}')
    parsed = attestation.read_provenance()
    assert parsed.provenance == provenance
    assert parsed.payload == canonical_json(provenance.to_statement())
    assert parsed.digest == attestation.provenance_digest() == provenance_digest(parsed.payload)
    # As the statement carries them: members sorted, annotations first.
    assert json.dumps(parsed.subjects_json()) == json.dumps(json.loads(parsed.payload)["subject"])
    first = parsed.subjects_json()[0]
    assert isinstance(first, dict) and list(first) == ["annotations", "digest", "name"]


def test_read_provenance_refuses_a_payload_that_is_not_stage_provenance() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from attestd.evidence.envelope import sign_json

    envelope = sign_json({"_type": "x"}, ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(EvidenceFormatError):
        StageAttestation(provenance=envelope, evidence=b"{}").read_provenance()
