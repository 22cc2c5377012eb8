"""Peer credentials through a real agent: who is let in, and who each event says called.

The relay on its own is tests/agent/test_peercred.py.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from attestd.agent.peercred import Caller
from attestd.client import AgentCallError, AgentClient
from attestd.evidence import (
    event_digest,
    event_from_json,
    parse_envelope,
    parse_statement,
    replay,
)
from attestd.evidence.provenance import StageAttestation, StageProvenance
from tests.harness import AgentProcess, serving

ME = Caller(os.getpid(), os.getuid(), os.getgid())
NONCE = bytes(range(32))


def _caller(event: object) -> Caller | None:
    """The caller of a RuntimeEvent message, None where it has none."""
    if not event.HasField("caller"):  # type: ignore[attr-defined]
        return None
    c = event.caller  # type: ignore[attr-defined]
    return Caller(c.pid, c.uid, c.gid)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    process = AgentProcess(tmp_path_factory.mktemp("peer"))
    process.write_config()
    (process.models / "in.bin").write_bytes(b"input")
    (process.models / "out.bin").write_bytes(b"output")
    yield from serving(process)


def _listening(agent: AgentProcess) -> dict[str, object]:
    for line in agent.log_path.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("message") == "listening" and entry.get("role") == "pipeline":
            return dict(entry)
    raise AssertionError("the agent logged no pipeline listener")


def test_record_event_names_this_process_and_the_digest_binds_it(agent: AgentProcess) -> None:
    with agent.pipeline() as client:
        response = client.record("pipeline.peer", "step", b"{}")
        page = client.runtime_log(response.event.sequence, 1)
    assert _caller(response.event) == ME
    [logged] = page.events
    assert _caller(logged) == ME
    assert logged.digest == response.event.digest


def test_measure_and_stage_events_name_this_process_in_log_evidence_and_provenance(
    agent: AgentProcess,
) -> None:
    with agent.pipeline() as client:
        start = client.info().log_length
        [measured] = client.measure([str(agent.models / "in.bin")])
        begun = client.begin_stage("peer", "train", inputs=[str(agent.models / "in.bin")])
        attestation = client.end_stage([str(agent.models / "out.bin")])
        envelope = client.evidence(NONCE)
        page = client.runtime_log(start)
    assert _caller(begun.event) == ME
    assert len(page.events) == 5  # measured, measured (input), begin, measured (output), end
    assert [_caller(e) for e in page.events] == [ME] * 5
    assert page.events[0].sequence == measured.log_sequence

    # Evidence carries the callers, and the log replays with them to the bound head.
    statement = parse_statement(parse_envelope(envelope).payload)
    events = statement.predicate.runtime_log
    assert [e.caller for e in events[start:]] == [ME] * 5
    assert replay(events) == statement.predicate.binding.log_head
    assert [event_digest(e) for e in events[start:]] == [e.digest for e in page.events]

    # The stage's provenance byproduct (its log segment) names the caller of each event.
    provenance_payload = parse_envelope(StageAttestation.from_json(attestation).provenance).payload
    provenance = StageProvenance.from_statement(json.loads(provenance_payload))
    assert [e.caller for e in provenance.log_segment] == [ME] * 3  # begin, output, end
    raw = json.loads(provenance_payload)["predicate"]["runDetails"]["byproducts"][0]["content"]
    segment = json.loads(base64.b64decode(raw))
    assert segment[0]["caller"] == {"pid": ME.pid, "uid": ME.uid, "gid": ME.gid}
    assert event_from_json(segment[0]).caller == ME


def test_attestctl_log_shows_the_caller(
    agent: AgentProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    from attestd.cli import main

    with agent.pipeline() as client:
        sequence = client.record("pipeline.peer", "cli", b"").event.sequence
    capsys.readouterr()
    assert main(["log", "--socket", str(agent.socket_path), "--start", str(sequence)]) == 0
    shown = json.loads(capsys.readouterr().out)["events"][0]
    assert shown["caller"] == {"pid": ME.pid, "uid": ME.uid, "gid": ME.gid}


def test_the_verifier_listener_still_serves_and_reads_the_callers(agent: AgentProcess) -> None:
    with agent.pipeline() as client:
        sequence = client.record("pipeline.peer", "for-verifier", b"").event.sequence
    with agent.verifier() as verifier:
        page = verifier.runtime_log(sequence, 1)
        assert verifier.info().serving
        with pytest.raises(AgentCallError) as refused:
            verifier.record("pipeline.peer", "from-verifier", b"")
    assert _caller(page.events[0]) == ME
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED


class _Forger(threading.Thread):
    """Relays a local socket to the agent's internal socket from a forged address.

    It does what the agent's relay does, but with ids of its choosing: a
    process that could reach the internal socket must still not be believed.
    """

    def __init__(self, listen: Path, target: str, address: str | None) -> None:
        super().__init__(daemon=True)
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(listen))
        self.server.listen()
        self.target = target
        self.address = address
        self.bound: list[str] = []  # the addresses the forged connections came from

    def run(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            if self.address is not None:
                self.bound.append(_bind_look_alike(upstream, self.address))
            upstream.connect(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def _bind_look_alike(sock: socket.socket, address: str) -> str:
    """Bind ``sock`` to the abstract ``address``, or to the same claim made another way.

    Abstract names are machine-wide (per network namespace), so a fixed one such
    as ``@attestd-peer/1/0/0`` is held while another test run forges with it. Then,
    once the name is seen held, ``sock`` binds ``address`` followed by a NUL and a
    unique tail: its printable part is the same claim (same ids, no nonce), which
    gRPC either reports cut at the NUL (the very same peer string) or in full
    (still no nonce); the agent must refuse it either way.
    """
    try:
        sock.bind(address)
        return address
    except OSError as err:
        if err.errno != errno.EADDRINUSE:
            raise
    listed = "@" + address[1:].replace("\0", "@")
    held = {line.split()[-1] for line in Path("/proc/net/unix").read_text().splitlines()[1:]}
    assert listed in held, f"{address!r} is in use, yet no socket holds it"
    alternative = f"{address}\0{secrets.token_hex(8)}"
    sock.bind(alternative)
    return alternative


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@pytest.mark.parametrize(
    "address",
    [
        None,  # unbound: gRPC sees "unix:"
        f"\0attestd-peer/1/0/0/{secrets.token_hex(16)}",  # the form, with ids of our choosing
        "\0attestd-peer/1/0/0",
    ],
)
def test_a_call_that_bypasses_the_relay_is_refused_whatever_address_it_claims(
    agent: AgentProcess, tmp_path: Path, address: str | None
) -> None:
    internal = str(_listening(agent)["internal_socket"])
    forger = _Forger(tmp_path / "f.sock", internal, address)
    forger.start()
    try:
        with (
            AgentClient.unix(tmp_path / "f.sock", timeout=10) as client,
            pytest.raises(AgentCallError) as refused,
        ):
            client.record("pipeline.peer", "forged", b"")
    finally:
        forger.server.close()
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert refused.value.agent_reason == "peer_unknown"
    if address is not None:  # the call really came from the claimed (look-alike) address
        assert forger.bound and all(bound.startswith(address) for bound in forger.bound)


def test_a_peer_not_on_the_allow_list_is_refused_and_the_verifier_is_unaffected(
    tmp_path: Path,
) -> None:
    agent = AgentProcess(tmp_path, extra_config=f"\n[pipeline]\nallowed_uids = [{ME.uid + 1}]\n")
    agent.start()
    try:
        with (
            AgentClient.unix(agent.socket_path, timeout=5) as client,
            pytest.raises(AgentCallError) as refused,
        ):
            client.record("pipeline.peer", "refused", b"")
        with agent.verifier() as verifier:
            assert verifier.info().log_length == 0  # nothing was recorded
    finally:
        assert agent.stop() == 0
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE
    refusals = [
        json.loads(line)
        for line in agent.log_path.read_text().splitlines()
        if "refused a pipeline connection" in line
    ]
    assert refusals
    assert {(r["pid"], r["uid"], r["gid"]) for r in refusals} == {(ME.pid, ME.uid, ME.gid)}
    assert f"uid {ME.uid} is not in [pipeline] allowed_uids" in refusals[0]["why"]


def test_a_stopped_agent_leaves_neither_socket_behind(tmp_path: Path) -> None:
    agent = AgentProcess(tmp_path, extra_config=f"\n[pipeline]\nallowed_gids = [{ME.gid}]\n")
    agent.start()
    with agent.pipeline() as client:
        assert _caller(client.record("pipeline.peer", "allowed", b"").event) == ME
        internal = Path(str(_listening(agent)["internal_socket"]))
        assert internal.is_socket()
        assert (internal.parent.stat().st_mode & 0o777) == 0o700
        assert agent.stop() == 0
    assert internal == agent.state_dir / "grpc.sock"
    assert not agent.socket_path.exists()
    assert not internal.exists()


def test_a_killed_agents_internal_socket_is_replaced_on_the_next_start(tmp_path: Path) -> None:
    agent = AgentProcess(tmp_path)
    agent.start()
    agent.kill()
    assert (agent.state_dir / "grpc.sock").is_socket()  # left behind, as after a crash
    agent.start()
    try:
        with agent.pipeline() as client:
            assert _caller(client.record("pipeline.peer", "again", b"").event) == ME
    finally:
        assert agent.stop() == 0
    assert not (agent.state_dir / "grpc.sock").exists()
