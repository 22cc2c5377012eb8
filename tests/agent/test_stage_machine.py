"""The stage machine alone, over fake measure/log/attest callables: transitions and refusals."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from attestd.agent.errors import NoStageOpenError, RequestInvalidError, StageAlreadyOpenError
from attestd.agent.stage_machine import StageMachine, recover_open_stage
from attestd.agent.stages import (
    ABORT_OPERATION,
    BEGIN_OPERATION,
    END_OPERATION,
    STAGE_DOMAIN,
    ArtifactSpec,
    OpenStage,
    begin_content,
)
from attestd.evidence import Caller, RuntimeEvent, now_rfc3339
from attestd.evidence.provenance import StageArtifact

DIGEST = {"sha256": "ab" * 32}


class Host:
    """Stands in for the agent service: logs events in memory, measures by name."""

    def __init__(self) -> None:
        self.events: list[RuntimeEvent] = []
        self.attested: list[tuple[OpenStage, list[StageArtifact], RuntimeEvent]] = []
        # Runs in the middle of a measurement, when the machine holds no lock.
        self.while_measuring: Callable[[], None] | None = None
        self.measured_for: list[Caller | None] = []

    def measure(
        self, label: str, specs: Sequence[ArtifactSpec], caller: Caller | None
    ) -> list[StageArtifact]:
        self.measured_for.append(caller)
        if self.while_measuring is not None:
            self.while_measuring()
        if any(s.path.startswith("/missing") for s in specs):
            raise RequestInvalidError(f"{label}: no such artifact")
        return [StageArtifact(s.path, DIGEST, s.license, s.tags) for s in specs]

    def log(self, operation: str, content: bytes, caller: Caller | None = None) -> RuntimeEvent:
        event = RuntimeEvent(
            len(self.events), STAGE_DOMAIN, operation, content, now_rfc3339(), caller
        )
        self.events.append(event)
        return event

    def attest(self, opened: OpenStage, outputs: list[StageArtifact], end: RuntimeEvent) -> bytes:
        self.attested.append((opened, outputs, end))
        return b"attestation"

    def machine(self, recovered: OpenStage | None = None, limit: int = 64 * 1024) -> StageMachine:
        return StageMachine(
            recovered,
            max_content_bytes=limit,
            measure=self.measure,
            log=self.log,
            attest=self.attest,
        )


def test_begin_then_end_logs_both_events_and_attests_the_outputs() -> None:
    host = Host()
    machine = host.machine()
    opened, previous = machine.begin("llm", "run-1", "train", [ArtifactSpec("/in")], b"")
    assert previous is None and opened.inputs[0].name == "/in"
    assert machine.end([ArtifactSpec("/out")]) == b"attestation"
    assert [e.operation for e in host.events] == [BEGIN_OPERATION, END_OPERATION]
    [(attested, outputs, end)] = host.attested
    assert attested == opened and outputs[0].name == "/out" and end == host.events[1]
    with pytest.raises(NoStageOpenError, match="call BeginStage first"):
        machine.end([])


def test_each_transition_measures_and_logs_for_its_own_caller() -> None:
    host = Host()
    machine = host.machine()
    begin_caller, end_caller, abort_caller = Caller(10, 1000, 100), Caller(11, 1001, 101), None
    machine.begin("llm", "run-1", "train", [ArtifactSpec("/in")], b"", caller=begin_caller)
    machine.end([ArtifactSpec("/out")], caller=end_caller)
    machine.begin("llm", "run-1", "eval", [], b"", caller=begin_caller)
    machine.abort("gave up", caller=abort_caller)
    assert host.measured_for == [begin_caller, end_caller, begin_caller]
    assert [e.caller for e in host.events] == [begin_caller, end_caller, begin_caller, None]


def test_a_transition_during_a_begin_is_refused_not_queued() -> None:
    host = Host()
    machine = host.machine()
    refusals: list[str] = []

    def interfere() -> None:
        host.while_measuring = None
        for attempt, error in (
            (lambda: machine.begin("llm", "run-1", "other", [], b""), StageAlreadyOpenError),
            (lambda: machine.end([]), NoStageOpenError),
            (lambda: machine.abort("why"), NoStageOpenError),
        ):
            with pytest.raises(error) as raised:
                attempt()
            refusals.append(str(raised.value))

    host.while_measuring = interfere
    machine.begin("llm", "run-1", "train", [ArtifactSpec("/in")], b"")
    assert refusals == [
        "another BeginStage or EndStage is in progress",
        "no stage is open (another BeginStage is in progress); call BeginStage first",
        "no stage is open (another BeginStage is in progress); nothing to abort",
    ]
    assert [e.operation for e in host.events] == [BEGIN_OPERATION]  # only the first begin


def test_a_transition_during_an_end_is_refused() -> None:
    host = Host()
    machine = host.machine()
    machine.begin("llm", "run-1", "train", [], b"")
    refusals: list[str] = []

    def interfere() -> None:
        host.while_measuring = None
        with pytest.raises(NoStageOpenError) as ended:
            machine.end([])
        with pytest.raises(NoStageOpenError) as aborted:
            machine.abort("why")
        with pytest.raises(StageAlreadyOpenError) as begun:
            machine.begin("llm", "run-1", "next", [], b"")
        refusals.extend(str(e.value) for e in (ended, aborted, begun))

    host.while_measuring = interfere
    machine.end([ArtifactSpec("/out")])
    assert refusals == [
        "the open stage is being closed by another EndStage",
        "the open stage is being closed by an EndStage",
        "stage 'train' of run 'run-1' is open; end it before beginning another",
    ]


def test_a_failed_begin_leaves_no_stage_open_and_the_machine_idle() -> None:
    host = Host()
    machine = host.machine()
    with pytest.raises(RequestInvalidError):
        machine.begin("llm", "run-1", "train", [ArtifactSpec("/missing")], b"")
    with pytest.raises(NoStageOpenError, match=r"^no stage is open; nothing to abort$"):
        machine.abort("why")
    machine.begin("llm", "run-1", "train", [], b"")  # not left busy
    assert [e.operation for e in host.events] == [BEGIN_OPERATION]


def test_an_end_that_fails_before_its_event_leaves_the_stage_open() -> None:
    host = Host()
    machine = host.machine()
    machine.begin("llm", "run-1", "train", [], b"")
    with pytest.raises(RequestInvalidError):
        machine.end([ArtifactSpec("/missing")])
    assert machine.abort("gave up").operation == ABORT_OPERATION
    with pytest.raises(NoStageOpenError):
        machine.abort("again")


def test_an_oversized_begin_event_is_refused_before_anything_is_measured() -> None:
    host = Host()
    measured: list[str] = []
    host.while_measuring = lambda: measured.append("measured")
    machine = host.machine(limit=100)
    with pytest.raises(RequestInvalidError, match="over the 100-byte limit"):
        machine.begin("llm", "run-1", "train", [ArtifactSpec("/in/" + "x" * 100)], b"")
    assert measured == [] and host.events == []


def test_recovery_reopens_a_stage_whose_last_event_is_a_begin() -> None:
    host = Host()
    begin = host.log(BEGIN_OPERATION, begin_content("llm", "run-1", "train", [], None))
    other = RuntimeEvent(1, "pipeline", "step", b"", now_rfc3339())
    recovered = recover_open_stage([begin, other])
    assert recovered is not None and (recovered.run_id, recovered.begin) == ("run-1", begin)
    machine = host.machine(recovered)
    with pytest.raises(StageAlreadyOpenError):
        machine.begin("llm", "run-1", "next", [], b"")
    closed = host.log(ABORT_OPERATION, b"{}")
    assert recover_open_stage([begin, other, closed]) is None
    assert recover_open_stage([]) is None


def test_recovery_leaves_an_unreadable_begin_closed() -> None:
    host = Host()
    damaged = host.log(BEGIN_OPERATION, b'{"pipeline": "llm"}')
    assert recover_open_stage([damaged]) is None
