"""Push mode end to end: real agents push evidence to a real attestd-verifier, on SQLite and
PostgreSQL; replayed nonces and callers that are not the registered agent are refused."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from attestd.cli import main
from attestd.client import AgentClient
from attestd.evidence import LogCheckpoint
from attestd.v1 import verifier_pb2, verifier_pb2_grpc
from attestd.verifier.service.roles import certificate_pin
from attestd.verifier.service.store import Store
from tests.harness import AgentProcess
from tests.verifier.service.fleet import VerifierProcess, policy_for

pytestmark = pytest.mark.slow


def _register_push(verifier: VerifierProcess, agent: AgentProcess, name: str, pin: str) -> None:
    args = ["fleet", "add", name, "--push", "--pin", pin, "--policy", str(policy_for(agent))]
    assert main([*args, "--interval", "1", *verifier.connection("admin")]) == 0


def _stub(
    verifier: VerifierProcess, who: str
) -> tuple[grpc.Channel, verifier_pb2_grpc.FleetPushStub]:
    pki = verifier.pki
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(pki / "ca.pem").read_bytes(),
        private_key=(pki / f"{who}.key").read_bytes(),
        certificate_chain=(pki / f"{who}.pem").read_bytes(),
    )
    channel = grpc.secure_channel(
        f"127.0.0.1:{verifier.port}", credentials, [("grpc.ssl_target_name_override", "localhost")]
    )
    return channel, verifier_pb2_grpc.FleetPushStub(channel)  # type: ignore[no-untyped-call]


def _refusal(call: object) -> tuple[grpc.StatusCode, str]:
    assert isinstance(call, grpc.RpcError)
    trailing = dict(call.trailing_metadata() or ())  # type: ignore[attr-defined]
    return call.code(), trailing.get("attestd-reason", "")  # type: ignore[attr-defined]


def test_an_agent_behind_nat_pushes_and_is_appraised_incrementally(
    tmp_path: Path, verifier: VerifierProcess, database_url: str
) -> None:
    pin = certificate_pin((verifier.pki / "reader.pem").read_bytes())
    agent = AgentProcess(
        tmp_path / "agent",
        extra_config=f"""
[push]
verifier = "127.0.0.1:{verifier.port}"
name = "gpu-nat"
cert = "{verifier.pki / "reader.pem"}"
key = "{verifier.pki / "reader.key"}"
ca = "{verifier.pki / "ca.pem"}"
server_name = "localhost"
interval_s = 1
""",
    )
    # Started before it is registered: its pushes are refused (and retried) until then.
    agent.start()
    _register_push(verifier, agent, "gpu-nat", pin)
    store = Store.open(database_url, now=time.time())
    try:
        deadline = time.monotonic() + 30
        history = store.history("gpu-nat")
        # Three pushes: the first from the start of the log, the later ones from the
        # checkpoint the verifier handed out, each stored as a pull's result is.
        while len(history) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
            history = store.history("gpu-nat")
        assert len(history) >= 3, agent.log_path.read_text()
        assert {(r.status, r.reason) for r in history} == {("warning", "simulated")}
        assert all(r.ear for r in history)
        record = store.agent("gpu-nat")
        assert record.status == "warning" and store.checkpoint(record.id) is not None
    finally:
        store.close()
        agent.stop()


def test_replayed_nonces_and_callers_other_than_the_agent_are_refused(
    tmp_path: Path, verifier: VerifierProcess
) -> None:
    agent = AgentProcess(tmp_path / "agent")
    agent.start()
    try:
        _register_push(
            verifier, agent, "gpu-push", certificate_pin((verifier.pki / "reader.pem").read_bytes())
        )
        channel, stub = _stub(verifier, "reader")
        with (
            channel,
            AgentClient.mtls(
                f"127.0.0.1:{agent.port}",
                cert=agent.tls / "client.pem",
                key=agent.tls / "client.key",
                ca=agent.tls / "ca.pem",
                server_name="localhost",
            ) as client,
        ):
            challenge = stub.GetChallenge(verifier_pb2.GetChallengeRequest(name="gpu-push"))
            assert len(challenge.nonce) == 32 and not challenge.has_checkpoint
            evidence = client.evidence(challenge.nonce)
            push = verifier_pb2.PushEvidenceRequest(
                name="gpu-push", nonce=challenge.nonce, evidence=evidence
            )
            answer = stub.PushEvidence(push)
            assert (answer.status, answer.reason) == ("warning", "simulated") and answer.ear

            # The same nonce again: refused, and nothing stored.
            with pytest.raises(grpc.RpcError) as replay:
                stub.PushEvidence(push)
            assert _refusal(replay.value) == (
                grpc.StatusCode.FAILED_PRECONDITION,
                "nonce_refused",
            )
            # The next challenge carries the checkpoint the first push verified.
            second = stub.GetChallenge(verifier_pb2.GetChallengeRequest(name="gpu-push"))
            assert second.has_checkpoint  # (of length 0: nothing was recorded yet)
            checkpoint = LogCheckpoint(second.checkpoint_length, second.checkpoint_head)
            answer = stub.PushEvidence(
                verifier_pb2.PushEvidenceRequest(
                    name="gpu-push",
                    nonce=second.nonce,
                    evidence=client.evidence(second.nonce, checkpoint=checkpoint),
                )
            )
            assert answer.status == "warning", answer.reason

            # An unregistered name, and a pulled agent's name, are refused alike.
            for name in ("gpu-unknown", "bad name"):
                with pytest.raises(grpc.RpcError) as unknown:
                    stub.GetChallenge(verifier_pb2.GetChallengeRequest(name=name))
                assert _refusal(unknown.value) == (
                    grpc.StatusCode.PERMISSION_DENIED,
                    "pusher_not_registered",
                )
        # Another client of the same CA (here the admin's) is not the agent.
        channel, impostor = _stub(verifier, "admin")
        with channel:
            for call in (
                lambda: impostor.GetChallenge(verifier_pb2.GetChallengeRequest(name="gpu-push")),
                lambda: impostor.PushEvidence(
                    verifier_pb2.PushEvidenceRequest(
                        name="gpu-push", nonce=challenge.nonce, evidence=evidence
                    )
                ),
            ):
                with pytest.raises(grpc.RpcError) as refused:
                    call()
                assert _refusal(refused.value) == (
                    grpc.StatusCode.PERMISSION_DENIED,
                    "pusher_not_registered",
                )
    finally:
        agent.stop()


def _agent_config(push: str) -> dict[str, object]:
    import tomllib

    return tomllib.loads(f'[tee]\nbackend = "simulated-tdx"\n[push]\n{push}')


def test_the_agents_push_section_is_checked(tmp_path: Path) -> None:
    from attestd.agent.config import parse_config
    from attestd.agent.errors import ConfigError

    good = (
        'verifier = "v.internal:7000"\nname = "gpu-01"\n'
        'cert = "c.pem"\nkey = "k.pem"\nca = "ca.pem"\n'
    )
    push = parse_config(_agent_config(good), base_dir=tmp_path).push
    assert push is not None and push.cert == tmp_path / "c.pem" and push.interval_s == 60
    for bad, named in [
        (good.replace("v.internal:7000", "v.internal"), "config.push.verifier"),
        (good.replace("gpu-01", "gpu 01"), "config.push.name"),
        (good.replace('key = "k.pem"\n', ""), "push.key"),
        (good + "interval_s = 0\n", "interval_s"),
        (good + "password = 'x'\n", "password"),
    ]:
        with pytest.raises(ConfigError, match=named):
            parse_config(_agent_config(bad), base_dir=tmp_path)


def test_an_agent_that_stops_pushing_turns_unreachable(store: Store) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from attestd.verifier.metrics import VerifierMetrics
    from attestd.verifier.service.poller import PUSH_OVERDUE, Poller, PollerSettings
    from attestd.verifier.service.store import AgentSpec

    spec = AgentSpec("gpu-nat", "", "", "", "", "", "/p.toml", 10.0, push_pin="sha256:" + "a" * 64)
    store.add_agent(spec, now=100.0)
    clock = [105.0]
    poller = Poller(
        store,
        PollerSettings("r1"),
        ec.generate_private_key(ec.SECP256R1()),
        VerifierMetrics(),
        clock=lambda: clock[0],
    )
    try:
        assert poller.pull_due() == 0  # due, but it pushes: never pulled
        clock[0] = 110.5  # a whole interval past due
        assert poller.pull_due() == 1
        record = store.agent("gpu-nat")
        assert (record.status, record.status_reason) == ("unreachable", PUSH_OVERDUE)
    finally:
        poller.stop()
