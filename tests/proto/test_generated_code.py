"""The committed gRPC code is what proto/generate.sh makes from agent.proto today."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PROTO_DIR = REPO_ROOT / "proto"
GENERATED = (
    "agent_pb2.py",
    "agent_pb2.pyi",
    "agent_pb2_grpc.py",
    "verifier_pb2.py",
    "verifier_pb2.pyi",
    "verifier_pb2_grpc.py",
)


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("proto")
    result = subprocess.run(
        ["bash", str(PROTO_DIR / "generate.sh"), str(out)],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"proto/generate.sh failed:\n{result.stderr}"
    return out / "attestd" / "v1"


@pytest.mark.parametrize("name", GENERATED)
def test_committed_generated_code_matches_the_proto(regenerated: Path, name: str) -> None:
    committed = PROTO_DIR / "attestd" / "v1" / name
    fresh = regenerated / name
    assert fresh.is_file(), f"proto/generate.sh did not produce {name}"
    assert committed.read_bytes() == fresh.read_bytes(), (
        f"proto/attestd/v1/{name} is out of date with agent.proto; run `make proto` "
        "and commit the result"
    )
