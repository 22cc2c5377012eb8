"""`make demo-pipeline`'s script: four stages on four agents, one chain verified, four refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_pipeline_demo_verifies_the_chain_and_refuses_each_tampered_run() -> None:
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
    assert len(verdicts) == 5, out
    assert verdicts[0].endswith(": VERIFIED")
    assert verdicts[1].endswith(": NOT VERIFIED (stage_missing)")
    assert verdicts[2].endswith(": NOT VERIFIED (artifact_substituted)")
    # The software rules, on stacks the agents measured from the stage processes:
    # torch 2.5.0 planted on train's PYTHONPATH, package run by a patched interpreter.
    assert verdicts[3].endswith(": NOT VERIFIED (package_version_not_allowed)")
    assert verdicts[4].endswith(": NOT VERIFIED (executable_not_allowed)")
    assert (
        "stage train: package_version_not_allowed: torch 2.5.0 is a denied version (torch==2.5.0)"
        in out
    )
    assert "stage package: executable_not_allowed: the stage ran /" in out
    assert "/envs/patched/bin/python3 (sha256:" in out
    # Only the offending stage is refused: the other rows of those chains stay ok.
    table_rows = [line.split() for line in out.splitlines() if line.startswith("train ")]
    assert [row[-1] for row in table_rows].count("package_version_not_allowed") == 1
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
