"""RecordEvents through a real agent: one stream, each event acknowledged once durable,
in order, with its caller; a refusal ends the stream; SIGKILL loses no acknowledged event."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from attestd.agent.peercred import Caller
from attestd.agent.runtime_log_store import RuntimeLogStore, Written
from attestd.agent.server import _ack_pb, _event_pb
from attestd.client import AgentCallError, RecorderClosedError
from attestd.evidence import RuntimeEvent, event_digest, replay
from attestd.tee.tdx.simulated import SimulatedTdxBackend
from attestd.v1 import agent_pb2, agent_pb2_grpc
from tests.harness import AgentProcess, serving

ME = Caller(os.getpid(), os.getuid(), os.getgid())
NONCE = b"n" * 32


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    yield from serving(AgentProcess(tmp_path_factory.mktemp("stream")))


def test_each_event_is_acknowledged_in_order_and_logged_with_its_caller(
    agent: AgentProcess,
) -> None:
    with agent.pipeline() as client, client.recorder() as recorder:
        acks = [recorder.record("pipeline.stream", "step", f"{i}".encode()) for i in range(20)]
        page = client.runtime_log(acks[0].event.sequence, 20)
    sequences = [a.event.sequence for a in acks]
    assert sequences == list(range(sequences[0], sequences[0] + 20))
    for ack, logged in zip(acks, page.events, strict=True):
        assert logged.sequence == ack.event.sequence
        assert logged.content == ack.event.content
        assert logged.digest == ack.event.digest
        assert Caller(logged.caller.pid, logged.caller.uid, logged.caller.gid) == ME
    # Each acknowledgement's head is the log's head after its event.
    with agent.pipeline() as client:
        info = client.info()
    assert info.log_length == sequences[-1] + 1
    assert info.log_head == acks[-1].log_head


def test_events_sent_ahead_are_acknowledged_in_the_order_sent(agent: AgentProcess) -> None:
    """A client may send before it reads; each response still answers its own request."""
    count = 200
    requests = [
        agent_pb2.RecordEventRequest(domain="pipeline.ahead", operation="step", content=b"%d" % i)
        for i in range(count)
    ]
    with grpc.insecure_channel(f"unix:{agent.socket_path}") as channel:
        stub = agent_pb2_grpc.AgentStub(channel)  # type: ignore[no-untyped-call]
        acks = list(stub.RecordEvents(iter(requests), timeout=30))
    assert [a.event.content for a in acks] == [r.content for r in requests]
    sequences = [a.event.sequence for a in acks]
    assert sequences == list(range(sequences[0], sequences[0] + count))


def test_a_refused_event_ends_the_stream_after_the_earlier_ones(agent: AgentProcess) -> None:
    with agent.pipeline() as client:
        recorder = client.recorder()
        first = recorder.record("pipeline.stream", "before", b"1")
        with pytest.raises(AgentCallError) as refused:
            recorder.record("attestd.stage", "forged", b"{}")
        assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.agent_reason == "request_invalid"
        with pytest.raises(RecorderClosedError):
            recorder.record("pipeline.stream", "after", b"2")
        recorder.close()
        page = client.runtime_log(first.event.sequence, 10)
    # The acknowledged event is logged; the refused one is not.
    assert [(e.operation, e.content) for e in page.events] == [("before", b"1")]


def test_a_stream_on_the_internal_socket_is_refused(agent: AgentProcess) -> None:
    """Without the relay the caller is unknown: the stream is refused before any event."""
    internal = agent.state_dir / "grpc.sock"
    with grpc.insecure_channel(f"unix:{internal}") as channel:
        stub = agent_pb2_grpc.AgentStub(channel)  # type: ignore[no-untyped-call]
        request = agent_pb2.RecordEventRequest(domain="pipeline.x", operation="y", content=b"")
        with pytest.raises(grpc.RpcError) as refused:
            list(stub.RecordEvents(iter([request]), timeout=30))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


def _stream_recorder(
    agent: AgentProcess, name: str, acknowledged: list[tuple[int, bytes]], lock: threading.Lock
) -> None:
    with agent.pipeline() as client:
        recorder = client.recorder()
        for i in range(100_000):
            content = f"{name} {i}".encode()
            try:
                ack = recorder.record("pipeline.crash", "step", content)
            except (AgentCallError, RecorderClosedError):
                return  # the agent is gone
            with lock:
                acknowledged.append((ack.event.sequence, content))


def test_sigkill_with_streamed_recorders_loses_no_acknowledged_event(tmp_path: Path) -> None:
    """32 recorders on 32 streams, killed at random moments: every acknowledged event is on
    disk after a restart, and the log replays to the simulated RTMR3."""
    agent = AgentProcess(tmp_path)
    rng = random.Random(17)
    acknowledged: list[tuple[int, bytes]] = []
    lock = threading.Lock()
    for round_ in range(3):
        agent.start()
        recorders = [
            threading.Thread(
                target=_stream_recorder, args=(agent, f"r{round_}.{n}", acknowledged, lock)
            )
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
            events = [e for page in client.log_pages() for e in page]
            client.evidence(NONCE)
        assert info.serving, info.serving_problem
        logged = {e.sequence: e.content for e in events}
        for sequence, content in acknowledged:
            assert logged.get(sequence) == content, f"acknowledged event {sequence} lost"
    finally:
        assert agent.stop() == 0
    register = SimulatedTdxBackend.open(agent.state_dir).read_runtime_register()
    store = RuntimeLogStore.open(agent.state_dir / "runtime-log.jsonl")
    assert replay(store.events()) == register
    store.close()


@pytest.mark.parametrize("caller", [None, Caller(0, 0, 0), Caller(4321, 1000, 1001)])
def test_acknowledgement_message_is_built_field_for_field(caller: Caller | None) -> None:
    """The in-place acknowledgement equals the message built from keywords, byte for byte,
    and an all-zero caller is still present (pid 0: outside the agent's pid namespace)."""
    event = RuntimeEvent(9, "pipeline", "train.step", b"\x00{}", "2026-11-23T10:00:00Z", caller)
    digest, head = event_digest(event), b"\x07" * 48
    expected = agent_pb2.RecordEventResponse(
        event=agent_pb2.RuntimeEvent(
            sequence=9,
            domain="pipeline",
            operation="train.step",
            content=b"\x00{}",
            recorded_at="2026-11-23T10:00:00Z",
            digest=digest,
            caller=None
            if caller is None
            else agent_pb2.Caller(pid=caller.pid, uid=caller.uid, gid=caller.gid),
        ),
        log_head=head,
    )
    ack = _ack_pb(Written(event, digest, head))
    assert ack.SerializeToString() == expected.SerializeToString()
    assert ack.event.HasField("caller") is (caller is not None)
    assert _event_pb(event) == expected.event
