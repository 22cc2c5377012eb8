"""benchmarks/hashing.py runs and prints its table and a last line of JSON (format only)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).parents[3] / "benchmarks" / "hashing.py"


def test_hashing_benchmark_prints_a_table_then_json_ratios(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "--scale", "0.0005", "--repeats", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        env={"BENCH_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[:2] == ["workload", "files"]
    assert len(lines) == 5
    summary = json.loads(lines[-1])
    assert summary["benchmark"] == "hashing"
    assert (summary["algorithm"], summary["serialization"]) == ("sha256", "files")
    assert set(summary["workloads"]) == {"8 shard files", "one large file", "20k small files"}
    for row in summary["workloads"].values():
        assert set(row) >= {
            "attestd_s",
            "model_signing_s",
            "limit_s",
            "attestd_over_limit",
            "speedup_over_model_signing",
        }
        assert all(isinstance(row[k], (int, float)) and row[k] > 0 for k in row)
    assert list(tmp_path.iterdir()) == []  # the workloads were removed
