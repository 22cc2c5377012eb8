"""Crash safety: an acknowledged event survives kill -9, and a log that does not
match the register stops the agent from serving evidence."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from attestd.client import AgentCallError
from attestd.evidence import replay
from attestd.tee.tdx.simulated import SimulatedTdxBackend
from tests.harness import SIMULATED_TEES, AgentProcess

NONCE = b"n" * 32


def _record_until_killed(agent: AgentProcess, acknowledged: list[tuple[int, bytes]]) -> None:
    with agent.pipeline() as client:
        for i in range(100_000):
            content = f"event {i}".encode()
            try:
                response = client.record("pipeline.crash", "step", content)
            except AgentCallError:
                return  # the agent is gone
            acknowledged.append((response.event.sequence, content))


@pytest.mark.parametrize("tee", SIMULATED_TEES)
def test_sigkill_loses_no_acknowledged_event(tmp_path: Path, tee: str) -> None:
    agent = AgentProcess(tmp_path, tee=tee)
    agent.start()
    acknowledged: list[tuple[int, bytes]] = []
    writer = threading.Thread(target=_record_until_killed, args=(agent, acknowledged))
    writer.start()
    deadline = time.monotonic() + 20
    while len(acknowledged) < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    agent.kill()
    writer.join(timeout=30)
    assert len(acknowledged) >= 50

    agent.start()
    try:
        with agent.pipeline() as client:
            info = client.info()
            # Every page: the agent caps one GetRuntimeLog page ([limits] log_page_size).
            logged = {e.sequence: e.content for page in client.log_pages() for e in page}
            # The restarted agent serves evidence: log and register agree.
            client.evidence(NONCE)
        assert info.serving, info.serving_problem
        for sequence, content in acknowledged:
            assert logged.get(sequence) == content, f"acknowledged event {sequence} lost"
        assert len(logged) >= len(acknowledged)
    finally:
        assert agent.stop() == 0
    if tee != "simulated-tdx":
        return  # SNP has no runtime register; the head is bound through REPORTDATA only
    # Independently of the agent: the log on disk replays to the simulated RTMR3.
    register = SimulatedTdxBackend.open(agent.state_dir).read_runtime_register()
    from attestd.agent.runtime_log_store import RuntimeLogStore

    store = RuntimeLogStore.open(agent.state_dir / "runtime-log.jsonl")
    assert replay(store.events()) == register
    store.close()


def test_tampered_log_stops_evidence_and_health(tmp_path: Path) -> None:
    agent = AgentProcess(tmp_path)
    agent.start()
    with agent.pipeline() as client:
        for i in range(3):
            client.record("pipeline.tamper", "step", f"{i}".encode())
    assert agent.stop() == 0

    log_file = agent.state_dir / "runtime-log.jsonl"
    lines = log_file.read_bytes().splitlines(keepends=True)
    event = json.loads(lines[2])
    event["operation"] = "rewritten"
    lines[2] = json.dumps(event, separators=(",", ":"), sort_keys=True).encode() + b"\n"
    log_file.write_bytes(b"".join(lines))

    agent.start()
    try:
        with agent.pipeline() as client:
            info = client.info()
            assert not info.serving
            assert "does not replay" in info.serving_problem
            with pytest.raises(AgentCallError) as refused:
                client.evidence(NONCE)
            assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
            with pytest.raises(AgentCallError):
                client.record("pipeline.tamper", "after", b"")
        channel = grpc.insecure_channel(f"unix:{agent.socket_path}")
        with channel:
            status = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="attestd.v1.Agent"), timeout=10
            )
        assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        assert agent.stop() == 0
    assert "does not replay" in agent.log_path.read_text()


def _recorder(
    agent: AgentProcess, name: str, acknowledged: list[tuple[int, bytes]], lock: threading.Lock
) -> None:
    with agent.pipeline() as client:
        for i in range(100_000):
            content = f"{name} event {i}".encode()
            try:
                response = client.record("pipeline.crash", "step", content)
            except AgentCallError:
                return  # the agent is gone
            with lock:
                acknowledged.append((response.event.sequence, content))


def test_sigkill_under_group_commit_loses_no_acknowledged_event(tmp_path: Path) -> None:
    """32 concurrent recorders, killed at random moments: every answered event is on
    disk after a restart, and the log replays to the simulated RTMR3."""
    agent = AgentProcess(tmp_path)
    rng = random.Random(11)
    acknowledged: list[tuple[int, bytes]] = []
    lock = threading.Lock()
    for round_ in range(3):
        agent.start()
        recorders = [
            threading.Thread(target=_recorder, args=(agent, f"r{round_}.{n}", acknowledged, lock))
            for n in range(32)
        ]
        for recorder in recorders:
            recorder.start()
        target = len(acknowledged) + 64
        deadline = time.monotonic() + 30
        while len(acknowledged) < target and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.3))  # somewhere inside a group's write, fsync or extension
        agent.kill()
        for recorder in recorders:
            recorder.join(timeout=30)
        assert len(acknowledged) >= target

    agent.start()
    try:
        with agent.pipeline() as client:
            info = client.info()
            # Every page: three rounds of 32 recorders can log more than one page holds.
            logged = {e.sequence: e.content for page in client.log_pages() for e in page}
            client.evidence(NONCE)
        assert info.serving, info.serving_problem
        for sequence, content in acknowledged:
            assert logged.get(sequence) == content, f"acknowledged event {sequence} lost"
    finally:
        assert agent.stop() == 0
    register = SimulatedTdxBackend.open(agent.state_dir).read_runtime_register()
    from attestd.agent.runtime_log_store import RuntimeLogStore

    store = RuntimeLogStore.open(agent.state_dir / "runtime-log.jsonl")
    assert replay(store.events()) == register
    store.close()
