"""Starting the agent: one agent per state and per address, and every refusal is one JSON line.

Each refused start must exit 1 with exactly one ``cannot start`` record naming
its reason, print no Python traceback, and leave nothing listening.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.agent.pki import write_pki
from tests.harness import AgentProcess


@dataclass
class SharedStateAgent(AgentProcess):
    """An agent with its own socket and port but another agent's state directory."""

    shared_state: Path | None = None

    @property
    def state_dir(self) -> Path:
        return self.shared_state or self.workdir / "state"


def start_refused(agent: AgentProcess) -> dict[str, object]:
    """Run ``agent`` to its refusal; return its one ``cannot start`` record."""
    agent.write_config()
    completed = subprocess.run(
        [sys.executable, "-m", "attestd.agent.main", "--config", str(agent.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 1, completed.stderr
    assert "Traceback" not in completed.stderr, completed.stderr
    records = [json.loads(line) for line in completed.stderr.splitlines() if line.startswith("{")]
    refusals = [r for r in records if r["message"] == "cannot start"]
    assert len(refusals) == 1, completed.stderr
    # gRPC's own debug records (the harness logs at debug) may follow it.
    assert [r for r in records if r["level"] != "debug"][-1] == refusals[0]
    return refusals[0]


@pytest.fixture
def running(tmp_path: Path) -> Iterator[AgentProcess]:
    agent = AgentProcess(tmp_path / "first")
    agent.start()
    yield agent
    if agent.process is not None:
        assert agent.stop() == 0


def test_a_second_agent_on_the_same_state_dir_is_refused_naming_the_holder(
    running: AgentProcess, tmp_path: Path
) -> None:
    second = SharedStateAgent(tmp_path / "second", shared_state=running.state_dir)
    refusal = start_refused(second)
    assert refusal["reason"] == "state_dir_locked"
    assert running.process is not None
    assert refusal["holder_pid"] == running.process.pid
    assert str(running.process.pid) in str(refusal["error"])
    assert not second.socket_path.exists()
    with running.pipeline() as client:
        assert client.info().serving  # the holder is untouched


def test_the_state_lock_does_not_outlive_a_killed_agent(
    running: AgentProcess, tmp_path: Path
) -> None:
    with running.pipeline() as client:
        client.record("pipeline.test", "before-kill", b"kept")
    running.kill()
    successor = SharedStateAgent(tmp_path / "successor", shared_state=running.state_dir)
    successor.start()
    try:
        with successor.pipeline() as client:
            assert client.info().serving
            events = client.runtime_log().events
        assert [e.operation for e in events] == ["before-kill"]
    finally:
        assert successor.stop() == 0


def test_a_second_agent_on_the_same_tcp_address_is_refused(
    running: AgentProcess, tmp_path: Path
) -> None:
    second = AgentProcess(tmp_path / "second", port=running.port)
    refusal = start_refused(second)
    assert refusal["reason"] == "listen_failed"
    assert str(running.port) in str(refusal["error"])
    assert not second.socket_path.exists(), "a refused agent leaves no socket behind"
    for _ in range(4):  # every verifier connection still reaches the first agent
        with running.verifier() as client:
            assert client.info().agent_key_id == _key_id(running)


def _key_id(agent: AgentProcess) -> str:
    with agent.pipeline() as client:
        return client.info().agent_key_id


def _garbage(path: Path) -> None:
    path.write_bytes(b"-----BEGIN GARBAGE-----\nnot base64 at all\n")


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _key_of_another_certificate(path: Path) -> None:
    path.write_bytes((path.parent / "client.key").read_bytes())


TLS_CASES: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "garbage key": ("server.key", _garbage, "tls_invalid"),
    "empty key": ("server.key", _empty, "tls_invalid"),
    "key of another certificate": ("server.key", _key_of_another_certificate, "tls_invalid"),
    "garbage client CA": ("ca.pem", _garbage, "tls_invalid"),
    "empty client CA": ("ca.pem", _empty, "tls_invalid"),
    "garbage certificate": ("server.pem", _garbage, "tls_invalid"),
    "key is a directory": ("server.key", _directory, "listen_failed"),
    "client CA is a directory": ("ca.pem", _directory, "listen_failed"),
}


@pytest.mark.parametrize("case", sorted(TLS_CASES))
def test_bad_tls_files_are_refused_before_any_listener_serves(case: str, tmp_path: Path) -> None:
    name, spoil, reason = TLS_CASES[case]
    agent = AgentProcess(tmp_path)
    agent.write_config()
    spoil(agent.tls / name)
    refusal = start_refused(agent)
    assert refusal["reason"] == reason
    assert name in str(refusal["error"])
    # The Unix socket was never bound, so no pipeline call was ever answered.
    assert not agent.socket_path.exists()
    assert not agent.state_dir.joinpath("runtime-log.jsonl").exists()


@pytest.mark.parametrize("weak", ["server", "ca"])
def test_a_weak_server_key_or_client_ca_is_refused_at_start(weak: str, tmp_path: Path) -> None:
    agent = AgentProcess(tmp_path)
    write_pki(agent.tls, ca_rsa_bits=1024 if weak == "ca" else None,
              server_rsa_bits=1024 if weak == "server" else None)  # fmt: skip
    refusal = start_refused(agent)
    assert refusal["reason"] == "tls_key_too_weak"
    assert "1024 bits" in str(refusal["error"])
    assert not agent.socket_path.exists()


def test_state_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    agent = AgentProcess(tmp_path)
    agent.state_dir.write_text("not a directory")
    refusal = start_refused(agent)
    assert refusal["reason"] == "state_dir_invalid"
    assert str(agent.state_dir) in str(refusal["error"])


def test_state_dir_that_cannot_be_created_is_refused(tmp_path: Path) -> None:
    agent = SharedStateAgent(tmp_path, shared_state=tmp_path / "file" / "state")
    (tmp_path / "file").write_text("a file where a directory must be")
    refusal = start_refused(agent)
    assert refusal["reason"] == "state_dir_invalid"


def test_socket_parent_that_is_a_file_is_refused(tmp_path: Path) -> None:
    agent = AgentProcess(tmp_path)
    agent.socket_path.parent.write_text("a file where the socket's directory must be")
    refusal = start_refused(agent)
    assert refusal["reason"] == "listen_failed"
    assert str(agent.socket_path.parent) in str(refusal["error"])


def test_port_in_use_is_refused_and_the_socket_is_not_left_behind(tmp_path: Path) -> None:
    agent = AgentProcess(tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", agent.port))
        squatter.listen()
        refusal = start_refused(agent)
    assert refusal["reason"] == "listen_failed"
    assert not agent.socket_path.exists()
