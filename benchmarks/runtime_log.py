"""What durability costs: attestd's record path against a bare fsync'd append.

attestd acknowledges an event only after it is appended and fsynced and the
runtime register is extended (on the simulated TDX backend, an atomic
fsync'd state-file rewrite). The baseline is the least any durable log can
do: write the same encoded line with os.write and fsync it. Both run in this
process on the same disk; the ratio is what to watch, not the absolute times.

    make bench-runtime-log            # or: python benchmarks/runtime_log.py --events 200
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from attestd.agent.runtime_log_store import RuntimeLogStore
from attestd.evidence import RuntimeEvent, canonical_json, event_digest, event_to_json, now_rfc3339
from attestd.tee.tdx.simulated import SimulatedTdxBackend


def _event(sequence: int) -> RuntimeEvent:
    return RuntimeEvent(
        sequence=sequence,
        domain="pipeline.bench",
        operation="step",
        content=b'{"loss": 0.125, "epoch": 3}',
        recorded_at=now_rfc3339(),
    )


def attestd_record(directory: Path, events: int) -> float:
    backend = SimulatedTdxBackend.open(directory / "state")
    store = RuntimeLogStore.open(directory / "runtime-log.jsonl")
    start = time.perf_counter()
    for sequence in range(events):
        event = _event(sequence)
        store.append(event)
        backend.extend_runtime_register(event_digest(event))
    elapsed = time.perf_counter() - start
    store.close()
    return elapsed


def baseline_fsync_append(directory: Path, events: int) -> float:
    fd = os.open(directory / "baseline.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    lines = [canonical_json(event_to_json(_event(i))) + b"\n" for i in range(events)]
    start = time.perf_counter()
    for line in lines:
        os.write(fd, line)
        os.fsync(fd)
    elapsed = time.perf_counter() - start
    os.close(fd)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    runs: dict[str, list[float]] = {"attestd": [], "baseline": []}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
            runs["attestd"].append(attestd_record(Path(tmp), args.events))
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
            runs["baseline"].append(baseline_fsync_append(Path(tmp), args.events))

    median = {name: statistics.median(times) for name, times in runs.items()}
    per_event_us = {name: value / args.events * 1e6 for name, value in median.items()}
    rate = {name: args.events / value for name, value in median.items()}
    print(f"{'path':<34}{'median µs/event':>18}{'events/s':>12}")
    labels = {"attestd": "attestd (append+fsync+extend)", "baseline": "baseline (write+fsync)"}
    for name, label in labels.items():
        print(f"{label:<34}{per_event_us[name]:>18.1f}{rate[name]:>12.0f}")
    print(
        json.dumps(
            {
                "benchmark": "runtime_log",
                "events": args.events,
                "repeats": args.repeats,
                "attestd_us_per_event": round(per_event_us["attestd"], 1),
                "baseline_us_per_event": round(per_event_us["baseline"], 1),
                "attestd_over_baseline_time": round(median["attestd"] / median["baseline"], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
