"""benchmarks/gpu_hashing.py: a clear exit without a GPU, a table and JSON with one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from attestd.agent.artifacts.gpu import cuda

BENCHMARK = Path(__file__).parents[4] / "benchmarks" / "gpu_hashing.py"


def test_gpu_benchmark_runs_or_says_why_not(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "--max-size", "64MiB", "--repeats", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        env={"BENCH_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    if not cuda.available():
        assert result.returncode == 2
        assert "no GPU to benchmark: GPU hashing is unavailable" in result.stderr
        return
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["benchmark"] == "gpu_hashing"
    row = summary["sizes"][str(64 << 20)]
    assert row["gpu_gbps"] > 0 and row["cpu_gbps"] > 0 and row["file_gbps"] > 0
