"""The open stage and its transitions: begin, end, abort, and recovery after a restart.

    machine = StageMachine(recover_open_stage(store.events()), max_content_bytes=limit,
                           measure=measure_specs, log=log_stage_event, attest=attest_stage)
    opened, previous = machine.begin(pipeline, run_id, stage, inputs, previous_attestation,
                                     caller=caller)
    attestation = machine.end(outputs, caller=caller)    # or: machine.abort(reason, caller=caller)

At most one stage is open at a time. Beginning and ending measure artifacts,
which may take minutes, so that work runs outside the machine's lock: the
transition marks the machine busy, and a second transition is refused rather
than queued behind it. ``caller`` (the pipeline process, from the kernel) is
handed to measuring and logging, so every event a transition logs names it.
The rules and event formats are attestd.agent.stages;
measuring, logging and signing are the agent service's (attestd.agent.service),
which hands them in as the three callables.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from attestd.agent.errors import NoStageOpenError, RequestInvalidError, StageAlreadyOpenError
from attestd.agent.software_stack import MeasuredStack, measure_software_stack
from attestd.agent.stages import (
    ABORT_OPERATION,
    BEGIN_OPERATION,
    END_OPERATION,
    STAGE_DOMAIN,
    ArtifactSpec,
    OpenStage,
    PreviousStage,
    StageRecoveryError,
    abort_content,
    begin_content,
    check_name,
    check_reason,
    check_specs,
    choose_run_id,
    end_content,
    parse_previous,
    reopen,
)
from attestd.evidence import Caller, RuntimeEvent
from attestd.evidence.provenance import StageArtifact

# The service's logger: stage transitions are part of the agent's own story.
log = logging.getLogger("attestd.agent")

MeasureSpecs = Callable[[str, Sequence[ArtifactSpec], Caller | None], list[StageArtifact]]
"""Measure and log each declared artifact for the caller; the label names the list in errors."""
LogStageEvent = Callable[[str, bytes, Caller | None], RuntimeEvent]
"""Durably log an ``attestd.stage`` event with this operation, content and caller."""
AttestStage = Callable[[OpenStage, list[StageArtifact], RuntimeEvent], bytes]
"""The attestation of a stage closed by this ``end`` event: provenance and evidence, signed."""
MeasureStack = Callable[[Caller | None], MeasuredStack]
"""The software stack of the caller's process, from /proc (attestd.agent.software_stack)."""


class StageMachine:
    """The one open stage (or none), and the transitions that open and close it."""

    def __init__(
        self,
        recovered: OpenStage | None,
        *,
        max_content_bytes: int,
        measure: MeasureSpecs,
        log: LogStageEvent,
        attest: AttestStage,
        measure_stack: MeasureStack = measure_software_stack,
    ) -> None:
        # Rebuilt from the log on start, so an open stage outlives a restart (docs/lifecycle.md).
        self._open = recovered
        # Guards _open and _busy only; never held while measuring, logging or signing.
        self._lock = threading.Lock()
        self._busy = False
        self._max_content_bytes = max_content_bytes
        self._measure = measure
        self._log = log
        self._attest = attest
        self._measure_stack = measure_stack

    def begin(
        self,
        pipeline: str,
        run_id: str,
        stage: str,
        inputs: Sequence[ArtifactSpec],
        previous_attestation: bytes,
        *,
        caller: Caller | None = None,
    ) -> tuple[OpenStage, PreviousStage | None]:
        """Open a stage: measure its inputs, then log the ``attestd.stage`` ``begin`` event."""
        check_name("pipeline", pipeline)
        check_name("stage", stage)
        check_specs("inputs", inputs)
        previous = parse_previous(previous_attestation) if previous_attestation else None
        run = choose_run_id(run_id, previous)
        link = previous.digest if previous else None
        # Refuse an oversized begin event before hashing anything (names may still grow).
        draft = [StageArtifact(s.path, {"sha256": "0" * 64}, s.license, s.tags) for s in inputs]
        self._check_content(begin_content(pipeline, run, stage, draft, link))
        self._claim_idle()
        try:
            # Measured before the inputs: the sooner after the call, the less time the
            # caller's pid has to change hands (the machine re-checks it as it reads).
            measured = self._measure_stack(caller)
            artifacts = self._measure("inputs", inputs, caller)
            content = begin_content(pipeline, run, stage, artifacts, link, measured.stack)
            self._check_content(content)
            event = self._log(BEGIN_OPERATION, content, caller)
        except BaseException:
            self._release(changed=False)
            raise
        opened = OpenStage(
            pipeline, run, stage, tuple(artifacts), link, event, measured.stack,
            measured.byproducts,
        )  # fmt: skip
        self._release(changed=True, now_open=opened)
        log.info(
            "stage begun",
            extra={"pipeline": pipeline, "run_id": run, "stage": stage, "sequence": event.sequence},
        )
        return opened, previous

    def end(self, outputs: Sequence[ArtifactSpec], *, caller: Caller | None = None) -> bytes:
        """Close the open stage; returns its stage attestation (JSON bytes).

        A failure before the ``end`` event is logged (a bad output path) leaves
        the stage open for another try; once the event is logged, the stage is over.
        """
        check_specs("outputs", outputs)
        opened = self._claim_open("call BeginStage first", closer="another EndStage")
        ended = False
        try:
            artifacts = self._measure("outputs", outputs, caller)
            content = end_content(opened.run_id, opened.stage, artifacts)
            self._check_content(content)
            end = self._log(END_OPERATION, content, caller)
            ended = True
        finally:
            self._release(changed=ended)
        log.info(
            "stage ended",
            extra={"run_id": opened.run_id, "stage": opened.stage, "sequence": end.sequence},
        )
        return self._attest(opened, artifacts, end)

    def abort(self, reason: str, *, caller: Caller | None = None) -> RuntimeEvent:
        """Close the open stage without an attestation: log an ``abort`` event with ``reason``."""
        check_reason(reason)
        opened = self._claim_open("nothing to abort", closer="an EndStage")
        aborted = False
        try:
            event = self._log(ABORT_OPERATION, abort_content(opened, reason), caller)
            aborted = True
        finally:
            self._release(changed=aborted)
        log.info(
            "stage aborted",
            extra={
                "run_id": opened.run_id,
                "stage": opened.stage,
                "sequence": event.sequence,
                "reason": reason,
            },
        )
        return event

    def _claim_idle(self) -> None:
        """Start a begin: no stage may be open, and no other transition under way."""
        with self._lock:
            if self._open is not None:
                raise StageAlreadyOpenError(
                    f"stage {self._open.stage!r} of run {self._open.run_id!r} is open; "
                    "end it before beginning another"
                )
            if self._busy:
                raise StageAlreadyOpenError("another BeginStage or EndStage is in progress")
            self._busy = True

    def _claim_open(self, remedy: str, *, closer: str) -> OpenStage:
        """Start an end or abort of the open stage; ``closer`` names who may be closing it."""
        with self._lock:
            if self._open is None:
                busy = " (another BeginStage is in progress)" if self._busy else ""
                raise NoStageOpenError(f"no stage is open{busy}; {remedy}")
            if self._busy:
                raise NoStageOpenError(f"the open stage is being closed by {closer}")
            self._busy = True
            return self._open

    def _release(self, *, changed: bool, now_open: OpenStage | None = None) -> None:
        """Finish a transition; once its event is logged (``changed``), ``now_open`` is open."""
        with self._lock:
            self._busy = False
            if changed:
                self._open = now_open

    def _check_content(self, content: bytes) -> None:
        limit = self._max_content_bytes
        if len(content) > limit:
            raise RequestInvalidError(
                f"the stage event would be {len(content)} bytes, over the {limit}-byte limit "
                "on event content; declare fewer artifacts, tags or shorter licences"
            )


def recover_open_stage(events: Sequence[RuntimeEvent]) -> OpenStage | None:
    """The stage still open in the log ``events``: its last stage event is a ``begin``."""
    last = next((e for e in reversed(events) if e.domain == STAGE_DOMAIN), None)
    if last is None or last.operation != BEGIN_OPERATION:
        return None  # never begun, or closed by an "end" or "abort" event
    try:
        opened = reopen(last)
    except StageRecoveryError as err:
        # An older agent's begin event, or a damaged one: EndStage cannot be
        # attested from it, so the stage stays closed and a new one may begin.
        log.warning(
            "the runtime log ends in an open stage that cannot be recovered; "
            "EndStage will be refused and a new BeginStage accepted",
            extra={"sequence": last.sequence, "error": str(err)},
        )
        return None
    log.info(
        "recovered the open stage from the runtime log",
        extra={
            "pipeline": opened.pipeline,
            "run_id": opened.run_id,
            "stage": opened.stage,
            "sequence": last.sequence,
        },
    )
    return opened
