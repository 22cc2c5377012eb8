"""`make demo-kfp`'s script: a real kfp.local run verified, a tampered one refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("kfp")
pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[3]


def test_kfp_demo_verifies_the_run_and_refuses_the_tampered_one() -> None:
    completed = subprocess.run(
        [sys.executable, str(REPO / "demo" / "kfp_demo.py")],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    out = completed.stdout
    assert completed.returncode == 0, out + completed.stderr
    verdicts = [line for line in out.splitlines() if line.startswith("chain kfp-demo run ")]
    assert len(verdicts) == 2, out
    assert verdicts[0].endswith(": VERIFIED")
    assert verdicts[1].endswith(": NOT VERIFIED (artifact_substituted)")
    # The derived layout: train and evaluate both after prepare, package after both.
    assert 'name = "package"\nafter = ["evaluate", "train"]' in out
    refused = [line.split() for line in out.splitlines() if line.startswith("package ")]
    assert [row[-1] for row in refused] == ["ok", "artifact_substituted"]
    assert "files kept in" not in completed.stderr
    assert out.rstrip().splitlines()[-1] == "kfp demo: OK"
