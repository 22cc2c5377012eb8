"""`make demo-pipeline`'s script: four stages on four agents, one chain verified, two refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_pipeline_demo_verifies_the_chain_and_refuses_a_skipped_and_a_swapped_run() -> None:
    completed = subprocess.run(
        [sys.executable, str(REPO / "demo" / "pipeline_demo.py")],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    out = completed.stdout
    assert completed.returncode == 0, out + completed.stderr
    verdicts = [line for line in out.splitlines() if line.startswith("chain llm-demo run ")]
    assert len(verdicts) == 3, out
    assert verdicts[0].endswith(": VERIFIED")
    assert verdicts[1].endswith(": NOT VERIFIED (stage_missing)")
    assert verdicts[2].endswith(": NOT VERIFIED (artifact_substituted)")
    # Each stage ran as its own process on its own agent, on both simulated TEEs.
    for stage in ("prepare", "train", "quantize", "package"):
        assert f"agents/{stage}/run/attestd.sock" in out
    assert out.count("simulated TDX ") == 2
    assert out.count("simulated SEV-SNP ") == 2
    assert "chain: stages: stage_missing: no attestation of stage(s) quantize" in out
    assert "-> run 1: verified, as expected" in out
    assert "demo-pipeline: OK" in out
    # Temporary files are kept only on failure.
    assert "files kept in" not in completed.stderr
