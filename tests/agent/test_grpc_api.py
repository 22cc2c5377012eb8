"""The agent's gRPC API over real sockets: roles, limits, paths, health."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from attestd.agent.artifacts.gpu import cuda as gpu_cuda
from attestd.cli.devpki import create_dev_pki
from attestd.client import AgentCallError, AgentClient
from tests.harness import SIMULATED_TEES, AgentProcess, serving

NONCE = bytes(range(32))


@pytest.fixture(scope="module", params=SIMULATED_TEES)
def agent(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentProcess]:
    process = AgentProcess(tmp_path_factory.mktemp("agent"), tee=request.param)
    process.write_config()
    model = process.models / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(os.urandom(4096))
    (process.models / "single.bin").write_bytes(b"hello")
    yield from serving(process)


def _begin_stage(client: AgentClient, agent: AgentProcess) -> object:
    begun = client.begin_stage("matrix", "begin")
    with agent.pipeline() as pipeline:
        pipeline.end_stage()
    return begun


def _end_stage(client: AgentClient, agent: AgentProcess) -> object:
    with agent.pipeline() as pipeline:
        pipeline.begin_stage("matrix", "end")
        try:
            return client.end_stage()
        finally:
            try:
                pipeline.end_stage()  # when the call under test was refused
            except AgentCallError as err:
                assert err.code == grpc.StatusCode.FAILED_PRECONDITION


def _abort_stage(client: AgentClient, agent: AgentProcess) -> object:
    with agent.pipeline() as pipeline:
        pipeline.begin_stage("matrix", "abort")
        try:
            return client.abort_stage("matrix")
        finally:
            try:
                pipeline.abort_stage("the call under test was refused")
            except AgentCallError as err:
                assert err.agent_reason == "stage_not_open"


def _record_on_a_stream(client: AgentClient) -> object:
    with client.recorder() as recorder:
        return recorder.record("pipeline.test", "matrix-stream", b"x")


CALLS: dict[str, Callable[[AgentClient, AgentProcess], object]] = {
    "GetEvidence": lambda c, a: c.evidence(NONCE),
    "GetAgentInfo": lambda c, a: c.info(),
    "GetRuntimeLog": lambda c, a: c.runtime_log(),
    "MeasureArtifacts": lambda c, a: c.measure([str(a.models / "model")]),
    "RecordEvent": lambda c, a: c.record("pipeline.test", "matrix", b"x"),
    "RecordEvents": lambda c, a: _record_on_a_stream(c),
    "BeginStage": _begin_stage,
    "EndStage": _end_stage,
    "AbortStage": _abort_stage,
}
ALLOWED = {
    ("pipeline", "GetEvidence"),
    ("pipeline", "GetAgentInfo"),
    ("pipeline", "GetRuntimeLog"),
    ("pipeline", "MeasureArtifacts"),
    ("pipeline", "RecordEvent"),
    ("pipeline", "RecordEvents"),
    ("pipeline", "BeginStage"),
    ("pipeline", "EndStage"),
    ("pipeline", "AbortStage"),
    ("verifier", "GetEvidence"),
    ("verifier", "GetAgentInfo"),
    ("verifier", "GetRuntimeLog"),
}


@pytest.mark.parametrize("rpc", sorted(CALLS))
@pytest.mark.parametrize("role", ["pipeline", "verifier"])
def test_each_role_may_call_exactly_its_rpcs(agent: AgentProcess, role: str, rpc: str) -> None:
    client = agent.pipeline() if role == "pipeline" else agent.verifier()
    with client:
        if (role, rpc) in ALLOWED:
            CALLS[rpc](client, agent)
        else:
            with pytest.raises(AgentCallError) as refused:
                CALLS[rpc](client, agent)
            assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
            assert rpc in refused.value.details


def test_client_certificate_from_another_ca_is_refused(agent: AgentProcess, tmp_path: Path) -> None:
    create_dev_pki(tmp_path / "other")
    client = AgentClient.mtls(
        f"127.0.0.1:{agent.port}",
        cert=tmp_path / "other" / "client.pem",
        key=tmp_path / "other" / "client.key",
        ca=agent.tls / "ca.pem",
        server_name="localhost",
        timeout=10,
    )
    with client, pytest.raises(AgentCallError) as refused:
        client.info()
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE


def test_client_without_certificate_is_refused(agent: AgentProcess) -> None:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(agent.tls / "ca.pem").read_bytes()
    )
    channel = grpc.secure_channel(
        f"127.0.0.1:{agent.port}",
        credentials,
        options=[("grpc.ssl_target_name_override", "localhost")],
    )
    with AgentClient(channel, timeout=10) as client, pytest.raises(AgentCallError) as refused:
        client.info()
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c, a: c.evidence(b"x" * 15), "nonce"),
        (lambda c, a: c.evidence(b"x" * 65), "nonce"),
        (lambda c, a: c.evidence(b""), "nonce"),
        (lambda c, a: c.record("pipeline.test", "big", b"x" * (64 * 1024 + 1)), "65536"),
        (lambda c, a: c.record("", "op", b""), "domain"),
        (lambda c, a: c.record("bad domain!", "op", b""), "domain"),
        (lambda c, a: c.record("pipeline", "x" * 129, b""), "operation"),
        (lambda c, a: c.record("attestd.artifact", "measured", b"{}"), "reserved"),
        (lambda c, a: c.record("ATTESTD.stage", "begin", b"{}"), "reserved"),
        (lambda c, a: c.measure([]), "no paths"),
        (lambda c, a: c.measure([str(a.models / "single.bin")] * 65), "limit is 64"),
        (lambda c, a: c.evidence(NONCE, ["/never/measured"] * 65), "limit is 64"),
    ],
)
def test_limits_are_invalid_argument_with_a_clear_message(
    agent: AgentProcess, call: Callable[[AgentClient, AgentProcess], object], message: str
) -> None:
    with agent.pipeline() as client, pytest.raises(AgentCallError) as refused:
        call(client, agent)
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert message in refused.value.details


def test_oversized_message_is_refused(agent: AgentProcess) -> None:
    with agent.pipeline() as client, pytest.raises(AgentCallError) as refused:
        client.record("pipeline.test", "huge", b"x" * (5 << 20))
    assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_evidence_for_an_unmeasured_artifact_is_refused(agent: AgentProcess) -> None:
    with agent.pipeline() as client, pytest.raises(AgentCallError) as refused:
        client.evidence(NONCE, ["/nowhere"])
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION


HUGE_NAME = "/models/" + "n" * (20 << 10)  # over gRPC's metadata limit if echoed whole


@pytest.mark.parametrize(
    ("call", "code", "reason"),
    [
        (
            lambda c: c.evidence(NONCE, [HUGE_NAME]),
            grpc.StatusCode.FAILED_PRECONDITION,
            "artifact_not_measured",
        ),
        # Under the 4096-byte path limit, echoed whole by the artifact roots: the
        # server's bound on every status message cuts it.
        (
            lambda c: c.measure(["/outside/" + "p" * 4000]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "path_not_allowed",
        ),
    ],
)
def test_a_refusal_echoing_a_huge_value_keeps_its_code_and_reason(
    agent: AgentProcess, call: Callable[[AgentClient], object], code: grpc.StatusCode, reason: str
) -> None:
    with agent.pipeline() as client, pytest.raises(AgentCallError) as refused:
        call(client)
    assert refused.value.code == code
    assert refused.value.agent_reason == reason
    assert len(refused.value.details) < 2048
    assert "characters)" in refused.value.details  # it says the value was cut


def escaping_paths(agent: AgentProcess) -> list[str]:
    outside = agent.workdir / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret").write_text("secret")
    link = agent.models / "escape"
    if not link.is_symlink():
        link.symlink_to(outside)
    return [
        str(agent.models / ".." / "outside" / "secret"),
        str(link / "secret"),
        str(link),
        "/etc/passwd",
        "models/single.bin",
    ]


def test_paths_outside_the_artifact_roots_are_refused(agent: AgentProcess) -> None:
    with agent.pipeline() as client:
        for path in escaping_paths(agent):
            with pytest.raises(AgentCallError) as refused:
                client.measure([path])
            assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT, path


def test_measuring_a_missing_path_is_not_found(agent: AgentProcess) -> None:
    with agent.pipeline() as client, pytest.raises(AgentCallError) as refused:
        client.measure([str(agent.models / "missing")])
    assert refused.value.code == grpc.StatusCode.NOT_FOUND


def test_measure_returns_digests_and_logs_them(agent: AgentProcess) -> None:
    with agent.pipeline() as client:
        (artifact,) = client.measure([str(agent.models / "single.bin")])
        assert artifact.kind == "file"
        assert (
            artifact.digest["sha256"]
            == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        )
        page = client.runtime_log(start=artifact.log_sequence, limit=1)
    assert page.events[0].domain == "attestd.artifact"
    assert b"single.bin" in page.events[0].content


def test_health_and_reflection_are_served(agent: AgentProcess) -> None:
    channel = grpc.insecure_channel(f"unix:{agent.socket_path}")
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "attestd.v1.Agent"):
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert response.status == health_pb2.HealthCheckResponse.SERVING
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = reflect.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
        )
        names = {s.name for a in answers for s in a.list_services_response.service}
    assert "attestd.v1.Agent" in names


def _reflect_v1(channel: grpc.Channel, requests: list[object]) -> list[Any]:
    """Call grpc.reflection.v1 as a v1-only client (grpcurl, Postman) does.

    The v1 messages are v1alpha's field for field under another package, so
    v1alpha's classes encode and decode them; only the method path says v1.
    """
    from grpc_reflection.v1alpha import reflection_pb2

    call = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    return list(call(iter(requests), timeout=10))


@pytest.mark.parametrize("listener", ["unix", "tcp"])
def test_reflection_v1_lists_and_describes_the_services(agent: AgentProcess, listener: str) -> None:
    from google.protobuf import descriptor_pb2
    from grpc_reflection.v1alpha import reflection_pb2

    if listener == "unix":
        channel = grpc.insecure_channel(f"unix:{agent.socket_path}")
    else:
        tls = agent.tls
        credentials = grpc.ssl_channel_credentials(
            (tls / "ca.pem").read_bytes(),
            (tls / "client.key").read_bytes(),
            (tls / "client.pem").read_bytes(),
        )
        channel = grpc.secure_channel(
            f"127.0.0.1:{agent.port}",
            credentials,
            options=[("grpc.ssl_target_name_override", "localhost")],
        )
    with channel:
        listed, described = _reflect_v1(
            channel,
            [
                reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(
                    file_containing_symbol="grpc.reflection.v1.ServerReflection"
                ),
            ],
        )
    names = {s.name for s in listed.list_services_response.service}
    assert {"attestd.v1.Agent", "grpc.health.v1.Health"} <= names
    assert {
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names
    (raw,) = described.file_descriptor_response.file_descriptor_proto
    proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
    assert proto.package == "grpc.reflection.v1"
    assert proto.service[0].method[0].input_type == ".grpc.reflection.v1.ServerReflectionRequest"


def test_socket_has_the_configured_mode(agent: AgentProcess) -> None:
    assert (agent.socket_path.stat().st_mode & 0o777) == 0o660


def test_info_says_the_tee_is_simulated(agent: AgentProcess) -> None:
    with agent.verifier() as client:
        info = client.info()
    expected = {
        "simulated-tdx": ("tdx", "attestd-simulated-tdx-root"),
        "simulated-snp": ("sev-snp", "attestd-simulated-amd-ark"),
    }
    assert (info.tee, info.root_of_trust) == expected[agent.tee]
    assert info.simulated
    assert info.backend == agent.tee
    assert info.serving


@pytest.mark.skipif(gpu_cuda.available(), reason="this machine can hash on a GPU")
def test_gpu_measurement_without_a_gpu_is_refused_not_done_on_the_cpu(agent: AgentProcess) -> None:
    with agent.pipeline() as client:
        before = client.runtime_log().length
        with pytest.raises(AgentCallError) as refused:
            client.measure([str(agent.models / "single.bin")], use_gpu=True)
        after = client.runtime_log().length
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.agent_reason == "gpu_unavailable"
    assert "GPU hashing is unavailable" in refused.value.details
    assert after == before  # nothing hashed, nothing logged
