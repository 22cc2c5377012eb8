"""`make demo`'s script, end to end: agent process, pipeline step, mTLS appraisal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_runs_end_to_end_and_is_affirming() -> None:
    completed = subprocess.run(
        [sys.executable, str(REPO / "demo" / "run_demo.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "appraisal AFFIRMING" in completed.stderr
    assert '"status": "affirming"' in completed.stdout
    assert "SIMULATED" in completed.stdout
