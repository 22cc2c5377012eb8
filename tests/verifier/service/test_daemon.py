"""attestd-verifier end to end: the daemon, its gRPC API and roles, attestctl fleet, metrics.

A real agent on simulated TDX, a real daemon process, on each database backend.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from attestd.cli import main
from attestd.v1 import verifier_pb2, verifier_pb2_grpc
from attestd.verifier.ear import load_verification_key, result_statuses, verify_result
from attestd.verifier.service.main import main as verifier_main
from tests.harness import AgentProcess
from tests.verifier.service.fleet import VerifierProcess, policy_for, service_pki

pytestmark = pytest.mark.slow


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    process = AgentProcess(tmp_path / "agent")
    process.start()
    yield process
    if process.process is not None:
        process.stop()


def _fleet(
    capsys: pytest.CaptureFixture[str], verifier: VerifierProcess, who: str, *args: str
) -> tuple[int, str, str]:
    code = main(["fleet", *args, *verifier.connection(who)])
    out, err = capsys.readouterr()
    return code, out, err


def _add(capsys: pytest.CaptureFixture[str], verifier: VerifierProcess, who: str,
         agent: AgentProcess) -> tuple[int, str, str]:  # fmt: skip
    return _fleet(
        capsys, verifier, who, "add", "gpu-01", "--address", f"127.0.0.1:{agent.port}",
        "--agent-cert", str(agent.tls / "client.pem"), "--agent-key", str(agent.tls / "client.key"),
        "--agent-ca", str(agent.tls / "ca.pem"), "--agent-server-name", "localhost",
        "--policy", str(policy_for(agent)), "--interval", "1",
    )  # fmt: skip


def _wait_for_status(
    capsys: pytest.CaptureFixture[str], verifier: VerifierProcess, status: str
) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while True:
        _, out, _ = _fleet(capsys, verifier, "reader", "status", "gpu-01")
        result: dict[str, object] = json.loads(out)
        if result["status"] == status or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


def test_admins_register_agents_and_relying_parties_read_their_results(
    agent: AgentProcess, verifier: VerifierProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    # A relying party's certificate is accepted, but it may not register agents.
    code, _, err = _add(capsys, verifier, "reader", agent)
    assert code == 2 and "PERMISSION_DENIED (not_admin)" in err
    code, out, err = _add(capsys, verifier, "admin", agent)
    assert code == 0, err
    assert json.loads(out)["status"] == "none"
    code, _, err = _add(capsys, verifier, "admin", agent)
    assert code == 2 and "ALREADY_EXISTS (agent_exists)" in err
    code, out, _ = _fleet(capsys, verifier, "admin", "list")
    assert [a["name"] for a in json.loads(out)] == ["gpu-01"]
    assert _fleet(capsys, verifier, "reader", "list")[0] == 2

    result = _wait_for_status(capsys, verifier, "warning")  # simulated: at best a warning
    assert result["status"] == "warning", result
    public = load_verification_key(
        serialization.load_pem_private_key(verifier.ear_key.read_bytes(), None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    claims = verify_result(str(result["ear"]), public)
    assert set(result_statuses(claims).values()) == {"warning"}
    code, out, _ = _fleet(capsys, verifier, "reader", "status")
    assert code == 0 and json.loads(out)["byStatus"] == {"warning": 1}

    # The status stream, from the start: the agent's first appraisal.
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(verifier.pki / "ca.pem").read_bytes(),
        private_key=(verifier.pki / "reader.key").read_bytes(),
        certificate_chain=(verifier.pki / "reader.pem").read_bytes(),
    )
    options = [("grpc.ssl_target_name_override", "localhost")]
    with grpc.secure_channel(f"127.0.0.1:{verifier.port}", credentials, options) as channel:
        stream = verifier_pb2_grpc.FleetStatusStub(channel).WatchStatus(
            verifier_pb2.WatchStatusRequest(after_id=0), timeout=10
        )
        first = next(stream)
        stream.cancel()
        assert (first.name, first.old_status, first.new_status) == ("gpu-01", "none", "warning")
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="attestd.verifier.v1.FleetStatus"), timeout=10
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        # Reflection under grpc.reflection.v1 too (what grpcurl asks first), as the agent.
        listed = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
        names = {s.name for answer in listed for s in answer.list_services_response.service}
        assert {"attestd.verifier.v1.FleetAdmin", "attestd.verifier.v1.FleetStatus"} <= names

    # The agent goes away: unreachable, and the stream's history says why.
    agent.stop()
    gone = _wait_for_status(capsys, verifier, "unreachable")
    assert (gone["status"], gone["reason"], gone["ear"]) == ("unreachable", "unreachable", None)

    unreachable = 'attestd_verifier_agents{status="unreachable"} 1.0'
    deadline = time.monotonic() + 10  # the gauges follow the store once per claiming tick
    while True:
        url = f"http://127.0.0.1:{verifier.metrics_port}/metrics"
        with urllib.request.urlopen(url) as response:
            metrics = response.read().decode()
        if unreachable in metrics or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert unreachable in metrics
    assert "attestd_verifier_appraisals_total{" in metrics and 'status="warning"' in metrics

    assert _fleet(capsys, verifier, "admin", "remove", "gpu-01")[0] == 0
    code, _, err = _fleet(capsys, verifier, "reader", "status", "gpu-01")
    assert code == 2 and "NOT_FOUND (agent_not_found)" in err


def test_the_pin_printed_is_the_one_the_service_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pki = service_pki(tmp_path / "pki")
    assert main(["fleet", "pin", "--cert", str(pki / "admin.pem")]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("sha256:") and len(printed) == 7 + 64
    assert main(["fleet", "pin", "--cert", str(pki / "reader.pem")]) == 0
    assert capsys.readouterr().out.strip() != printed


def test_a_config_with_an_unknown_key_is_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "verifier.toml"
    config.write_text('[service]\near_signing_key = "k"\nlease = 3\n')
    assert verifier_main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "service_config_invalid" in err and "service.lease" in err


def test_without_the_fleet_extra_the_daemon_says_what_to_install(tmp_path: Path) -> None:
    config = tmp_path / "verifier.toml"
    config.write_text('[service]\near_signing_key = "k"\n')
    # sys.modules[name] = None makes `import name` fail, as if the extra were not installed.
    code = (
        "import sys; sys.modules['sqlalchemy'] = None\n"
        "from attestd.verifier.service.main import main\n"
        f"sys.exit(main(['--config', {str(config)!r}]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "fleet_extra_missing" in done.stderr and "attestd[fleet]" in done.stderr


def test_the_package_runs_as_the_daemon() -> None:
    # The container image's ENTRYPOINT: python3 -m attestd.verifier.service.
    done = subprocess.run(
        [sys.executable, "-m", "attestd.verifier.service", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: attestd-verifier")
