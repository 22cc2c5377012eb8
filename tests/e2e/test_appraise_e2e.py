"""End to end on each simulated TEE: agent process, pipeline over the socket,
`attestctl appraise` over mutual TLS, against a policy of reference values."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from attestd.cli import main
from tests.harness import MRTD, RTMRS, SIMULATED_TEES, SNP_MEASUREMENT, AgentProcess, serving


@pytest.fixture(params=SIMULATED_TEES)
def agent(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AgentProcess]:
    process = AgentProcess(tmp_path, tee=request.param)
    process.write_config()
    model = process.models / "model"
    model.mkdir()
    (model / "weights.safetensors").write_bytes(os.urandom(1 << 16))
    (model / "config.json").write_text("{}")
    yield from serving(process)


def _policy(agent: AgentProcess, model_digest: str, measurement: str) -> Path:
    root = agent.simulated_root()
    if agent.tee == "simulated-tdx":
        rtmrs = "".join(f'rtmr{i} = ["{value}"]\n' for i, value in enumerate(RTMRS))
        reference = f'[tdx]\nmrtd = ["{measurement}"]\n{rtmrs}'
    else:
        reference = f'[snp]\nmeasurement = ["{measurement}"]\n'
    path = agent.workdir / "policy.toml"
    path.write_text(
        f'[trust]\nroot = "simulated"\nsimulated_root = "{root}"\n'
        f"{reference}"
        f'[[artifacts]]\nname = "{(agent.models / "model").resolve()}"\nsha256 = "{model_digest}"\n'
    )
    return path


def _appraise(
    agent: AgentProcess, policy: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, dict[str, object]]:
    code = main(
        [
            "appraise", "--quiet", "--policy", str(policy),
            "--agent", f"127.0.0.1:{agent.port}", "--server-name", "localhost",
            "--cert", str(agent.tls / "client.pem"), "--key", str(agent.tls / "client.key"),
            "--ca", str(agent.tls / "ca.pem"), *extra,
        ]
    )  # fmt: skip
    report: dict[str, object] = json.loads(capsys.readouterr().out)
    return code, report


def test_pipeline_evidence_is_affirmed_over_mtls(
    agent: AgentProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    with agent.pipeline() as client:
        client.record("pipeline.train", "started", b"{}")
        (artifact,) = client.measure([str(agent.models / "model")])
        client.record("pipeline.train", "finished", b"{}")
    measurement = MRTD if agent.tee == "simulated-tdx" else SNP_MEASUREMENT
    code, report = _appraise(agent, _policy(agent, artifact.digest["sha256"], measurement), capsys)
    assert code == 0, report
    assert report["status"] == "affirming"
    assert report["simulated"] is True
    assert report["tee"] == ("tdx" if agent.tee == "simulated-tdx" else "sev-snp")


def test_unexpected_launch_measurement_is_contraindicated(
    agent: AgentProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    with agent.pipeline() as client:
        (artifact,) = client.measure([str(agent.models / "model")])
    code, report = _appraise(agent, _policy(agent, artifact.digest["sha256"], "00" * 48), capsys)
    assert code == 1
    assert report["status"] == "contraindicated"
    reasons = {c["reason"] for c in report["checks"] if c["status"] == "fail"}  # type: ignore[attr-defined, index]
    assert reasons == {
        "mrtd_not_allowed" if agent.tee == "simulated-tdx" else "measurement_not_allowed"
    }


def test_appraisals_from_a_checkpoint_and_with_the_full_log_over_mtls(
    agent: AgentProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    with agent.pipeline() as client:
        (artifact,) = client.measure([str(agent.models / "model")])
        for i in range(5):
            client.record("pipeline.train", "step", bytes([i]))
    measurement = MRTD if agent.tee == "simulated-tdx" else SNP_MEASUREMENT
    policy = _policy(agent, artifact.digest["sha256"], measurement)
    saved = agent.workdir / "checkpoint.json"
    # --full-log: from the agent's head, the earlier events fetched page by page and checked.
    code, report = _appraise(agent, policy, capsys, "--full-log", "--write-checkpoint", str(saved))
    assert code == 0, report
    assert report["logPrefix"] == {
        "status": "affirming",
        "events": 6,
        "detail": "the first 6 events chain to the checkpoint's head",
    }
    with agent.pipeline() as client:
        client.record("pipeline.train", "step", b"later")
    # From the saved checkpoint: the evidence carries the one later event.
    evidence = agent.workdir / "evidence.json"
    code, report = _appraise(
        agent, policy, capsys, "--checkpoint", str(saved), "--save-evidence", str(evidence)
    )
    assert code == 0, report
    from attestd.evidence import open_evidence

    assert [e.sequence for e in open_evidence(evidence.read_bytes())[1].predicate.runtime_log] == [
        6
    ]
    # A checkpoint the agent does not know is refused by name.
    code = main(
        [
            "evidence", "--nonce", "00" * 32, "--checkpoint", f"99:{'00' * 48}", "-o", "-",
            "--agent", f"127.0.0.1:{agent.port}", "--server-name", "localhost",
            "--cert", str(agent.tls / "client.pem"), "--key", str(agent.tls / "client.key"),
            "--ca", str(agent.tls / "ca.pem"),
        ]
    )  # fmt: skip
    assert code != 0
    assert "FAILED_PRECONDITION: the checkpoint is at event 99" in capsys.readouterr().err
