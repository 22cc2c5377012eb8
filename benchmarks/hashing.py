"""Artifact hashing against model_signing and against the hardware limit.

Three workloads are generated in a temporary directory: a model of 8 shard
files (2 GiB in all), one 2 GiB file, and 20,000 files of 4 KiB in 20
directories. The page cache is warmed, then each workload is hashed, in this
process and in turn, at least three times each:

- attestd: ``attestd.agent.artifacts.measure`` with the chosen configuration;
- model_signing: ``model_signing.hashing.Config`` with the same algorithm and
  serialization (its defaults otherwise);
- the limit: the same resources' bytes, already in memory, hashed by hashlib
  (or blake3 with its own threads) in one thread per core: no file system, no
  listing, no reading.

The medians are printed as a table, and last as one line of JSON with the
ratios: ``attestd_over_limit`` is attestd's throughput as a fraction of the
limit's, ``speedup_over_model_signing`` is model_signing's time over attestd's.

    make bench-hashing                  # or: python benchmarks/hashing.py --scale 0.01
    python benchmarks/hashing.py --algorithm blake3 --serialization shards
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import blake3
import model_signing.hashing

from attestd.agent.artifacts import ALGORITHMS, SERIALIZATIONS, HashingConfig, measure
from attestd.agent.artifacts.manifest import subject_digest

GiB = 1024**3
SHARDS = 8
SMALL_FILES = 20_000
SMALL_SIZE = 4096
SMALL_DIRS = 20
_BLOCK = os.urandom(16 * 1024 * 1024)


def _write(path: Path, size: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        written = 0
        while written < size:
            # A per-block prefix keeps blocks (and files) distinct.
            block = (seed.to_bytes(8, "little") + written.to_bytes(8, "little") + _BLOCK)[
                : size - written
            ]
            out.write(block)
            written += len(block)


def generate(root: Path, scale: float) -> dict[str, Path]:
    shards = root / "sharded-model"
    shard_size = max(1, int(2 * GiB * scale) // SHARDS)
    for index in range(SHARDS):
        _write(shards / f"model-{index + 1:05d}-of-{SHARDS:05d}.safetensors", shard_size, index)
    single = root / "single-file"
    _write(single / "model.safetensors", int(2 * GiB * scale), 100)
    small = root / "small-files"
    count = max(SMALL_DIRS, int(SMALL_FILES * scale))
    for index in range(count):
        target = small / f"d{index % SMALL_DIRS:02d}" / f"f{index:05d}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(index.to_bytes(8, "little") + _BLOCK[: SMALL_SIZE - 8])
    return {"8 shard files": shards, "one large file": single, "20k small files": small}


def warm(root: Path) -> tuple[int, int]:
    files = total = 0
    for path in root.rglob("*"):
        if path.is_file():
            with path.open("rb", buffering=0) as f:
                while chunk := f.read(64 * 1024 * 1024):
                    total += len(chunk)
            files += 1
    return files, total


def model_signing_config(config: HashingConfig) -> model_signing.hashing.Config:
    ms = model_signing.hashing.Config()
    if config.serialization == "files":
        return ms.use_file_serialization(hashing_algorithm=config.algorithm)
    return ms.use_shard_serialization(
        hashing_algorithm=config.algorithm, shard_size=config.shard_size
    )


def run_attestd(path: Path, config: HashingConfig) -> str:
    return measure(path, config=config).digest["sha256"]


def run_model_signing(path: Path, config: HashingConfig) -> str:
    from model_signing._signing.signing import Payload

    manifest = model_signing_config(config).hash(path)
    digest: str = Payload(manifest).statement.pb.subject[0].digest["sha256"]
    return digest


def load_resources(path: Path, config: HashingConfig) -> list[tuple[tuple[str, int], bytes]]:
    """Each resource's bytes in memory, with its sort key (path components, start)."""
    loaded: list[tuple[tuple[str, int], bytes]] = []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        data = file.read_bytes()
        key = file.relative_to(path).as_posix()
        if config.sharded:
            for start in range(0, len(data), config.shard_size):
                loaded.append(((key, start), data[start : start + config.shard_size]))
        else:
            loaded.append(((key, 0), data))
    loaded.sort(key=lambda item: (tuple(item[0][0].split("/")), item[0][1]))
    return loaded


def run_limit(resources: Sequence[bytes], config: HashingConfig, workers: int) -> str:
    """Hash in-memory resources on every core; returns the same subject digest."""
    algorithm = config.algorithm

    def one(data: bytes) -> bytes:
        if algorithm == "blake3":
            threads = blake3.blake3.AUTO if len(data) > 1024 * 1024 else 1
            return blake3.blake3(data, max_threads=threads).digest()
        if algorithm == "blake2":
            return hashlib.blake2b(data).digest()
        return hashlib.sha256(data).digest()

    # Contiguous groups per core, biggest resources spread first: no per-item
    # scheduling cost, which a real run cannot avoid.
    order = sorted(range(len(resources)), key=lambda i: -len(resources[i]))
    lanes: list[list[int]] = [[] for _ in range(workers)]
    loads = [0] * workers
    for i in order:
        lane = loads.index(min(loads))
        lanes[lane].append(i)
        loads[lane] += len(resources[i]) + 4096
    digests: list[bytes] = [b""] * len(resources)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda lane: [one(resources[i]) for i in lane], lanes)
        for lane, result in zip(lanes, results, strict=True):
            for i, digest in zip(lane, result, strict=True):
                digests[i] = digest
    return subject_digest(digests)


def timed(action: Callable[[], str]) -> tuple[float, str]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full sizes")
    parser.add_argument("--repeats", type=int, default=5, help="at least 3 for real figures")
    parser.add_argument("--algorithm", choices=ALGORITHMS, default="sha256")
    parser.add_argument("--serialization", choices=SERIALIZATIONS, default="files")
    args = parser.parse_args()
    config = HashingConfig(algorithm=args.algorithm, serialization=args.serialization)
    workers = os.cpu_count() or 1

    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        workloads = generate(Path(tmp), args.scale)
        for name, path in workloads.items():
            files, size = warm(path)
            resources = load_resources(path, config)
            data = [content for _, content in resources]
            runs: dict[str, list[float]] = {"attestd": [], "model_signing": [], "limit": []}
            digests: set[str] = set()
            for _ in range(max(1, args.repeats)):
                actions: dict[str, Callable[[], str]] = {
                    "attestd": partial(run_attestd, path, config),
                    "model_signing": partial(run_model_signing, path, config),
                    "limit": partial(run_limit, data, config, workers),
                }
                for label, action in actions.items():
                    elapsed, digest = timed(action)
                    runs[label].append(elapsed)
                    digests.add(digest)
            if len(digests) != 1:
                raise SystemExit(f"{name}: the three subject digests differ: {sorted(digests)}")
            median = {label: statistics.median(times) for label, times in runs.items()}
            rows[name] = {"files": files, "bytes": size, **median}

    print(
        f"{'workload':<18}{'files':>7}{'MiB':>8}{'attestd s':>11}{'m_s s':>9}{'limit s':>9}"
        f"{'attestd GB/s':>14}{'of limit':>10}{'vs m_s':>8}"
    )
    for name, row in rows.items():
        print(
            f"{name:<18}{row['files']:>7.0f}{row['bytes'] / 2**20:>8.0f}{row['attestd']:>11.3f}"
            f"{row['model_signing']:>9.3f}{row['limit']:>9.3f}"
            f"{row['bytes'] / row['attestd'] / 1e9:>14.2f}"
            f"{row['limit'] / row['attestd']:>10.2f}{row['model_signing'] / row['attestd']:>7.1f}x"
        )
    print(
        json.dumps(
            {
                "benchmark": "hashing",
                "algorithm": config.algorithm,
                "serialization": config.serialization,
                "scale": args.scale,
                "repeats": args.repeats,
                "cpus": workers,
                "workloads": {
                    name: {
                        "files": row["files"],
                        "bytes": row["bytes"],
                        "attestd_s": round(row["attestd"], 4),
                        "model_signing_s": round(row["model_signing"], 4),
                        "limit_s": round(row["limit"], 4),
                        "attestd_over_limit": round(row["limit"] / row["attestd"], 3),
                        "speedup_over_model_signing": round(
                            row["model_signing"] / row["attestd"], 2
                        ),
                    }
                    for name, row in rows.items()
                },
            }
        )
    )


if __name__ == "__main__":
    main()
