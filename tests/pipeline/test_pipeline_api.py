"""attestd.pipeline against a real agent on simulated TDX, over its Unix socket.

One agent serves the module; every test leaves no stage open on it (a test
that did would fail the next one with ``stage_already_open``).
"""

from __future__ import annotations

import json
import logging
import socket as sockets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from attestd.cli import main
from attestd.client import AgentCallError
from attestd.evidence.provenance import StageAttestation
from attestd.pipeline import (
    ABORT_REASON_PREFIX,
    SOCKET_ENV,
    AgentRefusedError,
    AgentTimeoutError,
    AgentUnavailableError,
    Artifact,
    NoCurrentStageError,
    PreviousAttestationMissingError,
    PreviousAttestationUnreadableError,
    StageState,
    StageUsageError,
    abort_reason,
    attested_stage,
    current_stage,
    resolve_socket,
    stage,
)
from attestd.verifier.chain import verify_chain
from attestd.verifier.layout import load_layout
from attestd.verifier.result import AppraisalStatus
from tests.harness import MRTD, RTMRS, AgentProcess, serving

PIPELINE = "api-test"
DATA_LICENCE = "CC-BY-4.0"
MODEL_LICENCE = "Apache-2.0"
PII_FREE = "pii:none"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    yield from serving(AgentProcess(tmp_path_factory.mktemp("agent")))


@pytest.fixture
def work(agent: AgentProcess, tmp_path: Path) -> Path:
    """A fresh directory inside the agent's artifact root."""
    directory = agent.models / tmp_path.name
    directory.mkdir()
    return directory


def write_layout(agent: AgentProcess, directory: Path, pipeline: str = PIPELINE) -> Path:
    """prepare -> train, both on this agent's simulated TDX, its root and launch values."""
    root = agent.simulated_root()
    reference = [f'mrtd = ["{MRTD}"]'] + [f'rtmr{i} = ["{v}"]' for i, v in enumerate(RTMRS)]
    lines = [
        f'pipeline = "{pipeline}"',
        f'allowed_licenses = ["{DATA_LICENCE}", "{MODEL_LICENCE}"]',
    ]
    for name in ("prepare", "train"):
        lines += ["", "[[stages]]", f'name = "{name}"', 'tee = ["tdx"]']
        if name == "prepare":
            lines.append(f'required_tags = ["{PII_FREE}"]')
        lines += ["[stages.trust.tdx]", 'root = "simulated"', f'simulated_root = "{root}"']
        lines += ["[stages.tdx]", *reference]
    layout = directory / "layout.toml"
    layout.write_text("\n".join(lines) + "\n")
    return layout


def last_stage_event(agent: AgentProcess) -> tuple[str, dict[str, object]]:
    """The operation and content of the agent's last ``attestd.stage`` event."""
    with agent.pipeline() as client:
        events = [e for page in client.log_pages() for e in page]
    last = next(e for e in reversed(events) if e.domain == "attestd.stage")
    content: dict[str, object] = json.loads(last.content)
    return last.operation, content


def segment_operations(attestation: bytes) -> list[tuple[str, str]]:
    provenance = StageAttestation.from_json(attestation).read_provenance().provenance
    return [(e.domain, e.operation) for e in provenance.log_segment]


def prepare_data(work: Path) -> tuple[Path, Path]:
    raw = work / "raw.txt"
    raw.write_text("one\ntwo\nthree\n")
    return raw, work / "dataset.jsonl"


# -- the happy pipeline --------------------------------------------------------------


def test_a_context_manager_stage_then_a_decorated_stage_verify_as_a_chain(
    agent: AgentProcess, work: Path
) -> None:
    raw, dataset = prepare_data(work)
    model = work / "model.bin"
    prepare_file = work / "prepare.attestation.json"

    with stage(
        "prepare",
        pipeline=PIPELINE,
        inputs=[Artifact(raw, licence=DATA_LICENCE)],
        outputs=[Artifact(dataset, licence=DATA_LICENCE, tags=[PII_FREE])],
        socket=agent.socket_path,
        attestation_path=prepare_file,
    ) as prepare:
        assert prepare.attested and prepare.state.value == "open"
        assert current_stage() is prepare
        rows = [json.dumps({"text": line}) for line in raw.read_text().split()]
        dataset.write_text("\n".join(rows) + "\n")
        prepare.record("pipeline.prepare", "rows", {"kept": len(rows)})

    assert prepare.state is StageState.ENDED
    assert prepare.attestation is not None and prepare.run_id
    assert prepare_file.read_bytes() == prepare.attestation
    assert ("pipeline.prepare", "rows") in segment_operations(prepare.attestation)

    @attested_stage(
        pipeline=PIPELINE,
        inputs=[Artifact(dataset, licence=DATA_LICENCE, tags=[PII_FREE])],
        outputs=[model],
        licence=MODEL_LICENCE,
        previous=prepare_file,
        attestation_path=work / "train.attestation.json",
        socket=agent.socket_path,
    )
    def train(epochs: int) -> str:
        handle = current_stage()
        for epoch in range(epochs):
            handle.record("pipeline.train", "epoch_end", {"epoch": epoch})
        model.write_bytes(dataset.read_bytes()[::-1])
        return "trained"

    assert train(2) == "trained"
    assert train.__name__ == "train"
    with pytest.raises(NoCurrentStageError):
        current_stage()

    attestations = [prepare_file.read_bytes(), (work / "train.attestation.json").read_bytes()]
    trained = StageAttestation.from_json(attestations[1]).read_provenance().provenance
    assert trained.stage == "train" and trained.run_id == prepare.run_id
    assert trained.outputs[0].license == MODEL_LICENCE
    result = verify_chain(attestations, load_layout(write_layout(agent, work)))
    assert result.status is AppraisalStatus.AFFIRMING, result.reasons
    assert [s.stage for s in result.stages] == ["prepare", "train"]


def test_the_previous_stage_handle_or_its_bytes_hand_the_attestation_on(
    agent: AgentProcess, work: Path
) -> None:
    raw, dataset = prepare_data(work)
    model = work / "model.bin"
    common = {"pipeline": PIPELINE, "socket": agent.socket_path}
    with stage(
        "prepare",
        inputs=[raw],
        outputs=[dataset],
        licence=DATA_LICENCE,
        tags=[PII_FREE],
        **common,  # type: ignore[arg-type]
    ) as prepare:
        dataset.write_text("{}\n")
    with stage(
        "train",
        inputs=[Artifact(dataset, tags=[PII_FREE])],
        licence=DATA_LICENCE,
        previous=prepare,
        **common,  # type: ignore[arg-type]
    ) as train:
        model.write_bytes(b"weights")
        train.add_output(Artifact(model, licence=MODEL_LICENCE))
    assert prepare.attestation is not None and train.attestation is not None
    assert (
        train.previous_digest == StageAttestation.from_json(prepare.attestation).provenance_digest()
    )
    result = verify_chain(
        [prepare.attestation, train.attestation], load_layout(write_layout(agent, work))
    )
    assert result.status is AppraisalStatus.AFFIRMING, result.reasons

    # the bytes of the previous attestation do the same as its handle
    with stage("train", previous=prepare.attestation, **common) as again:  # type: ignore[arg-type]
        pass
    assert again.run_id == prepare.run_id
    assert again.previous_digest == train.previous_digest


def test_attestctl_chain_verify_accepts_the_files_the_api_wrote(
    agent: AgentProcess, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw, dataset = prepare_data(work)
    files = [work / "prepare.json", work / "train.json"]
    with stage(
        "prepare",
        pipeline=PIPELINE,
        inputs=[raw],
        outputs=[Artifact(dataset, tags=[PII_FREE])],
        licence=DATA_LICENCE,
        socket=agent.socket_path,
        attestation_path=files[0],
    ):
        dataset.write_text("{}\n")
    with stage(
        "train",
        pipeline=PIPELINE,
        inputs=[Artifact(dataset, tags=[PII_FREE])],
        outputs=[Artifact(work / "model.bin", licence=MODEL_LICENCE)],
        licence=DATA_LICENCE,
        previous=files[0],
        socket=agent.socket_path,
        attestation_path=files[1],
    ):
        (work / "model.bin").write_bytes(b"w")
    layout = write_layout(agent, work)
    assert main(["chain", "verify", "--layout", str(layout), *map(str, files)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].endswith("VERIFIED")


# -- a block that raises -------------------------------------------------------------


def test_a_block_that_raises_aborts_the_stage_and_the_exception_goes_on(
    agent: AgentProcess, work: Path
) -> None:
    raw, dataset = prepare_data(work)
    stale = work / "prepare.attestation.json"
    stale.write_text("an older run's attestation")
    secret = "postgres://admin:hunter2@db"

    with (
        pytest.raises(ConnectionError, match="hunter2"),
        stage(
            "prepare",
            pipeline=PIPELINE,
            inputs=[raw],
            outputs=[dataset],
            socket=agent.socket_path,
            attestation_path=stale,
        ) as prepare,
    ):
        prepare.record("pipeline.prepare", "connecting", b"")
        raise ConnectionError(f"cannot reach {secret}")

    assert prepare.state is StageState.ABORTED and prepare.attested
    assert prepare.attestation is None
    assert not stale.exists()  # removed on entry; never written
    operation, content = last_stage_event(agent)
    assert operation == "abort"
    assert content["reason"] == "exception builtins.ConnectionError"
    assert "hunter2" not in json.dumps(content)


def test_a_decorated_function_that_raises_aborts_its_stage(agent: AgentProcess, work: Path) -> None:
    class DataCheckFailed(Exception):
        pass

    @attested_stage("check", pipeline=PIPELINE, socket=agent.socket_path)
    def check() -> None:
        raise DataCheckFailed("row 17: 4111-1111-1111-1111")

    with pytest.raises(DataCheckFailed):
        check()
    operation, content = last_stage_event(agent)
    assert (operation, content["stage"]) == ("abort", "check")
    assert content["reason"] == abort_reason(DataCheckFailed())
    assert str(content["reason"]).startswith(ABORT_REASON_PREFIX)
    assert "4111" not in str(content["reason"])


def test_a_keyboard_interrupt_aborts_the_stage_too(agent: AgentProcess) -> None:
    with pytest.raises(KeyboardInterrupt), stage("s", pipeline=PIPELINE, socket=agent.socket_path):
        raise KeyboardInterrupt
    assert last_stage_event(agent)[0] == "abort"


# -- refusals ------------------------------------------------------------------------


def test_an_output_outside_the_artifact_roots_is_refused_with_the_agents_reason(
    agent: AgentProcess, work: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "model.bin"  # tmp_path is not under the agent's roots
    outside.write_bytes(b"w")
    target = work / "train.attestation.json"
    ran = False
    with (
        pytest.raises(AgentRefusedError) as refused,
        stage(
            "train",
            pipeline=PIPELINE,
            outputs=[outside],
            socket=agent.socket_path,
            attestation_path=target,
        ) as train,
    ):
        ran = True
    assert ran
    assert refused.value.reason == "agent_refused"
    assert refused.value.agent_reason == "path_not_allowed"
    assert refused.value.call == "EndStage"
    assert isinstance(refused.value, AgentCallError)
    # the refused stage is not left open to block the next one: it is aborted
    assert train.state is StageState.ABORTED and train.attestation is None
    assert not target.exists()
    operation, content = last_stage_event(agent)
    assert (operation, content["reason"]) == ("abort", "EndStage refused: path_not_allowed")


def test_an_input_outside_the_roots_is_refused_before_the_block_runs(
    agent: AgentProcess, tmp_path: Path
) -> None:
    outside = tmp_path / "raw.txt"
    outside.write_text("x")
    ran = False
    with (
        pytest.raises(AgentRefusedError) as refused,
        stage("prepare", pipeline=PIPELINE, inputs=[outside], socket=agent.socket_path),
    ):
        ran = True
    assert not ran
    assert (refused.value.call, refused.value.agent_reason) == ("BeginStage", "path_not_allowed")


def test_a_bad_licence_is_request_invalid(agent: AgentProcess, work: Path) -> None:
    raw, _ = prepare_data(work)
    with (
        pytest.raises(AgentRefusedError) as refused,
        stage(
            "p", pipeline=PIPELINE, inputs=[raw], licence="MIT; rm -rf", socket=agent.socket_path
        ),
    ):
        pass
    assert refused.value.agent_reason == "request_invalid"


def test_a_refused_record_aborts_the_stage_it_raises_in(agent: AgentProcess) -> None:
    with (
        pytest.raises(AgentRefusedError) as refused,
        stage("p", pipeline=PIPELINE, socket=agent.socket_path) as handle,
    ):
        handle.record("attestd.stage", "end", b"{}")  # a reserved domain
    assert refused.value.call == "RecordEvent" and refused.value.agent_reason
    operation, content = last_stage_event(agent)
    assert (operation, content["reason"]) == (
        "abort",
        "exception attestd.pipeline.AgentRefusedError",
    )


def test_a_second_stage_while_one_is_open_is_stage_already_open(agent: AgentProcess) -> None:
    with (
        stage("outer", pipeline=PIPELINE, socket=agent.socket_path),
        pytest.raises(AgentRefusedError) as refused,
        stage("inner", pipeline=PIPELINE, socket=agent.socket_path),
    ):
        pass
    assert refused.value.agent_reason == "stage_already_open"
    assert last_stage_event(agent)[0] == "end"  # the outer stage ended normally


def test_a_previous_attestation_that_is_not_one_is_refused(agent: AgentProcess, work: Path) -> None:
    bogus = work / "previous.json"
    bogus.write_text("{}")
    with (
        pytest.raises(AgentRefusedError) as refused,
        stage("p", pipeline=PIPELINE, previous=bogus, socket=agent.socket_path),
    ):
        pass
    assert refused.value.agent_reason == "previous_attestation_invalid"


def test_a_previous_attestation_that_is_a_directory_is_unreadable(work: Path) -> None:
    with (
        pytest.raises(PreviousAttestationUnreadableError),
        stage("p", pipeline=PIPELINE, previous=work, socket=work / "none.sock"),
    ):
        pass


# -- no agent ------------------------------------------------------------------------


def test_an_unreachable_agent_is_agent_unavailable(tmp_path: Path) -> None:
    socket = tmp_path / "absent.sock"
    ran = False
    with (
        pytest.raises(AgentUnavailableError) as unavailable,
        stage("prepare", pipeline=PIPELINE, socket=socket),
    ):
        ran = True
    assert not ran
    assert unavailable.value.reason == "agent_unavailable"
    assert unavailable.value.socket_path == str(socket)
    assert str(socket) in str(unavailable.value)
    assert isinstance(unavailable.value, AgentCallError)


def test_a_socket_where_nothing_answers_is_agent_timeout(tmp_path: Path) -> None:
    path = tmp_path / "silent.sock"
    with sockets.socket(sockets.AF_UNIX) as silent:
        silent.bind(str(path))
        silent.listen()  # connections complete, and no one ever speaks gRPC on them
        with (
            pytest.raises(AgentTimeoutError) as timed_out,
            stage("p", pipeline=PIPELINE, socket=path, timeout=0.5, allow_unattested=True),
        ):
            pass
    # a silent agent is not an absent one: allow_unattested does not cover it
    assert (timed_out.value.reason, timed_out.value.call) == ("agent_timeout", "BeginStage")
    assert isinstance(timed_out.value, AgentCallError)


def test_the_socket_comes_from_the_environment_when_not_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SOCKET_ENV, str(tmp_path / "from-env.sock"))
    assert resolve_socket() == str(tmp_path / "from-env.sock")
    assert resolve_socket(tmp_path / "given.sock") == str(tmp_path / "given.sock")
    with (
        pytest.raises(AgentUnavailableError) as unavailable,
        stage("prepare", pipeline=PIPELINE),
    ):
        pass
    assert unavailable.value.socket_path == str(tmp_path / "from-env.sock")
    monkeypatch.delenv(SOCKET_ENV)
    assert resolve_socket() == "/run/attestd/attestd.sock"


def test_allow_unattested_runs_the_block_attests_nothing_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    socket = tmp_path / "absent.sock"
    target = tmp_path / "prepare.attestation.json"
    target.write_text("an older run's attestation")
    ran = False
    with (
        caplog.at_level(logging.WARNING, "attestd.pipeline"),
        stage(
            "prepare",
            pipeline=PIPELINE,
            socket=socket,
            attestation_path=target,
            allow_unattested=True,
        ) as prepare,
    ):
        ran = True
        assert prepare.record("pipeline.prepare", "rows", {"kept": 1}) is None
    assert ran
    assert not prepare.attested and prepare.state is StageState.UNATTESTED
    assert prepare.unattested_reason == "agent_unavailable"
    assert prepare.attestation is None and prepare.run_id is None
    assert not target.exists()  # neither a stale file nor a fake one
    assert any("RUNS UNATTESTED" in r.getMessage() for r in caplog.records)

    # a later stage that names it: unattested too when allowed, an error otherwise
    with stage("train", pipeline=PIPELINE, previous=target, allow_unattested=True) as train:
        pass
    assert train.unattested_reason == "previous_unattested" and train.attestation is None
    with (
        pytest.raises(PreviousAttestationMissingError),
        stage("train", pipeline=PIPELINE, previous=prepare, socket=socket),
    ):
        pass


def test_allow_unattested_does_not_hide_a_refusal(agent: AgentProcess, tmp_path: Path) -> None:
    outside = tmp_path / "raw.txt"
    outside.write_text("x")
    with (
        pytest.raises(AgentRefusedError),
        stage(
            "p",
            pipeline=PIPELINE,
            inputs=[outside],
            socket=agent.socket_path,
            allow_unattested=True,
        ),
    ):
        pass


# -- usage ---------------------------------------------------------------------------


def test_a_stage_needs_a_pipeline_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATTESTD_PIPELINE", raising=False)
    with pytest.raises(StageUsageError):
        stage("prepare")
    monkeypatch.setenv("ATTESTD_PIPELINE", "from-env")
    assert stage("prepare").pipeline == "from-env"


def test_a_handle_runs_once(agent: AgentProcess) -> None:
    handle = stage("once", pipeline=PIPELINE, socket=agent.socket_path)
    with handle:
        pass
    with pytest.raises(StageUsageError), handle:
        pass
    with pytest.raises(StageUsageError):
        handle.record("pipeline.x", "late", b"")


def test_the_abort_reason_is_the_type_never_the_message() -> None:
    assert abort_reason(ValueError("password=x")) == "exception builtins.ValueError"
    weird = type("Bad\nName", (Exception,), {})
    assert "\n" not in abort_reason(weird())


def test_async_and_generator_functions_cannot_be_decorated() -> None:
    # Their work would run after the call returned, outside the stage.
    async def fetch() -> None:
        pass

    def rows() -> Iterator[int]:
        yield 1

    for function in (fetch, rows):
        with pytest.raises(StageUsageError):
            attested_stage(pipeline=PIPELINE)(function)


def test_tags_must_be_a_list_not_a_string() -> None:
    with pytest.raises(StageUsageError):
        Artifact("/x", tags="pii:none")
    with pytest.raises(StageUsageError):
        stage("p", pipeline=PIPELINE, tags="pii:none")
    assert Artifact("/x", tags=["a"]) == Artifact("/x", tags=("a",))
    assert hash(Artifact("/x", tags=["a"])) == hash(Artifact("/x", tags=("a",)))


def test_the_example_script_runs_and_its_chain_verifies(agent: AgentProcess, work: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "demo" / "pipeline_api_example.py"
    completed = subprocess.run(
        [sys.executable, str(example), "--socket", str(agent.socket_path), "--work", str(work)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    files = [(work / f"{name}.attestation.json").read_bytes() for name in ("prepare", "train")]
    result = verify_chain(files, load_layout(write_layout(agent, work, "api-example")))
    assert result.status is AppraisalStatus.AFFIRMING, result.reasons


def test_an_agent_that_dies_during_the_block_leaves_the_stage_open(tmp_path: Path) -> None:
    dying = AgentProcess(tmp_path / "dying")
    dying.start()
    socket = dying.socket_path
    with (
        pytest.raises(AgentUnavailableError) as unavailable,
        stage("train", pipeline=PIPELINE, socket=socket, allow_unattested=True) as train,
    ):
        dying.kill()
    # a stage that began attested never degrades to unattested
    assert unavailable.value.call == "EndStage"
    assert train.state is StageState.OPEN and train.attestation is None

    dying.start()  # the restarted agent recovers the open stage from its log
    try:
        with (
            pytest.raises(AgentRefusedError) as refused,
            stage("evaluate", pipeline=PIPELINE, socket=socket),
        ):
            pass
        assert refused.value.agent_reason == "stage_already_open"
        with dying.pipeline() as client:
            client.abort_stage("cleanup")

        # an exception in the block survives a failed abort, with a note saying so
        with (
            pytest.raises(ValueError, match="boom") as raised,
            stage("evaluate", pipeline=PIPELINE, socket=socket),
        ):
            dying.kill()
            raise ValueError("boom")
        assert any("could not be aborted" in note for note in raised.value.__notes__)
    finally:
        if dying.process is not None:
            dying.stop()


def test_an_attestation_path_in_no_directory_is_refused_before_the_stage(tmp_path: Path) -> None:
    ran = False
    with (
        pytest.raises(StageUsageError),
        stage("p", pipeline=PIPELINE, attestation_path=tmp_path / "no" / "a.json"),
    ):
        ran = True
    assert not ran


def test_the_attestation_may_replace_the_previous_one_in_the_same_file(
    agent: AgentProcess, work: Path
) -> None:
    chained = work / "latest.attestation.json"
    common = {"pipeline": PIPELINE, "socket": agent.socket_path, "attestation_path": chained}
    with stage("prepare", **common) as first:  # type: ignore[arg-type]
        pass
    with stage("train", previous=chained, **common) as second:  # type: ignore[arg-type]
        pass
    assert first.attestation is not None and chained.read_bytes() == second.attestation
    assert (
        second.previous_digest == StageAttestation.from_json(first.attestation).provenance_digest()
    )
