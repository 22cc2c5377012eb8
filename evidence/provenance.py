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

A stage attestation file is read back (parsed strictly, not yet verified) with::

    parsed = StageAttestation.from_json(data).read_provenance()
    parsed.provenance.stage, parsed.digest     # the stage, and how the next one names it
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from securesystemslib.dsse import Envelope

from attestd.evidence import _json
from attestd.evidence.binding import Subject
from attestd.evidence.canonical import canonical_json
from attestd.evidence.envelope import parse_envelope
from attestd.evidence.runtime_log_format import (
    RuntimeEvent,
    event_from_json,
    event_to_json,
    format_rfc3339,
    parse_rfc3339,
)
from attestd.evidence.stack import (
    OS_PACKAGES,
    PYTHON_DISTRIBUTIONS,
    Distribution,
    OsPackage,
    SoftwareStack,
    content_sha256,
    parse_distributions,
    parse_os_packages,
)
from attestd.evidence.statement import STATEMENT_TYPE
from attestd.evidence.subjects import AgentSubjectError, artifact_subjects, statement_subjects

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
    software_stack: SoftwareStack | None = None
    """What the agent measured of the process that began the stage (``evidence.stack``);
    None in the provenance of an agent that did not measure it."""
    stack_lists: tuple[tuple[str, bytes], ...] = ()
    """The full lists the stack's digests name, (byproduct name, canonical JSON), each once."""

    def distributions(self) -> tuple[Distribution, ...] | None:
        """The caller's Python distributions, if the provenance carries their list."""
        content = dict(self.stack_lists).get(PYTHON_DISTRIBUTIONS)
        return None if content is None else parse_distributions(content, PYTHON_DISTRIBUTIONS)

    def os_packages(self) -> tuple[OsPackage, ...] | None:
        """The OS packages of the caller's root, if the provenance carries their list."""
        content = dict(self.stack_lists).get(OS_PACKAGES)
        return None if content is None else parse_os_packages(content, OS_PACKAGES)

    def subjects(self) -> list[StageArtifact]:
        """The statement's subjects: the outputs, or the builder's agent subject when none.

        A stage with no outputs names the agent that ran it (``attestd.evidence.subjects``),
        the same subject its evidence names, so that the statement is valid in-toto.
        """
        chosen = statement_subjects(self.outputs, builder_key_id(self.builder_id))
        return [
            a if isinstance(a, StageArtifact) else StageArtifact(a.name, a.digest) for a in chosen
        ]

    def to_statement(self) -> dict[str, object]:
        dependencies: list[object] = [a.to_json() for a in self.inputs]
        if self.previous is not None:
            dependencies.append({"name": PREVIOUS_STAGE, "digest": {"sha256": self.previous}})
        segment = canonical_json([event_to_json(e) for e in self.log_segment])
        build: dict[str, object] = {
            "buildType": STAGE_BUILD_TYPE,
            "externalParameters": {
                "pipeline": self.pipeline,
                "runId": self.run_id,
                "stage": self.stage,
            },
            "resolvedDependencies": dependencies,
        }
        if self.software_stack is not None:
            # Measured by the agent, not chosen by the caller: SLSA's internalParameters.
            build["internalParameters"] = {"softwareStack": self.software_stack.to_json()}
        byproducts: list[object] = [
            {
                "name": RUNTIME_LOG_SEGMENT,
                "mediaType": "application/json",
                "digest": {"sha256": hashlib.sha256(segment).hexdigest()},
                "content": _json.b64_encode(segment),
            }
        ]
        byproducts += [
            {
                "name": name,
                "mediaType": "application/json",
                "digest": {"sha256": content_sha256(content)},
                "content": _json.b64_encode(content),
            }
            for name, content in self.stack_lists
        ]
        return {
            "_type": STATEMENT_TYPE,
            "subject": [s.to_json() for s in self.subjects()],
            "predicateType": SLSA_PROVENANCE_TYPE,
            "predicate": {
                "buildDefinition": build,
                "runDetails": {
                    "builder": {"id": self.builder_id, "version": {"attestd": self.agent_version}},
                    "metadata": {
                        "invocationId": f"{self.run_id}/{self.stage}",
                        "startedOn": format_rfc3339(self.started_on),
                        "finishedOn": format_rfc3339(self.finished_on),
                    },
                    "byproducts": byproducts,
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
        subjects = _artifacts(top["subject"], "$.subject")
        outputs = tuple(artifact_subjects(subjects))
        predicate = _json.obj(
            top["predicate"], "$.predicate", fields=("buildDefinition", "runDetails")
        )
        build_fields: tuple[str, ...] = ("buildType", "externalParameters", "resolvedDependencies")
        raw_build = _json.obj(predicate["buildDefinition"], "$.predicate.buildDefinition")
        if "internalParameters" in raw_build:
            build_fields += ("internalParameters",)
        build = _json.obj(raw_build, "$.predicate.buildDefinition", fields=build_fields)
        stack: SoftwareStack | None = None
        if "internalParameters" in build:
            internal_path = "$.predicate.buildDefinition.internalParameters"
            internal = _json.obj(
                build["internalParameters"], internal_path, fields=("softwareStack",)
            )
            stack = SoftwareStack.from_json(
                internal["softwareStack"], f"{internal_path}.softwareStack"
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
        byproducts = _json.array(run["byproducts"], f"{run_path}.byproducts", max_len=3)
        if not byproducts:
            _json.fail(f"{run_path}.byproducts", f"expected the {RUNTIME_LOG_SEGMENT} first")
        segment = _segment(byproducts[0], f"{run_path}.byproducts[0]")
        lists = _stack_lists(byproducts[1:], f"{run_path}.byproducts", stack)
        _check_begin_stack(segment, stack)
        provenance = cls(
            pipeline, run_id, stage, tuple(inputs), outputs, previous, builder_id,
            agent_version, started, finished, segment, stack, lists,
        )  # fmt: skip
        try:
            expected = provenance.subjects()
        except AgentSubjectError as exc:
            _json.fail("$.subject", f"no outputs, and no agent subject to name: {exc.message}")
        if list(subjects) != expected:
            # The outputs, or else exactly the agent subject of the builder's key: a forged or
            # misplaced agent subject, or an empty list, is not a statement attestd writes.
            _json.fail(
                "$.subject", "is not the outputs, nor (with none) the builder's agent subject"
            )
        return provenance


def _stack_lists(
    raw: Sequence[object], path: str, stack: SoftwareStack | None
) -> tuple[tuple[str, bytes], ...]:
    """The package-list byproducts: each once, each the list its stack claim names."""
    named = {
        PYTHON_DISTRIBUTIONS: (stack.python_sha256 if stack else None, parse_distributions),
        OS_PACKAGES: (stack.os_packages_sha256 if stack else None, parse_os_packages),
    }
    lists: dict[str, bytes] = {}
    for index, item in enumerate(raw, 1):
        where = f"{path}[{index}]"
        members = _json.obj(item, where, fields=("name", "mediaType", "digest", "content"))
        name = members["name"]
        if not isinstance(name, str) or name not in named or name in lists:
            _json.fail(f"{where}.name", "not a package list, or one given twice")
        if members["mediaType"] != "application/json":
            _json.fail(f"{where}.mediaType", 'expected "application/json"')
        content = _json.b64_bytes(members["content"], f"{where}.content", max_size=64 << 20)
        digest = _json.obj(members["digest"], f"{where}.digest", fields=("sha256",))
        expected = _json.hex_bytes(digest["sha256"], f"{where}.digest.sha256", size=32).hex()
        claimed, parse = named[name]
        if content_sha256(content) != expected or claimed != expected:
            # The list must be the one whose digest the measured stack (and begin event) names.
            _json.fail(f"{where}.digest", "does not match the content and the softwareStack")
        parse(content, f"{where}.content")
        lists[name] = content
    return tuple(lists.items())


def _check_begin_stack(segment: Sequence[RuntimeEvent], stack: SoftwareStack | None) -> None:
    """A segment that opens with the agent's begin event carries the same stack it does."""
    if not segment or (segment[0].domain, segment[0].operation) != ("attestd.stage", "begin"):
        return  # a provenance built without the agent's stage events (tests, older agents)
    try:
        begin = json.loads(segment[0].content)
    except ValueError:
        _json.fail("$.predicate.runDetails.byproducts[0]", "the begin event is not JSON")
    recorded = begin.get("softwareStack") if isinstance(begin, dict) else None
    if (recorded is None) != (stack is None) or (
        stack is not None and canonical_json(recorded) != canonical_json(stack.to_json())
    ):
        _json.fail(
            "$.predicate.buildDefinition.internalParameters",
            "the softwareStack is not the one the stage's begin event recorded",
        )


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
class ParsedProvenance:
    """A stage attestation's provenance envelope, parsed strictly but not verified.

    ``payload`` is the exact signed bytes (canonical JSON); whether the agent
    key signed them is the verifier's question (``verifier/chain.py``).
    """

    envelope: Envelope
    payload: bytes
    provenance: StageProvenance

    @property
    def digest(self) -> str:
        """How the next stage names this one: :func:`provenance_digest` of the payload."""
        return provenance_digest(self.payload)

    def subjects_json(self) -> list[object]:
        """The statement's subjects as signed: the outputs, members in canonical order."""
        # Round-tripped through canonical bytes: the signed statement sorts its members.
        subjects: list[object] = json.loads(
            canonical_json([a.to_json() for a in self.provenance.subjects()])
        )
        return subjects


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

    def provenance_digest(self) -> str:
        """:func:`provenance_digest` of the provenance payload; only the envelope is parsed."""
        return provenance_digest(bytes(parse_envelope(self.provenance).payload))

    def read_provenance(self) -> ParsedProvenance:
        """The provenance envelope, its payload and what it says; EvidenceError if malformed."""
        envelope = parse_envelope(self.provenance)
        payload = bytes(envelope.payload)
        statement = _json.loads(payload, what="provenance", max_bytes=len(payload) + 1)
        return ParsedProvenance(envelope, payload, StageProvenance.from_statement(statement))


def builder_id(tee: str, backend: str, agent_key_id: str) -> str:
    """SLSA builder.id of an attestd agent: its TEE, its backend, and its key."""
    return f"https://attestd.dev/builder/{tee}/{backend}#{agent_key_id}"


def builder_key_id(builder: str) -> str:
    """The agent key id a :func:`builder_id` ends with (its fragment; checked where used)."""
    return builder.rpartition("#")[2]


def outputs_as_subjects(outputs: Sequence[StageArtifact]) -> list[Subject]:
    return [a.subject() for a in outputs]
