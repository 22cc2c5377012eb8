"""attestctl measure: --local with progress and model_signing's manifest; -o through the agent."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import model_signing.hashing
import pytest
from google.protobuf import json_format
from model_signing._signing.signing import Payload

from attestd import cli
from attestd.agent.artifacts import Progress
from attestd.cli.agent import ProgressBar
from tests.harness import AgentProcess


def model(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "config.json").write_bytes(b"{}")
    (root / "sub" / "w.bin").write_bytes(os.urandom(2 * 1024 * 1024 + 1))
    (root / "empty").write_bytes(b"")
    return root


@pytest.mark.parametrize(
    ("algorithm", "serialization"),
    [("sha256", "files"), ("blake2", "shards"), ("blake3", "files")],
)
def test_local_writes_model_signings_statement(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], algorithm: str, serialization: str
) -> None:
    tree = model(tmp_path / "llama")
    out = tmp_path / "manifest.json"
    argv = ["measure", "--local", str(tree), "-o", str(out), "--algorithm", algorithm]
    assert cli.main([*argv, "--serialization", serialization]) == 0
    config = model_signing.hashing.Config()
    if serialization == "files":
        config.use_file_serialization(hashing_algorithm=algorithm)  # type: ignore[arg-type]
    else:
        config.use_shard_serialization(hashing_algorithm=algorithm)  # type: ignore[arg-type]
    expected = json_format.MessageToDict(Payload(config.hash(tree)).statement.pb)
    written = json.loads(out.read_text())
    assert written["subject"] == expected["subject"]
    assert written["predicate"]["resources"] == expected["predicate"]["resources"]
    printed = json.loads(capsys.readouterr().out)
    assert printed[0]["digest"] == expected["subject"][0]["digest"]
    assert printed[0]["fileCount"] == 3


def test_local_with_several_paths_writes_a_list(tmp_path: Path) -> None:
    one = model(tmp_path / "one")
    (tmp_path / "two.bin").write_bytes(b"two")
    out = tmp_path / "m.json"
    assert (
        cli.main(["measure", "--local", str(one), str(tmp_path / "two.bin"), "-o", str(out)]) == 0
    )
    statements = json.loads(out.read_text())
    assert [s["subject"][0]["name"] for s in statements] == ["one", "two.bin"]


def test_local_refusal_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["measure", "--local", str(tmp_path / "missing")]) == cli.EXIT_USAGE
    assert "does not exist" in capsys.readouterr().err


def test_hashing_options_need_local(tmp_path: Path) -> None:
    assert cli.main(["measure", str(tmp_path), "--algorithm", "blake3"]) == cli.EXIT_USAGE


def test_no_progress_bar_when_stderr_is_not_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["measure", "--local", str(model(tmp_path / "m"))]) == 0
    assert capsys.readouterr().err == ""


def test_progress_bar_shows_files_bytes_and_rate() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream)
    bar(Progress(0, 10, 0, 2048, False, 0.1))  # quick runs stay silent
    assert stream.getvalue() == ""
    bar(Progress(5, 10, 1024 * 1024, 2 * 1024 * 1024, True, 1.0))
    bar.close()
    line = stream.getvalue()
    assert line.startswith("\r[") and line.endswith("\n")
    assert "5/10 files" in line and "1.0 MiB/2.0 MiB" in line and "1.0 MiB/s" in line
    assert "#" * 12 + "." * 12 in line


@pytest.mark.slow
def test_agent_path_writes_the_agents_digests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agent = AgentProcess(tmp_path / "agent")
    agent.models.mkdir(parents=True)
    (agent.models / "w.bin").write_bytes(b"weights")
    agent.start()
    try:
        out = tmp_path / "digests.json"
        socket = str(agent.socket_path)
        path = str(agent.models / "w.bin")
        assert cli.main(["measure", path, "--socket", socket, "-o", str(out)]) == 0
    finally:
        agent.stop()
    written = json.loads(out.read_text())
    assert written == json.loads(capsys.readouterr().out)
    assert written[0]["digest"] == {"sha256": hashlib.sha256(b"weights").hexdigest()}
    assert written[0]["logSequence"] >= 0
