"""Pipeline stages: the rules BeginStage and EndStage check, and what they log and sign.

    specs = check_specs("inputs", [ArtifactSpec("/srv/models/base", "Apache-2.0")])
    check_name("pipeline", "finetune")
    previous = parse_previous(attestation_bytes)        # PreviousStage, or PreviousAttestationError
    run_id = choose_run_id(requested_run_id, previous)
    content = begin_content(pipeline, run_id, stage, inputs, previous)   # the "begin" event
    ...
    provenance = opened.provenance(outputs, segment, builder, version, finished_on)

    check_reason(reason)
    content = abort_content(opened, reason)                  # the "abort" event
    opened = reopen(begin_event)    # the open stage again, after a restart; or StageRecoveryError

The stage machine (stage_machine.py) holds the open stage and its transitions,
the agent service (service.py) measures, logs and signs; this module holds the
rules and the event formats. Names, licences and tags follow the patterns
of attestd.evidence.provenance, so anything the agent accepts, a verifier can
parse back.
"""

from __future__ import annotations

import json
import re
import unicodedata
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
from attestd.evidence.runtime_log_format import parse_rfc3339
from attestd.evidence.stack import SoftwareStack

STAGE_DOMAIN = "attestd.stage"
BEGIN_OPERATION = "begin"
END_OPERATION = "end"
ABORT_OPERATION = "abort"
MAX_ABORT_REASON_BYTES = 1024
"""The caller's reason in an ``abort`` event, in UTF-8 bytes."""
MAX_TAGS = 64
"""Per artifact; the provenance parser accepts no more."""
_BEGIN_FIELDS = ("pipeline", "runId", "stage", "inputs", "previous")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


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
    software_stack: SoftwareStack | None = None,
) -> bytes:
    """The content of the ``attestd.stage`` ``begin`` event (canonical JSON).

    ``software_stack`` is what the agent measured of the caller: digests, not
    lists, so the event stays small (attestd.agent.software_stack).
    """
    members: dict[str, object] = {
        "pipeline": pipeline,
        "runId": run_id,
        "stage": stage,
        "inputs": [a.to_json() for a in inputs],
        "previous": previous,
    }
    if software_stack is not None:
        members["softwareStack"] = software_stack.to_json()
    return canonical_json(members)


def end_content(run_id: str, stage: str, outputs: Sequence[StageArtifact]) -> bytes:
    """The content of the ``attestd.stage`` ``end`` event (canonical JSON)."""
    return canonical_json(
        {"runId": run_id, "stage": stage, "outputs": [a.to_json() for a in outputs]}
    )


def check_reason(reason: str) -> None:
    """An abort reason: at most 1 KiB of UTF-8, no control characters (it lands in logs)."""
    size = len(reason.encode("utf-8", "surrogatepass"))
    if size > MAX_ABORT_REASON_BYTES:
        raise RequestInvalidError(
            f"the abort reason is {size} bytes; the limit is {MAX_ABORT_REASON_BYTES}"
        )
    bad = next((c for c in reason if unicodedata.category(c) in ("Cc", "Cs")), None)
    if bad is not None:
        raise RequestInvalidError(
            f"the abort reason contains the control character U+{ord(bad):04X}; use plain text"
        )


def abort_content(opened: OpenStage, reason: str) -> bytes:
    """The content of the ``attestd.stage`` ``abort`` event (canonical JSON)."""
    return canonical_json(
        {
            "pipeline": opened.pipeline,
            "runId": opened.run_id,
            "stage": opened.stage,
            "reason": reason,
        }
    )


class StageRecoveryError(ValueError):
    """A ``begin`` event whose content does not say enough to reopen its stage."""


def reopen(begin: RuntimeEvent) -> OpenStage:
    """The open stage that ``begin`` (the log's last stage event) opened, read back from it.

    Everything an ``OpenStage`` holds is in the event: the names, the inputs
    (digests, licences, tags) and the previous digest in its content, and the
    start (sequence and time) in the event itself.
    """
    try:
        members = json.loads(begin.content)
    except ValueError as err:
        raise StageRecoveryError(f"its content is not JSON: {err}") from None
    if not isinstance(members, dict):
        raise StageRecoveryError("its content is not a JSON object")
    missing = [k for k in _BEGIN_FIELDS if k not in members]
    if missing:
        raise StageRecoveryError(f"its content lacks {', '.join(missing)}")
    for key in ("pipeline", "runId", "stage"):
        if not isinstance(members[key], str) or not NAME_PATTERN.fullmatch(members[key]):
            raise StageRecoveryError(f"its {key} is not a valid name")
    previous = members["previous"]
    if previous is not None and not (isinstance(previous, str) and _SHA256_HEX.fullmatch(previous)):
        raise StageRecoveryError("its previous is neither null nor a SHA-256 in hex")
    if not isinstance(members["inputs"], list):
        raise StageRecoveryError("its inputs are not an array")
    try:
        inputs = tuple(
            StageArtifact.from_json(item, f"inputs[{i}]")
            for i, item in enumerate(members["inputs"])
        )
    except EvidenceError as err:
        raise StageRecoveryError(f"an input is unreadable: {err}") from None
    stack: SoftwareStack | None = None
    if "softwareStack" in members:
        try:
            stack = SoftwareStack.from_json(members["softwareStack"], "softwareStack")
        except EvidenceError as err:
            raise StageRecoveryError(f"its softwareStack is unreadable: {err}") from None
    # The package lists lived in memory only: after a restart the provenance names them
    # by digest (in the stack) without carrying them (docs/lifecycle.md).
    return OpenStage(
        members["pipeline"], members["runId"], members["stage"], inputs, previous, begin, stack
    )


@dataclass(frozen=True)
class OpenStage:
    """A stage between its begin event and its end (or abort) event.

    Held in the agent's memory, and rebuilt from the ``begin`` event when the
    agent restarts (``reopen``).
    """

    pipeline: str
    run_id: str
    stage: str
    inputs: tuple[StageArtifact, ...]
    previous: str | None
    begin: RuntimeEvent
    software_stack: SoftwareStack | None = None
    stack_lists: tuple[tuple[str, bytes], ...] = ()
    """The lists the stack's digests name (byproduct name, content); lost on a restart."""

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
            software_stack=self.software_stack,
            stack_lists=self.stack_lists,
        )
