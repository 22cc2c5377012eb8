"""The verifier listener runs on an event loop of its own, so verifier load never queues
a pipeline call: an in-process AgentServer over real sockets."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from attestd.agent.config import AgentConfig, parse_config
from attestd.agent.server import AgentServer
from attestd.agent.service import Agent
from attestd.agent.tls import load_server_tls
from attestd.cli.devpki import create_dev_pki
from attestd.client import AgentClient
from tests.harness import free_port

VERIFIER_LOOP = "attestd-verifier-loop"


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Agent, AgentConfig]]:
    tls = tmp_path / "tls"
    create_dev_pki(tls)
    raw = {
        "agent": {"state_dir": "state"},
        "tee": {"backend": "simulated-tdx"},
        "listen": {
            "unix_socket": str(tmp_path / "run" / "attestd.sock"),
            "tcp_address": f"127.0.0.1:{free_port()}",
            "tls": {
                "cert": str(tls / "server.pem"),
                "key": str(tls / "server.key"),
                "client_ca": str(tls / "ca.pem"),
            },
        },
    }
    config = parse_config(raw, base_dir=tmp_path)
    agent = Agent.open(config)
    yield agent, config
    agent.close()


def _verifier(config: AgentConfig, port: int) -> AgentClient:
    tls = config.listen.tls
    assert tls is not None
    return AgentClient.mtls(
        f"127.0.0.1:{port}",
        ca=tls.client_ca,
        cert=tls.cert.parent / "client.pem",
        key=tls.cert.parent / "client.key",
        server_name="localhost",
        timeout=30,
    )


def _loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == VERIFIER_LOOP]


def test_a_blocked_verifier_loop_does_not_hold_up_a_pipeline_call(
    setup: tuple[Agent, AgentConfig],
) -> None:
    agent, config = setup
    socket_path = config.listen.unix_socket
    assert socket_path is not None

    async def scenario() -> None:
        server = AgentServer(agent, config, load_server_tls(config.listen.tls))  # type: ignore[arg-type]
        await server.start()
        try:
            assert len(_loop_threads()) == 1
            assert server.tcp_port is not None
            port = server.tcp_port
            with _verifier(config, port) as verifier:
                assert (await asyncio.to_thread(verifier.info)).serving  # served there
                # Hold the verifiers' loop: what it serves waits, what the pipeline asks doesn't.
                held, release = threading.Event(), threading.Event()

                def hold() -> None:
                    held.set()
                    release.wait(30)

                home = server._verifier_home
                assert home is not None
                home.loop.call_soon_threadsafe(hold)
                assert await asyncio.to_thread(held.wait, 10)
                evidence = asyncio.ensure_future(
                    asyncio.to_thread(verifier.evidence, os.urandom(32))
                )
                with AgentClient.unix(socket_path) as pipeline:
                    ack = await asyncio.to_thread(pipeline.record, "pipeline.test", "step", b"")
                    assert ack.event.sequence >= 0
                    await asyncio.sleep(0.2)
                    assert not evidence.done()  # its loop is still held
                release.set()
                assert await asyncio.wait_for(evidence, 30)
        finally:
            await server.stop(1)
        assert _loop_threads() == []  # stopping the agent stops its verifier loop

    asyncio.run(scenario())


def test_health_reaches_the_verifier_listener_when_serving_stops(
    setup: tuple[Agent, AgentConfig],
) -> None:
    agent, config = setup

    async def scenario() -> None:
        server = AgentServer(agent, config, load_server_tls(config.listen.tls))  # type: ignore[arg-type]
        await server.start()
        try:
            assert server.tcp_port is not None
            tls = config.listen.tls
            assert tls is not None
            credentials = grpc.ssl_channel_credentials(
                tls.client_ca.read_bytes(),
                (tls.cert.parent / "client.key").read_bytes(),
                (tls.cert.parent / "client.pem").read_bytes(),
            )
            options = [("grpc.ssl_target_name_override", "localhost")]

            def status() -> int:
                target = f"127.0.0.1:{server.tcp_port}"
                with grpc.secure_channel(target, credentials, options=options) as channel:
                    stub = health_pb2_grpc.HealthStub(channel)
                    response = stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
                    return int(response.status)

            assert await asyncio.to_thread(status) == health_pb2.HealthCheckResponse.SERVING
            agent._problem = "the test stopped it"  # what a failed reconcile leaves
            await server.sync_health()  # as after any call
            deadline = time.monotonic() + 10
            while await asyncio.to_thread(status) != health_pb2.HealthCheckResponse.NOT_SERVING:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        finally:
            await server.stop(1)

    asyncio.run(scenario())
