"""`make demo`'s script, end to end on both simulated TEEs: agent, pipeline step, mTLS appraisal."""

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
    # Once on each simulated TEE, and the results say which.
    assert completed.stderr.count("appraisal AFFIRMING") == 2
    assert completed.stdout.count('"status": "affirming"') == 2
    assert '"tee": "tdx"' in completed.stdout
    assert '"tee": "sev-snp"' in completed.stdout
    assert "OK on SIMULATED TDX and SIMULATED SEV-SNP" in completed.stdout
