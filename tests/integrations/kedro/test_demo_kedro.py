"""`make demo-kedro`'s script: one run verified, a swapped model refused, a failed node aborted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("kedro")
pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[3]


def test_the_kedro_demo_verifies_one_run_and_refuses_the_others() -> None:
    completed = subprocess.run(
        [sys.executable, str(REPO / "demo" / "kedro_demo.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = completed.stdout
    assert completed.returncode == 0, out + completed.stderr
    verdicts = [line for line in out.splitlines() if line.startswith("chain kedro-attested run ")]
    assert len(verdicts) == 2, out
    assert verdicts[0].endswith(": VERIFIED")
    assert verdicts[1].endswith(": NOT VERIFIED (artifact_substituted)")
    assert "attested stages: ['evaluate', 'prepare']; train's stage was aborted" in out
    assert out.splitlines()[-1] == "kedro demo: OK"
