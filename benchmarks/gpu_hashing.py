"""GPU BLAKE3 against the blake3 package on every CPU core, over the same bytes.

For each size from 64 MiB to 16 GiB (those that fit in GPU memory), random
bytes are made on the GPU and copied to host memory, then hashed, at least
three times each:

- gpu: ``cuda.blake3`` over the buffer in GPU memory (in place, no copies);
- gpu file: ``cuda.blake3_file`` over the same bytes written to a file in the
  page cache (read into pinned host memory, copied while the GPU hashes);
  only sizes up to ``--file-max``;
- cpu: ``blake3.blake3(max_threads=AUTO)`` over the bytes in host memory.

All digests must agree. The medians are printed as GB/s (10^9 bytes/s) with
the ratios, and last as one line of JSON; ``meets_target`` says whether the
GPU reached 200 GB/s on every buffer of 1 GiB or more. Without CuPy or a
CUDA device it exits at once with status 2 and says what is missing.

    make bench-gpu            # or: python benchmarks/gpu_hashing.py --max-size 1GiB
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3

from attestd.agent.artifacts.gpu import GpuUnavailableError, cuda

MiB = 1 << 20
GiB = 1 << 30
SIZES = [64 * MiB, 256 * MiB, 1 * GiB, 4 * GiB, 16 * GiB]
TARGET_GBPS = 200.0


def parse_size(text: str) -> int:
    units = {"KiB": 1 << 10, "MiB": MiB, "GiB": GiB}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text)


def timed(action: Callable[[], bytes], repeats: int) -> tuple[float, bytes]:
    action()  # warm: kernel build, allocator, page cache
    times = []
    digest = b""
    for _ in range(repeats):
        start = time.perf_counter()
        digest = action()
        times.append(time.perf_counter() - start)
    return statistics.median(times), digest


def cpu_blake3(data: Any) -> bytes:
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    hasher.update(memoryview(data))
    return hasher.digest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-size", type=parse_size, default=16 * GiB)
    parser.add_argument("--file-max", type=parse_size, default=4 * GiB)
    parser.add_argument("--repeats", type=int, default=3, help="at least 3 for real figures")
    args = parser.parse_args()
    try:
        device_name = cuda.describe()
        cuda.blake3(b"")
    except GpuUnavailableError as exc:
        print(f"gpu_hashing: no GPU to benchmark: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    import cupy

    rows: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        for size in (s for s in SIZES if s <= args.max_size):
            free, _ = cupy.cuda.runtime.memGetInfo()
            if size + size // 16 > free:
                print(f"{size / GiB:g} GiB: skipped, {free / GiB:.1f} GiB free on the GPU")
                continue
            device = cupy.random.default_rng(size).integers(0, 256, size=size, dtype=cupy.uint8)
            host = device.get()
            row: dict[str, float] = {}
            digests = set()
            row["gpu_s"], digest = timed(lambda d=device: cuda.blake3(d), args.repeats)
            digests.add(digest)
            row["cpu_s"], digest = timed(lambda h=host: cpu_blake3(h), args.repeats)
            digests.add(digest)
            if size <= args.file_max:
                path = Path(tmp) / "model.bin"
                host.tofile(path)
                row["file_s"], digest = timed(lambda p=path: cuda.blake3_file(p), args.repeats)
                digests.add(digest)
                path.unlink()
            if len(digests) != 1:
                raise SystemExit(f"{size} bytes: the digests differ: {sorted(digests)}")
            rows[size] = row
            del device, host
            cupy.get_default_memory_pool().free_all_blocks()

    def gbps(size: int, seconds: float | None) -> float | None:
        return None if seconds is None else size / seconds / 1e9

    print(f"device: {device_name}; cpus: {os.cpu_count()}")
    print(f"{'size':>9}{'gpu GB/s':>11}{'file GB/s':>11}{'cpu GB/s':>10}{'gpu/cpu':>9}")
    for size, row in rows.items():
        file_gbps = gbps(size, row.get("file_s"))
        file_text = f"{file_gbps:>11.1f}" if file_gbps is not None else f"{'-':>11}"
        print(
            f"{size / GiB:>8g}G{gbps(size, row['gpu_s']):>11.1f}{file_text}"
            f"{gbps(size, row['cpu_s']):>10.1f}{row['cpu_s'] / row['gpu_s']:>8.1f}x"
        )
    big = [gbps(s, r["gpu_s"]) or 0.0 for s, r in rows.items() if s >= GiB]
    print(
        json.dumps(
            {
                "benchmark": "gpu_hashing",
                "device": device_name,
                "cpus": os.cpu_count(),
                "repeats": args.repeats,
                "target_gbps": TARGET_GBPS,
                "meets_target": bool(big) and min(big) >= TARGET_GBPS,
                "sizes": {
                    str(size): {
                        "gpu_gbps": round(gbps(size, row["gpu_s"]) or 0.0, 2),
                        "file_gbps": round(gbps(size, row.get("file_s")) or 0.0, 2),
                        "cpu_gbps": round(gbps(size, row["cpu_s"]) or 0.0, 2),
                        "gpu_over_cpu": round(row["cpu_s"] / row["gpu_s"], 2),
                        "file_over_cpu": round(row["cpu_s"] / row["file_s"], 2)
                        if "file_s" in row
                        else None,
                    }
                    for size, row in rows.items()
                },
            }
        )
    )


if __name__ == "__main__":
    main()
