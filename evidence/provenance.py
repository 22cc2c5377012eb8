"""Stage attestations: SLSA Provenance v1 for one pipeline stage, bound to TEE evidence.

A stage attestation is two DSSE envelopes signed by the same agent key::

    {"mediaType": STAGE_ATTESTATION_MEDIA_TYPE,
     "provenance": <in-toto Statement, predicateType SLSA Provenance v1>,
     "evidence":   <attestd evidence whose binding nonce is SHA-256(provenance payload)>}

The provenance says what the stage consumed and produced, which stage came
before it (the SHA-256 of that stage's provenance payload), and which runtime
events it recorded. The evidence makes the hardware vouch for it: its quote's
REPORTDATA binds a nonce that is the digest of the provenance payload, the
outputs as subjects, and the runtime log the segment is part of. Why not an
SCAI attribute assertion: SCAI would wrap the same quote in a second predicate
type no verifier needs; our evidence predicate already is the attestation of
the TEE, so the provenance stays plain SLSA that any SLSA tool can read, and
the evidence beside it is checked by attestd (docs/lifecycle.md).

    provenance = StageProvenance(...)
    payload = canonical_json(provenance.to_statement())
    evidence = agent.evidence(stage_nonce(payload), outputs)
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from attestd.evidence import _json
from attestd.evidence.binding import Subject
from attestd.evidence.canonical import canonical_json
from attestd.evidence.runtime_log_format import (
    RuntimeEvent,
    event_from_json,
    event_to_json,
    format_rfc3339,
    parse_rfc3339,
)
from attestd.evidence.statement import STATEMENT_TYPE

SLSA_PROVENANCE_TYPE = "https://slsa.dev/provenance/v1"
STAGE_BUILD_TYPE = "https://attestd.dev/stage/v1"
STAGE_ATTESTATION_MEDIA_TYPE = "application/vnd.attestd.stage-attestation.v1+json"
PREVIOUS_STAGE = "attestd:previous-stage"
"""The resolvedDependencies name of the previous stage's provenance (digest only)."""
RUNTIME_LOG_SEGMENT = "attestd:runtime-log-segment"
"""The byproducts name of the runtime events recorded during the stage."""
LICENSE_ANNOTATION = "license"
TAGS_ANNOTATION = "policyTags"

MAX_ARTIFACTS = 1024
MAX_SEGMENT_EVENTS = 65_536
MAX_ATTESTATION_BYTES = 32 * 1024 * 1024

# What a pipeline, run or stage name, a licence expression and a policy tag may
# contain; the agent checks requests and the verifier checks files with these.
NAME_PATTERN = re.compile(r"[A-Za-z0-9._:/@+-]{1,128}")
LICENSE_PATTERN = re.compile(r"[A-Za-z0-9.+\-() :]{1,512}")
TAG_PATTERN = re.compile(r"[A-Za-z0-9._:/=-]{1,128}")


@dataclass(frozen=True)
class StageArtifact:
    """An input or output of a stage, with the licence and policy tags it travels with."""

    name: str
    digest: Mapping[str, str]
    license: str | None = None
    tags: tuple[str, ...] = ()

    @property
    def sha256(self) -> str:
        return self.digest["sha256"]

    def subject(self) -> Subject:
        return Subject(self.name, dict(self.digest))

    def to_json(self) -> dict[str, object]:
        descriptor: dict[str, object] = {"name": self.name, "digest": dict(self.digest)}
        annotations: dict[str, object] = {}
        if self.license is not None:
            annotations[LICENSE_ANNOTATION] = self.license
        if self.tags:
            annotations[TAGS_ANNOTATION] = list(self.tags)
        if annotations:
            descriptor["annotations"] = annotations
        return descriptor

    @classmethod
    def from_json(cls, obj: object, path: str) -> StageArtifact:
        members = _json.obj(obj, path)
        for key in members:
            if key not in ("name", "digest", "annotations"):
                _json.fail(f"{path}.{key}", "unknown member")
        subject = Subject.from_json(
            {"name": members.get("name"), "digest": members.get("digest")}, path
        )
        license_: str | None = None
        tags: tuple[str, ...] = ()
        if "annotations" in members:
            annotations = _json.obj(members["annotations"], f"{path}.annotations")
            for key in annotations:
                if key not in (LICENSE_ANNOTATION, TAGS_ANNOTATION):
                    _json.fail(f"{path}.annotations.{key}", "unknown member")
            if LICENSE_ANNOTATION in annotations:
                license_ = _json.string(
                    annotations[LICENSE_ANNOTATION],
                    f"{path}.annotations.{LICENSE_ANNOTATION}",
                    max_len=512,
                    pattern=LICENSE_PATTERN,
                )
            if TAGS_ANNOTATION in annotations:
                raw = _json.array(
                    annotations[TAGS_ANNOTATION],
                    f"{path}.annotations.{TAGS_ANNOTATION}",
                    max_len=64,
                )
                tags = tuple(
                    _json.string(
                        t,
                        f"{path}.annotations.{TAGS_ANNOTATION}[{i}]",
                        max_len=128,
                        pattern=TAG_PATTERN,
                    )
                    for i, t in enumerate(raw)
                )
        return cls(subject.name, dict(subject.digest), license_, tags)


@dataclass(frozen=True)
class StageProvenance:
    """What one stage of one pipeline run consumed, produced and recorded, and on what."""

    pipeline: str
    run_id: str
    stage: str
    inputs: tuple[StageArtifact, ...]
    outputs: tuple[StageArtifact, ...]
    previous: str | None
    """SHA-256 (hex) of the previous stage's provenance payload; None for the first stage."""
    builder_id: str
    agent_version: str
    started_on: datetime
    finished_on: datetime
    log_segment: tuple[RuntimeEvent, ...] = field(default=())

    def to_statement(self) -> dict[str, object]:
        dependencies: list[object] = [a.to_json() for a in self.inputs]
        if self.previous is not None:
            dependencies.append({"name": PREVIOUS_STAGE, "digest": {"sha256": self.previous}})
        segment = canonical_json([event_to_json(e) for e in self.log_segment])
        return {
            "_type": STATEMENT_TYPE,
            "subject": [a.to_json() for a in self.outputs],
            "predicateType": SLSA_PROVENANCE_TYPE,
            "predicate": {
                "buildDefinition": {
                    "buildType": STAGE_BUILD_TYPE,
                    "externalParameters": {
                        "pipeline": self.pipeline,
                        "runId": self.run_id,
                        "stage": self.stage,
                    },
                    "resolvedDependencies": dependencies,
                },
                "runDetails": {
                    "builder": {"id": self.builder_id, "version": {"attestd": self.agent_version}},
                    "metadata": {
                        "invocationId": f"{self.run_id}/{self.stage}",
                        "startedOn": format_rfc3339(self.started_on),
                        "finishedOn": format_rfc3339(self.finished_on),
                    },
                    "byproducts": [
                        {
                            "name": RUNTIME_LOG_SEGMENT,
                            "mediaType": "application/json",
                            "digest": {"sha256": hashlib.sha256(segment).hexdigest()},
                            "content": _json.b64_encode(segment),
                        }
                    ],
                },
            },
        }

    @classmethod
    def from_statement(cls, obj: object) -> StageProvenance:
        top = _json.obj(obj, "$", fields=("_type", "subject", "predicateType", "predicate"))
        if top["_type"] != STATEMENT_TYPE:
            _json.fail("$._type", f"expected {STATEMENT_TYPE!r}")
        if top["predicateType"] != SLSA_PROVENANCE_TYPE:
            _json.fail("$.predicateType", f"expected {SLSA_PROVENANCE_TYPE!r}")
        outputs = _artifacts(top["subject"], "$.subject")
        predicate = _json.obj(
            top["predicate"], "$.predicate", fields=("buildDefinition", "runDetails")
        )
        build = _json.obj(
            predicate["buildDefinition"],
            "$.predicate.buildDefinition",
            fields=("buildType", "externalParameters", "resolvedDependencies"),
        )
        if build["buildType"] != STAGE_BUILD_TYPE:
            _json.fail("$.predicate.buildDefinition.buildType", f"expected {STAGE_BUILD_TYPE!r}")
        params_path = "$.predicate.buildDefinition.externalParameters"
        params = _json.obj(
            build["externalParameters"], params_path, fields=("pipeline", "runId", "stage")
        )
        pipeline = _json.string(
            params["pipeline"], f"{params_path}.pipeline", max_len=128, pattern=NAME_PATTERN
        )
        run_id = _json.string(
            params["runId"], f"{params_path}.runId", max_len=128, pattern=NAME_PATTERN
        )
        stage = _json.string(
            params["stage"], f"{params_path}.stage", max_len=128, pattern=NAME_PATTERN
        )
        deps_path = "$.predicate.buildDefinition.resolvedDependencies"
        raw_deps = _json.array(build["resolvedDependencies"], deps_path, max_len=MAX_ARTIFACTS + 1)
        previous: str | None = None
        inputs: list[StageArtifact] = []
        for index, raw in enumerate(raw_deps):
            path = f"{deps_path}[{index}]"
            if isinstance(raw, dict) and raw.get("name") == PREVIOUS_STAGE:
                if previous is not None:
                    _json.fail(path, f"{PREVIOUS_STAGE} appears twice")
                link = _json.obj(raw, path, fields=("name", "digest"))
                digest = _json.obj(link["digest"], f"{path}.digest", fields=("sha256",))
                previous = _json.hex_bytes(digest["sha256"], f"{path}.digest.sha256", size=32).hex()
                continue
            inputs.append(StageArtifact.from_json(raw, path))
        run_path = "$.predicate.runDetails"
        run = _json.obj(
            predicate["runDetails"], run_path, fields=("builder", "metadata", "byproducts")
        )
        builder = _json.obj(run["builder"], f"{run_path}.builder", fields=("id", "version"))
        builder_id = _json.string(builder["id"], f"{run_path}.builder.id", min_len=1, max_len=512)
        version = _json.obj(builder["version"], f"{run_path}.builder.version", fields=("attestd",))
        agent_version = _json.string(
            version["attestd"], f"{run_path}.builder.version.attestd", max_len=64
        )
        metadata = _json.obj(
            run["metadata"],
            f"{run_path}.metadata",
            fields=("invocationId", "startedOn", "finishedOn"),
        )
        invocation = _json.string(
            metadata["invocationId"], f"{run_path}.metadata.invocationId", max_len=300
        )
        if invocation != f"{run_id}/{stage}":
            _json.fail(f"{run_path}.metadata.invocationId", "does not name this run and stage")
        started = _time(metadata["startedOn"], f"{run_path}.metadata.startedOn")
        finished = _time(metadata["finishedOn"], f"{run_path}.metadata.finishedOn")
        byproducts = _json.array(run["byproducts"], f"{run_path}.byproducts", max_len=1)
        if len(byproducts) != 1:
            _json.fail(f"{run_path}.byproducts", f"expected exactly the {RUNTIME_LOG_SEGMENT}")
        segment = _segment(byproducts[0], f"{run_path}.byproducts[0]")
        return cls(
            pipeline, run_id, stage, tuple(inputs), outputs, previous, builder_id,
            agent_version, started, finished, segment,
        )  # fmt: skip


def _time(value: object, path: str) -> datetime:
    text = _json.string(value, path, max_len=40)
    return parse_rfc3339(text)


def _artifacts(value: object, path: str) -> tuple[StageArtifact, ...]:
    items = _json.array(value, path, max_len=MAX_ARTIFACTS)
    artifacts = tuple(StageArtifact.from_json(item, f"{path}[{i}]") for i, item in enumerate(items))
    names = [a.name for a in artifacts]
    if len(set(names)) != len(names):
        _json.fail(path, "an artifact name appears twice")
    return artifacts


def _segment(value: object, path: str) -> tuple[RuntimeEvent, ...]:
    members = _json.obj(value, path, fields=("name", "mediaType", "digest", "content"))
    if members["name"] != RUNTIME_LOG_SEGMENT:
        _json.fail(f"{path}.name", f"expected {RUNTIME_LOG_SEGMENT!r}")
    content = _json.b64_bytes(members["content"], f"{path}.content", max_size=MAX_ATTESTATION_BYTES)
    digest = _json.obj(members["digest"], f"{path}.digest", fields=("sha256",))
    expected = _json.hex_bytes(digest["sha256"], f"{path}.digest.sha256", size=32)
    if hashlib.sha256(content).digest() != expected:
        _json.fail(f"{path}.digest", "does not match the content")
    raw = _json.array(
        _json.loads(content, what="runtime-log segment", max_bytes=MAX_ATTESTATION_BYTES),
        f"{path}.content",
        max_len=MAX_SEGMENT_EVENTS,
    )
    return tuple(event_from_json(e, f"{path}.content[{i}]") for i, e in enumerate(raw))


def stage_nonce(provenance_payload: bytes) -> bytes:
    """The evidence nonce that binds a stage's TEE evidence to its provenance payload."""
    return hashlib.sha256(provenance_payload).digest()


def provenance_digest(provenance_payload: bytes) -> str:
    """How the next stage names this one: SHA-256 (hex) of its provenance payload."""
    return hashlib.sha256(provenance_payload).hexdigest()


@dataclass(frozen=True)
class StageAttestation:
    """The file a stage hands on: its provenance envelope and its evidence envelope."""

    provenance: bytes
    evidence: bytes

    def to_json(self) -> bytes:
        return canonical_json(
            {
                "mediaType": STAGE_ATTESTATION_MEDIA_TYPE,
                "provenance": _json.loads(
                    self.provenance, what="provenance", max_bytes=MAX_ATTESTATION_BYTES
                ),
                "evidence": _json.loads(
                    self.evidence, what="evidence", max_bytes=MAX_ATTESTATION_BYTES
                ),
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> StageAttestation:
        doc = _json.obj(
            _json.loads(data, what="stage attestation", max_bytes=MAX_ATTESTATION_BYTES),
            "$",
            fields=("mediaType", "provenance", "evidence"),
        )
        if doc["mediaType"] != STAGE_ATTESTATION_MEDIA_TYPE:
            _json.fail("$.mediaType", f"expected {STAGE_ATTESTATION_MEDIA_TYPE!r}")
        return cls(
            provenance=canonical_json(_json.obj(doc["provenance"], "$.provenance")),
            evidence=canonical_json(_json.obj(doc["evidence"], "$.evidence")),
        )


def builder_id(tee: str, backend: str, agent_key_id: str) -> str:
    """SLSA builder.id of an attestd agent: its TEE, its backend, and its key."""
    return f"https://attestd.dev/builder/{tee}/{backend}#{agent_key_id}"


def outputs_as_subjects(outputs: Sequence[StageArtifact]) -> list[Subject]:
    return [a.subject() for a in outputs]
