"""Pipeline stages: the rules BeginStage and EndStage check, and what they log and sign.

    specs = check_specs("inputs", [ArtifactSpec("/srv/models/base", "Apache-2.0")])
    check_name("pipeline", "finetune")
    previous = parse_previous(attestation_bytes)        # PreviousStage, or PreviousAttestationError
    run_id = choose_run_id(requested_run_id, previous)
    content = begin_content(pipeline, run_id, stage, inputs, previous)   # the "begin" event
    ...
    provenance = opened.provenance(outputs, segment, builder, version, finished_on)

The Agent (core.py) owns locking, measuring and logging; this module holds
the rules and the event formats. Names, licences and tags follow the patterns
of attestd.evidence.provenance, so anything the agent accepts, a verifier can
parse back.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from attestd.agent.artifacts import Measurement
from attestd.agent.errors import PreviousAttestationError, RequestInvalidError
from attestd.evidence import EvidenceError, RuntimeEvent, canonical_json, parse_envelope
from attestd.evidence.provenance import (
    LICENSE_PATTERN,  # the rules are written once, in evidence.provenance
    NAME_PATTERN,
    TAG_PATTERN,
    StageArtifact,
    StageAttestation,
    StageProvenance,
    provenance_digest,
)
from attestd.evidence.runtime_log import parse_rfc3339

STAGE_DOMAIN = "attestd.stage"
BEGIN_OPERATION = "begin"
END_OPERATION = "end"
MAX_TAGS = 64
"""Per artifact; the provenance parser accepts no more."""


@dataclass(frozen=True)
class ArtifactSpec:
    """An input or output as a pipeline declares it: a path, its licence, its policy tags."""

    path: str
    license: str | None = None
    tags: tuple[str, ...] = ()


def check_name(label: str, value: str) -> None:
    """A pipeline, run id or stage name: 1 to 128 characters of the provenance name pattern."""
    if not NAME_PATTERN.fullmatch(value):
        raise RequestInvalidError(
            f"{label} {value[:130]!r} is not a valid name: use 1 to 128 characters "
            "of A-Z a-z 0-9 . _ : / @ + -"
        )


def check_specs(label: str, specs: Sequence[ArtifactSpec]) -> None:
    """Each licence an SPDX-style expression, each tag well formed, no path twice."""
    seen: set[str] = set()
    for spec in specs:
        if spec.path in seen:
            raise RequestInvalidError(f"{label}: {spec.path!r} is given twice")
        seen.add(spec.path)
        if spec.license is not None and not LICENSE_PATTERN.fullmatch(spec.license):
            raise RequestInvalidError(
                f"{label}: the licence {spec.license[:80]!r} of {spec.path!r} is not an SPDX "
                "expression (1 to 512 characters of A-Z a-z 0-9 . + - ( ) : and spaces)"
            )
        if len(spec.tags) > MAX_TAGS:
            raise RequestInvalidError(
                f"{label}: {spec.path!r} has {len(spec.tags)} tags; the limit is {MAX_TAGS}"
            )
        for tag in spec.tags:
            if not TAG_PATTERN.fullmatch(tag):
                raise RequestInvalidError(
                    f"{label}: the tag {tag[:80]!r} of {spec.path!r} is not valid: use 1 to 128 "
                    "characters of A-Z a-z 0-9 . _ : / = -"
                )


def stage_artifact(spec: ArtifactSpec, measurement: Measurement) -> StageArtifact:
    """The provenance entry for a measured input or output."""
    return StageArtifact(measurement.name, dict(measurement.digest), spec.license, spec.tags)


@dataclass(frozen=True)
class PreviousStage:
    """What BeginStage takes from the previous stage's attestation."""

    digest: str
    """SHA-256 (hex) of its provenance payload: the link the new stage records."""
    pipeline: str
    run_id: str
    stage: str


def parse_previous(data: bytes) -> PreviousStage:
    """Read a stage attestation file; its signatures are the verifier's to check, not ours."""
    try:
        attestation = StageAttestation.from_json(data)
        payload = bytes(parse_envelope(attestation.provenance).payload)
        statement = json.loads(payload)
        provenance = StageProvenance.from_statement(statement)
    except (EvidenceError, ValueError, RecursionError) as err:
        raise PreviousAttestationError(
            f"previous_attestation is not a stage attestation: {err}"
        ) from None
    return PreviousStage(
        provenance_digest(payload), provenance.pipeline, provenance.run_id, provenance.stage
    )


def choose_run_id(requested: str, previous: PreviousStage | None) -> str:
    """The run id as given, else the previous stage's, else a fresh one for a first stage."""
    if requested:
        check_name("run_id", requested)
        if previous is not None and previous.run_id != requested:
            raise PreviousAttestationError(
                f"run_id {requested!r} differs from the previous stage's run "
                f"{previous.run_id!r} (stage {previous.stage!r})"
            )
        return requested
    if previous is not None:
        return previous.run_id
    return uuid.uuid4().hex


def begin_content(
    pipeline: str,
    run_id: str,
    stage: str,
    inputs: Sequence[StageArtifact],
    previous: str | None,
) -> bytes:
    """The content of the ``attestd.stage`` ``begin`` event (canonical JSON)."""
    return canonical_json(
        {
            "pipeline": pipeline,
            "runId": run_id,
            "stage": stage,
            "inputs": [a.to_json() for a in inputs],
            "previous": previous,
        }
    )


def end_content(run_id: str, stage: str, outputs: Sequence[StageArtifact]) -> bytes:
    """The content of the ``attestd.stage`` ``end`` event (canonical JSON)."""
    return canonical_json(
        {"runId": run_id, "stage": stage, "outputs": [a.to_json() for a in outputs]}
    )


@dataclass(frozen=True)
class OpenStage:
    """A stage between its begin event and its end event; held in the agent's memory only."""

    pipeline: str
    run_id: str
    stage: str
    inputs: tuple[StageArtifact, ...]
    previous: str | None
    begin: RuntimeEvent

    def provenance(
        self,
        outputs: Sequence[StageArtifact],
        segment: Sequence[RuntimeEvent],
        builder_id: str,
        agent_version: str,
    ) -> StageProvenance:
        """The stage's provenance; ``segment`` runs from the begin event to the end event."""
        return StageProvenance(
            pipeline=self.pipeline,
            run_id=self.run_id,
            stage=self.stage,
            inputs=self.inputs,
            outputs=tuple(outputs),
            previous=self.previous,
            builder_id=builder_id,
            agent_version=agent_version,
            started_on=parse_rfc3339(self.begin.recorded_at),
            finished_on=parse_rfc3339(segment[-1].recorded_at),
            log_segment=tuple(segment),
        )
