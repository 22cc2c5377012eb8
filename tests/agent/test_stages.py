"""Pipeline stages through a real agent process: BeginStage, events, EndStage, the attestation."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from attestd.agent.config import parse_config
from attestd.agent.errors import NoStageOpenError
from attestd.agent.runtime_log_store import RuntimeLogStore
from attestd.agent.service import Agent
from attestd.cli import main
from attestd.client import AgentCallError, AgentClient, ArtifactSpec
from attestd.evidence import (
    RuntimeEvent,
    canonical_json,
    load_public_key_pem,
    now_rfc3339,
    open_evidence,
    parse_envelope,
    verify_envelope,
)
from attestd.evidence.provenance import (
    PREVIOUS_STAGE,
    STAGE_BUILD_TYPE,
    StageArtifact,
    StageAttestation,
    StageProvenance,
    builder_id,
    provenance_digest,
    stage_nonce,
)
from attestd.evidence.runtime_log_format import parse_rfc3339
from attestd.verifier import AppraisalStatus, appraise, load_policy
from tests.fakes.tee import FakeTeeBackend
from tests.harness import MRTD, RTMRS, SIMULATED_TEES, SNP_MEASUREMENT, AgentProcess, serving


@pytest.fixture(scope="module", params=SIMULATED_TEES)
def agent(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentProcess]:
    process = AgentProcess(tmp_path_factory.mktemp("stages"), tee=request.param)
    process.write_config()
    (process.models / "data").mkdir()
    (process.models / "data" / "train.jsonl").write_bytes(os.urandom(2048))
    (process.models / "base.bin").write_bytes(os.urandom(4096))
    (process.models / "tuned.bin").write_bytes(os.urandom(4096))
    (process.models / "report.json").write_text('{"accuracy": 0.9}')
    (process.models / "alias.bin").symlink_to("base.bin")
    yield from serving(process)


@pytest.fixture(autouse=True)
def no_stage_left_open(agent: AgentProcess) -> Iterator[None]:
    yield
    if agent.process is None:
        agent.start()
    with agent.pipeline() as client:
        try:
            client.abort_stage("test teardown")
        except AgentCallError as err:
            assert err.agent_reason == "stage_not_open"


def spec(path: Path, license: str = "", tags: tuple[str, ...] = ()) -> ArtifactSpec:
    return ArtifactSpec(path=str(path), license=license, tags=list(tags))


def provenance_of(attestation: bytes) -> tuple[bytes, StageProvenance, dict[str, object]]:
    """The provenance payload, parsed, and as raw JSON."""
    envelope = parse_envelope(StageAttestation.from_json(attestation).provenance)
    payload = bytes(envelope.payload)
    statement = json.loads(payload)
    return payload, StageProvenance.from_statement(statement), statement


def run_stage(
    client: AgentClient, agent: AgentProcess, *, stage: str = "finetune", **begin: object
) -> tuple[bytes, list[int]]:
    """A stage with two inputs, two pipeline events and two outputs; (attestation, sequences)."""
    begun = client.begin_stage(
        "llm",
        stage,
        inputs=[
            spec(agent.models / "base.bin", "Apache-2.0", ("origin=hub",)),
            spec(agent.models / "data", "CC-BY-4.0 OR MIT", ("pii=none", "eu")),
        ],
        **begin,  # type: ignore[arg-type]
    )
    first = client.record("pipeline.finetune", "epoch_end", b'{"epoch": 1}')
    second = client.record("pipeline.finetune", "epoch_end", b'{"epoch": 2}')
    attestation = client.end_stage(
        [
            spec(agent.models / "tuned.bin", "Apache-2.0", ("model",)),
            spec(agent.models / "report.json"),
        ]
    )
    return attestation, [begun.event.sequence, first.event.sequence, second.event.sequence]


def test_a_stage_attestation_names_its_inputs_outputs_builder_and_log_segment(
    agent: AgentProcess,
) -> None:
    with agent.pipeline() as client:
        attestation, (begin, *recorded) = run_stage(client, agent)
        log = client.runtime_log(start=begin - 2).events
        info = client.info()
    measured = {
        json.loads(e.content)["name"]: json.loads(e.content)["digest"]
        for e in log
        if e.domain == "attestd.artifact"
    }
    _, provenance, statement = provenance_of(attestation)
    models = agent.models.resolve()

    # Inputs were measured (and logged) before the begin event, outputs before the end event.
    assert [e.domain for e in log[:2]] == ["attestd.artifact"] * 2
    assert (log[2].domain, log[2].operation) == ("attestd.stage", "begin")
    assert provenance.inputs == (
        StageArtifact(
            str(models / "base.bin"), measured[str(models / "base.bin")], "Apache-2.0",
            ("origin=hub",),
        ),
        StageArtifact(
            str(models / "data"), measured[str(models / "data")], "CC-BY-4.0 OR MIT",
            ("pii=none", "eu"),
        ),
    )  # fmt: skip
    assert provenance.outputs == (
        StageArtifact(
            str(models / "tuned.bin"), measured[str(models / "tuned.bin")], "Apache-2.0", ("model",)
        ),
        StageArtifact(str(models / "report.json"), measured[str(models / "report.json")]),
    )
    assert provenance.previous is None
    assert (provenance.pipeline, provenance.stage) == ("llm", "finetune")
    assert len(provenance.run_id) == 32  # a fresh uuid4 for a first stage
    assert provenance.builder_id == builder_id(info.tee, info.backend, info.agent_key_id)
    build = statement["predicate"]["buildDefinition"]  # type: ignore[index]
    assert build["buildType"] == STAGE_BUILD_TYPE

    # The segment is exactly the events from the begin event through the end event.
    segment = provenance.log_segment
    assert [e.sequence for e in segment] == list(range(begin, segment[-1].sequence + 1))
    assert [(e.domain, e.operation) for e in segment] == [
        ("attestd.stage", "begin"),
        ("pipeline.finetune", "epoch_end"),
        ("pipeline.finetune", "epoch_end"),
        ("attestd.artifact", "measured"),
        ("attestd.artifact", "measured"),
        ("attestd.stage", "end"),
    ]
    assert [e.sequence for e in segment[1:3]] == recorded
    assert [(e.sequence, e.content) for e in segment] == [
        (e.sequence, e.content) for e in log[2 : 2 + len(segment)]
    ]

    # The provenance is signed by the agent key.
    envelope = parse_envelope(StageAttestation.from_json(attestation).provenance)
    verify_envelope(envelope, load_public_key_pem(info.agent_public_key_pem.decode()))


def _policy(agent: AgentProcess, outputs: tuple[StageArtifact, ...]) -> Path:
    root = agent.simulated_root()
    if agent.tee == "simulated-tdx":
        rtmrs = "".join(f'rtmr{i} = ["{value}"]\n' for i, value in enumerate(RTMRS))
        reference = f'[tdx]\nmrtd = ["{MRTD}"]\n{rtmrs}'
    else:
        reference = f'[snp]\nmeasurement = ["{SNP_MEASUREMENT}"]\n'
    path = agent.workdir / "policy.toml"
    artifacts = "".join(
        f'[[artifacts]]\nname = "{a.name}"\nsha256 = "{a.sha256}"\n' for a in outputs
    )
    path.write_text(
        f'[trust]\nroot = "simulated"\nsimulated_root = "{root}"\n{reference}{artifacts}'
    )
    return path


def test_the_stage_evidence_is_affirmed_for_the_provenance_nonce_and_names_the_outputs(
    agent: AgentProcess,
) -> None:
    with agent.pipeline() as client:
        attestation, _ = run_stage(client, agent)
    payload, provenance, _ = provenance_of(attestation)
    evidence = StageAttestation.from_json(attestation).evidence
    policy = load_policy(_policy(agent, provenance.outputs))

    result = appraise(evidence, nonce=stage_nonce(payload), policy=policy)
    assert result.status is AppraisalStatus.AFFIRMING, result.failures
    _, statement = open_evidence(evidence)
    assert list(statement.subjects) == [a.subject() for a in provenance.outputs]
    # The hardware-bound log carries the stage's segment.
    assert statement.predicate.runtime_log[-len(provenance.log_segment) :] == (
        provenance.log_segment
    )

    other = appraise(evidence, nonce=hashlib.sha256(b"x").digest(), policy=policy)
    assert other.status is not AppraisalStatus.AFFIRMING


def test_a_second_stage_begun_with_the_first_attestation_links_to_it(agent: AgentProcess) -> None:
    with agent.pipeline() as client:
        first, _ = run_stage(client, agent, stage="prepare")
        payload, provenance, _ = provenance_of(first)
        begun = client.begin_stage(
            "llm",
            "finetune",
            inputs=[spec(agent.models / "tuned.bin", "Apache-2.0")],
            previous_attestation=first,
        )
        second = client.end_stage([spec(agent.models / "report.json", tags=("eval",))])
    assert begun.run_id == provenance.run_id
    assert begun.previous_digest == hashlib.sha256(payload).digest()
    assert json.loads(begun.event.content)["previous"] == provenance_digest(payload)
    _, linked, statement = provenance_of(second)
    assert linked.previous == provenance_digest(payload)
    assert linked.run_id == provenance.run_id
    dependencies = statement["predicate"]["buildDefinition"]["resolvedDependencies"]  # type: ignore[index]
    assert dependencies == [
        linked.inputs[0].to_json(),
        {"name": PREVIOUS_STAGE, "digest": {"sha256": provenance_digest(payload)}},
    ]


def test_an_explicit_run_id_is_kept(agent: AgentProcess) -> None:
    with agent.pipeline() as client:
        begun = client.begin_stage("llm", "eval", run_id="run-2026-11-23")
        attestation = client.end_stage()
    assert begun.run_id == "run-2026-11-23"
    assert begun.previous_digest == b""
    _, provenance, _ = provenance_of(attestation)
    assert provenance.run_id == "run-2026-11-23"
    assert provenance.inputs == provenance.outputs == ()


def test_begin_while_a_stage_is_open_is_a_failed_precondition(agent: AgentProcess) -> None:
    with agent.pipeline() as client:
        client.begin_stage("llm", "one")
        with pytest.raises(AgentCallError) as refused:
            client.begin_stage("llm", "two")
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.agent_reason == "stage_already_open"
    assert "'one'" in refused.value.details


def test_end_without_an_open_stage_is_a_failed_precondition(agent: AgentProcess) -> None:
    with agent.pipeline() as client, pytest.raises(AgentCallError) as refused:
        client.end_stage()
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.agent_reason == "stage_not_open"


def test_a_run_id_that_differs_from_the_previous_stage_is_refused(agent: AgentProcess) -> None:
    with agent.pipeline() as client:
        first, _ = run_stage(client, agent, run_id="run-a")
        with pytest.raises(AgentCallError) as refused:
            client.begin_stage("llm", "next", run_id="run-b", previous_attestation=first)
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.agent_reason == "previous_attestation_invalid"
    assert "run-a" in refused.value.details


def _not_an_attestation(agent: AgentProcess) -> list[bytes]:
    with agent.pipeline() as client:
        evidence = client.evidence(bytes(32))
    return [
        b"garbage",
        b"{}",
        b'{"mediaType": "application/vnd.attestd.stage-attestation.v1+json"}',
        evidence,
        json.dumps(
            {
                "mediaType": "application/vnd.attestd.stage-attestation.v1+json",
                "provenance": json.loads(evidence),
                "evidence": json.loads(evidence),
            }
        ).encode(),
    ]


def test_a_previous_attestation_that_is_not_one_is_invalid_argument(agent: AgentProcess) -> None:
    with agent.pipeline() as client:
        for garbage in _not_an_attestation(agent):
            with pytest.raises(AgentCallError) as refused:
                client.begin_stage("llm", "next", previous_attestation=garbage)
            assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT, garbage[:40]
            assert refused.value.agent_reason == "previous_attestation_invalid"
        with pytest.raises(AgentCallError) as refused:
            client.end_stage()  # nothing was opened by the refusals
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize(
    ("begin", "message"),
    [
        (lambda c, a: c.begin_stage("bad pipeline", "s"), "pipeline"),
        (lambda c, a: c.begin_stage("", "s"), "pipeline"),
        (lambda c, a: c.begin_stage("p", "s" * 129), "stage"),
        (lambda c, a: c.begin_stage("p", "s", run_id="run id"), "run_id"),
        (
            lambda c, a: c.begin_stage("p", "s", inputs=[spec(a.models / "base.bin", "MIT; rm")]),
            "licence",
        ),
        (
            lambda c, a: c.begin_stage("p", "s", inputs=[spec(a.models / "base.bin", tags=("",))]),
            "tag",
        ),
        (
            lambda c, a: c.begin_stage("p", "s", inputs=[str(a.models / "base.bin")] * 2),
            "twice",
        ),
        (
            lambda c, a: c.begin_stage(
                "p", "s", inputs=[str(a.models / "base.bin"), str(a.models / "alias.bin")]
            ),
            "same artifact",
        ),
    ],
)
def test_bad_names_licences_and_tags_are_invalid_argument(
    agent: AgentProcess, begin: Callable[[AgentClient, AgentProcess], object], message: str
) -> None:
    with agent.pipeline() as client, pytest.raises(AgentCallError) as refused:
        begin(client, agent)
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert message in refused.value.details


def test_paths_outside_the_artifact_roots_are_refused_and_leave_the_stage_as_it_was(
    agent: AgentProcess,
) -> None:
    outside = agent.workdir / "outside.bin"
    outside.write_bytes(b"secret")
    with agent.pipeline() as client:
        for path in (str(outside), "/etc/passwd", "models/base.bin"):
            with pytest.raises(AgentCallError) as refused:
                client.begin_stage("llm", "s", inputs=[path])
            assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT, path
        client.begin_stage("llm", "s")
        with pytest.raises(AgentCallError) as refused:
            client.end_stage([str(outside)])
        assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
        # The stage is still open: the pipeline may end it with the right outputs.
        attestation = client.end_stage([str(agent.models / "tuned.bin")])
    assert provenance_of(attestation)[1].stage == "s"


@pytest.mark.parametrize("call", ["begin", "end", "abort"])
def test_verifiers_may_not_open_close_or_abort_stages(agent: AgentProcess, call: str) -> None:
    with agent.pipeline() as pipeline:
        pipeline.begin_stage("llm", "s")
    with agent.verifier() as client, pytest.raises(AgentCallError) as refused:
        if call == "begin":
            client.begin_stage("llm", "s")
        elif call == "end":
            client.end_stage()
        else:
            client.abort_stage("not mine to abort")
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED


def _restart(agent: AgentProcess, how: str) -> None:
    if how == "kill":
        agent.kill()
    else:
        assert agent.stop() == 0
    agent.start()


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_an_open_stage_survives_a_restart_and_its_segment_spans_begin_to_end(
    agent: AgentProcess, how: str
) -> None:
    with agent.pipeline() as client:
        first, _ = run_stage(client, agent, stage="prepare")
        begun = client.begin_stage(
            "llm",
            "resumed",
            inputs=[spec(agent.models / "base.bin", "Apache-2.0", ("origin=hub",))],
            previous_attestation=first,
        )
        before = client.record("pipeline.resumed", "step", b'{"step": 1}')
    _restart(agent, how)
    with agent.pipeline() as client:
        with pytest.raises(AgentCallError) as refused:
            client.begin_stage("llm", "other")  # the recovered stage is open
        after = client.record("pipeline.resumed", "step", b'{"step": 2}')
        attestation = client.end_stage([spec(agent.models / "tuned.bin", "Apache-2.0")])
        info = client.info()
    assert refused.value.agent_reason == "stage_already_open"
    assert "'resumed'" in refused.value.details

    first_payload, first_provenance, _ = provenance_of(first)
    payload, provenance, _ = provenance_of(attestation)
    begin = json.loads(begun.event.content)
    assert (provenance.pipeline, provenance.run_id, provenance.stage) == (
        "llm",
        first_provenance.run_id,
        "resumed",
    )
    assert provenance.previous == provenance_digest(first_payload) == begin["previous"]
    assert [a.to_json() for a in provenance.inputs] == begin["inputs"]
    assert provenance.inputs[0].tags == ("origin=hub",)
    assert provenance.started_on == parse_rfc3339(begun.event.recorded_at)

    # One segment from the begin event, across the restart, to the end event.
    segment = provenance.log_segment
    sequences = [e.sequence for e in segment]
    assert sequences == list(range(begun.event.sequence, segment[-1].sequence + 1))
    assert (segment[0].operation, segment[0].content) == ("begin", begun.event.content)
    assert {before.event.sequence, after.event.sequence} <= set(sequences)
    assert (segment[-1].domain, segment[-1].operation) == ("attestd.stage", "end")

    # Signed by the new agent's key, and its evidence appraises.
    assert provenance.builder_id == builder_id(info.tee, info.backend, info.agent_key_id)
    envelope = parse_envelope(StageAttestation.from_json(attestation).provenance)
    verify_envelope(envelope, load_public_key_pem(info.agent_public_key_pem.decode()))
    evidence = StageAttestation.from_json(attestation).evidence
    policy = load_policy(_policy(agent, provenance.outputs))
    result = appraise(evidence, nonce=stage_nonce(payload), policy=policy)
    assert result.status is AppraisalStatus.AFFIRMING, result.failures
    _, statement = open_evidence(evidence)
    assert statement.predicate.runtime_log[-len(segment) :] == segment


def test_an_abort_closes_the_stage_without_an_attestation(agent: AgentProcess) -> None:
    with agent.pipeline() as client:
        begun = client.begin_stage("llm", "doomed", run_id="run-abort")
        aborted = client.abort_stage("the data check failed")
        with pytest.raises(AgentCallError) as refused:
            client.end_stage()
        (logged,) = client.runtime_log(start=aborted.sequence, limit=1).events
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.agent_reason == "stage_not_open"
    assert (aborted.domain, aborted.operation) == ("attestd.stage", "abort")
    assert aborted.sequence > begun.event.sequence
    assert json.loads(aborted.content) == {
        "pipeline": "llm",
        "runId": "run-abort",
        "stage": "doomed",
        "reason": "the data check failed",
    }
    assert logged == aborted


def test_after_an_abort_a_new_stage_begins_and_ends(agent: AgentProcess) -> None:
    with agent.pipeline() as client:
        client.begin_stage("llm", "doomed")
        client.abort_stage()
        attestation, (begin, *_) = run_stage(client, agent, stage="retry")
    _, provenance, _ = provenance_of(attestation)
    assert provenance.stage == "retry"
    assert provenance.log_segment[0].sequence == begin


def test_an_aborted_stage_stays_closed_after_a_restart(agent: AgentProcess) -> None:
    with agent.pipeline() as client:
        client.begin_stage("llm", "doomed")
        client.abort_stage("restarting anyway")
    _restart(agent, "stop")
    with agent.pipeline() as client, pytest.raises(AgentCallError) as refused:
        client.end_stage()
    assert refused.value.agent_reason == "stage_not_open"


def test_abort_without_an_open_stage_is_a_failed_precondition(agent: AgentProcess) -> None:
    with agent.pipeline() as client:
        length = client.runtime_log().length
        with pytest.raises(AgentCallError) as refused:
            client.abort_stage("nothing to abort")
        assert client.runtime_log().length == length
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.agent_reason == "stage_not_open"


@pytest.mark.parametrize(
    ("reason", "message"),
    [("é" * 512 + "x", "1025 bytes; the limit is 1024"), ("one\ntwo", "U+000A")],
)
def test_a_bad_abort_reason_is_invalid_argument_and_leaves_the_stage_open(
    agent: AgentProcess, reason: str, message: str
) -> None:
    with agent.pipeline() as client:
        client.begin_stage("llm", "open")
        with pytest.raises(AgentCallError) as refused:
            client.abort_stage(reason)
        aborted = client.abort_stage("é" * 512)  # exactly 1 KiB is allowed
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert message in refused.value.details
    assert json.loads(aborted.content)["reason"] == "é" * 512


def test_a_begin_event_without_the_recovery_fields_leaves_no_stage_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An older agent's begin event: the stage is not recoverable, and the agent says so."""
    (tmp_path / "models").mkdir()
    raw = {"agent": {"state_dir": "state"}, "tee": {"backend": "simulated-snp"}}
    raw["artifacts"] = {"roots": ["models"]}
    config = parse_config(raw, base_dir=tmp_path)
    config.state_dir.mkdir()
    log_path = config.state_dir / "runtime-log.jsonl"
    store = RuntimeLogStore.open(log_path)
    old = {"pipeline": "llm", "runId": "run-old", "stage": "s"}  # no inputs, no previous
    store.append(RuntimeEvent(0, "attestd.stage", "begin", canonical_json(old), now_rfc3339()))
    store.close()

    def start() -> Agent:
        backend = FakeTeeBackend(has_register=False)
        key = ec.generate_private_key(ec.SECP256R1())
        return Agent(config, backend, RuntimeLogStore.open(log_path), key)

    with caplog.at_level(logging.WARNING, logger="attestd.agent"):
        agent = start()
    try:
        assert "cannot be recovered" in caplog.text
        with pytest.raises(NoStageOpenError):
            agent.end_stage([])
        agent.begin_stage("llm", "s", "run-new", [], b"")
    finally:
        agent.close()
    # Today's begin event is recoverable.
    agent = start()
    try:
        assert agent.abort_stage("done").operation == "abort"
    finally:
        agent.close()


def test_attestctl_stage_begin_and_end_round_trip(
    agent: AgentProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    socket = ["--socket", str(agent.socket_path)]
    data = str(agent.models / "data")
    code = main(
        ["stage", "begin", "--pipeline", "llm", "--stage", "prepare",
         "--input", f"{data}=CC-BY-4.0", "--input-tag", f"{data}=pii=none",
         "--input-tag", f"{data}=eu", *socket]
    )  # fmt: skip
    assert code == 0
    run_id = capsys.readouterr().out.strip()
    first = agent.workdir / "prepare.attestation.json"
    tuned = str(agent.models / "tuned.bin")
    code = main(
        ["stage", "end", "--output", f"{tuned}=Apache-2.0", "--output-tag", f"{tuned}=model",
         "-o", str(first), *socket]
    )  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    payload, provenance, _ = provenance_of(first.read_bytes())
    assert summary["runId"] == provenance.run_id == run_id
    assert summary["provenanceDigest"] == provenance_digest(payload)
    assert [(a.license, a.tags) for a in provenance.inputs] == [("CC-BY-4.0", ("pii=none", "eu"))]
    assert [(a.name, a.license, a.tags) for a in provenance.outputs] == [
        (str(agent.models.resolve() / "tuned.bin"), "Apache-2.0", ("model",))
    ]

    assert main(["stage", "begin", "--pipeline", "llm", "--stage", "eval",
                 "--previous", str(first), *socket]) == 0  # fmt: skip
    assert capsys.readouterr().out.strip() == run_id
    second = agent.workdir / "eval.attestation.json"
    assert main(["stage", "end", "-o", str(second), *socket]) == 0
    assert provenance_of(second.read_bytes())[1].previous == provenance_digest(payload)

    # A refusal is exit code 1 with the agent's reason.
    assert main(["stage", "end", "-o", str(second), *socket]) == 1
    assert "no stage is open" in capsys.readouterr().err


def test_attestctl_stage_abort_prints_the_abort_event(
    agent: AgentProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    socket = ["--socket", str(agent.socket_path)]
    assert main(["stage", "begin", "--pipeline", "llm", "--stage", "s", *socket]) == 0
    run_id = capsys.readouterr().out.strip()
    assert main(["stage", "abort", "--reason", "operator gave up", *socket]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {
        "sequence": printed["sequence"],
        "pipeline": "llm",
        "runId": run_id,
        "stage": "s",
        "reason": "operator gave up",
    }
    assert main(["stage", "abort", *socket]) == 1
    assert "no stage is open" in capsys.readouterr().err


def test_attestctl_stage_tags_must_name_a_declared_path(
    agent: AgentProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["stage", "begin", "--pipeline", "llm", "--stage", "s",
         "--input", str(agent.models / "data"), "--input-tag", "/elsewhere=pii=none",
         "--socket", str(agent.socket_path)]
    )  # fmt: skip
    assert code == 2
    assert "--input-tag" in capsys.readouterr().err
