"""The digest cache (hits, misses on each key component, corruption) and progress reports."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import pytest

from attestd.agent.artifacts import (
    CacheKey,
    DigestCache,
    HashingConfig,
    Progress,
    measure,
)

OLD_NS = 1_000_000_000 * 1_000_000_000  # 2001-09-09, long before any test runs


def old_file(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    os.utime(path, ns=(OLD_NS, OLD_NS))
    return path


def test_hit_returns_the_remembered_digest_without_reading(tmp_path: Path) -> None:
    target = old_file(tmp_path / "model" / "w.bin", b"weights")
    cache = DigestCache(tmp_path / "state" / "cache.json", racy_window_ns=0)
    first = measure(tmp_path / "model", cache=cache)
    assert (cache.hits, cache.misses) == (0, 1)
    assert (tmp_path / "state" / "cache.json").stat().st_mode & 0o777 == 0o600
    # Poison the entry: a hit reports it, which proves the file was not read
    # (and is exactly the trust the cache asks for).
    key = CacheKey.of(os.stat(target))
    cache.store(key, "sha256", ["00" * 32], since_ns=2**62)
    again = measure(tmp_path / "model", cache=DigestCache(cache.path, racy_window_ns=0))
    assert again.files[0].sha256 == hashlib.sha256(b"weights").hexdigest()  # saved before poison
    poisoned = measure(tmp_path / "model", cache=cache)
    assert poisoned.files[0].sha256 == "00" * 32
    assert first.files[0].sha256 == hashlib.sha256(b"weights").hexdigest()


@pytest.mark.parametrize("component", ["device", "inode", "size", "mtime_ns", "ctime_ns"])
def test_any_changed_key_component_misses(tmp_path: Path, component: str) -> None:
    cache = DigestCache(tmp_path / "cache.json", racy_window_ns=0)
    key = CacheKey(device=1, inode=2, size=3, mtime_ns=4, ctime_ns=5)
    assert cache.store(key, "sha256", ["ab" * 32], since_ns=10)
    assert cache.lookup(key, "sha256") == ("ab" * 32,)
    changed = dataclasses.replace(key, **{component: getattr(key, component) + 1})
    assert cache.lookup(changed, "sha256") is None
    assert cache.lookup(key, "blake3") is None  # another algorithm is another entry
    cache.save()
    reloaded = DigestCache(cache.path, racy_window_ns=0)
    assert reloaded.lookup(key, "sha256") == ("ab" * 32,)
    assert reloaded.lookup(changed, "sha256") is None


def test_changed_file_is_hashed_again(tmp_path: Path) -> None:
    target = old_file(tmp_path / "m" / "w.bin", b"one")
    cache = DigestCache(tmp_path / "cache.json", racy_window_ns=0)
    measure(tmp_path / "m", cache=cache)
    old_file(target, b"two")  # same size and mtime: ctime (and content) differ
    m = measure(tmp_path / "m", cache=cache)
    assert m.files[0].sha256 == hashlib.sha256(b"two").hexdigest()


def test_recently_changed_files_are_not_remembered(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "fresh").write_bytes(b"just written")
    cache = DigestCache(tmp_path / "cache.json")  # default 2 s racy window
    measure(tmp_path / "m", cache=cache)
    assert len(cache) == 0


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b'{"format": "other"}',
        b'{"format": "attestd-digest-cache/1", "entries": [1]}',
        b'{"format": "attestd-digest-cache/1", "entries": [{"dev": 1, "ino": 1, "size": 1, '
        b'"mtime_ns": 1, "ctime_ns": 1, "digests": {"sha256": ["zz"]}}]}',
        b"\xff\xfe",
    ],
)
def test_corrupt_cache_file_is_ignored_and_replaced(tmp_path: Path, content: bytes) -> None:
    old_file(tmp_path / "m" / "w.bin", b"w")
    (tmp_path / "cache.json").write_bytes(content)
    cache = DigestCache(tmp_path / "cache.json", racy_window_ns=0)
    m = measure(tmp_path / "m", cache=cache)
    assert m.files[0].sha256 == hashlib.sha256(b"w").hexdigest()
    assert len(DigestCache(tmp_path / "cache.json")) == 1


@pytest.mark.parametrize("serialization", ["files", "shards"])
def test_cached_measurement_equals_fresh_one(tmp_path: Path, serialization: str) -> None:
    for name, size in [("a", 0), ("b/c", 5000), ("d", 2 * 1024 * 1024 + 9)]:
        old_file(tmp_path / "m" / name, os.urandom(size))
    config = HashingConfig(serialization=serialization, shard_size=1000)  # type: ignore[arg-type]
    cache = DigestCache(tmp_path / "cache.json", racy_window_ns=0)
    fresh = measure(tmp_path / "m", config=config, cache=cache)
    cached = measure(tmp_path / "m", config=config, cache=cache)
    assert cached == fresh
    # An empty file has no shards, so nothing to look up; under files it has a digest.
    assert cache.hits == cache.misses == (2 if serialization == "shards" else 3)


def test_progress_counts_reach_the_totals(tmp_path: Path) -> None:
    for index in range(50):
        old_file(tmp_path / "m" / f"d{index % 5}" / f"f{index}", b"x" * index)
    old_file(tmp_path / "m" / "big", os.urandom(3 * 1024 * 1024))
    reports: list[Progress] = []
    m = measure(tmp_path / "m", progress=reports.append)
    last = reports[-1]
    assert last.listing_done
    assert (last.files_done, last.files_total) == (51, 51)
    assert last.bytes_done == last.bytes_total == m.size_bytes
    assert all(r.files_done <= r.files_total or not r.listing_done for r in reports)
