"""An optional cache of file digests, for measuring unchanged files again.

    cache = DigestCache(state_dir / "digest-cache.json")
    measure(path, cache=cache)    # hashes, remembers, saves
    measure(path, cache=cache)    # files whose inode metadata is unchanged are not read

An entry is found only when the file's device, inode, size, mtime_ns and
ctime_ns all equal what they were when it was hashed. So the cache trusts that
nothing changes a file's bytes without changing its ctime: true for every write
through the kernel's file system interface, false for someone who writes the
block device underneath, sets the system clock back, or runs a file system
whose timestamps do not work this way (some network and FUSE file systems). It
also trusts its own file: whoever can write it chooses the digests reported.
Off unless a cache is passed; see docs/hashing.md.

Files changed within ``racy_window_ns`` before the measurement began are
hashed but not remembered: a write in the same timestamp tick as the hash
would otherwise leave the metadata looking unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from attestd._files import write_atomic

log = logging.getLogger(__name__)

FORMAT: Final = "attestd-digest-cache/1"
DEFAULT_RACY_WINDOW_NS: Final = 2_000_000_000


@dataclass(frozen=True)
class CacheKey:
    """The inode metadata an entry is valid for."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> CacheKey:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class DigestCache:
    """Digests of files by inode metadata, kept in one JSON file.

    ``variant`` names what was computed (a resource algorithm such as
    ``sha256`` or ``blake2b-sharded-1000000000``); an entry holds the digests
    of each of the file's resources, in order. Thread-safe. An unreadable or
    corrupt cache file is logged and treated as empty; :meth:`save` replaces it.
    """

    def __init__(self, path: Path, *, racy_window_ns: int = DEFAULT_RACY_WINDOW_NS) -> None:
        self.path = Path(path)
        self.racy_window_ns = racy_window_ns
        self._lock = threading.Lock()
        self._entries: dict[tuple[int, int], tuple[CacheKey, dict[str, tuple[str, ...]]]] = {}
        self._dirty = False
        self.hits = 0
        self.misses = 0
        self._load()

    def lookup(self, key: CacheKey, variant: str) -> tuple[str, ...] | None:
        """The digests (hex) remembered for ``key`` and ``variant``, or None."""
        with self._lock:
            found = self._entries.get((key.device, key.inode))
            digests = found[1].get(variant) if found is not None and found[0] == key else None
            if digests is None:
                self.misses += 1
            else:
                self.hits += 1
            return digests

    def store(self, key: CacheKey, variant: str, digests: Sequence[str], *, since_ns: int) -> bool:
        """Remember ``digests``, unless the file changed too close to ``since_ns``.

        ``since_ns`` is a wall-clock time (``time.time_ns()``) taken before the
        file's metadata was read. Returns whether the entry was kept.
        """
        if max(key.mtime_ns, key.ctime_ns) >= since_ns - self.racy_window_ns:
            return False
        with self._lock:
            found = self._entries.get((key.device, key.inode))
            variants = found[1] if found is not None and found[0] == key else {}
            variants[variant] = tuple(digests)
            self._entries[(key.device, key.inode)] = (key, variants)
            self._dirty = True
        return True

    def save(self) -> None:
        """Write the cache atomically (mode 0600), if anything changed."""
        with self._lock:
            if not self._dirty:
                return
            document = {
                "format": FORMAT,
                "entries": [_entry_json(*v) for v in self._entries.values()],
            }
            self._dirty = False
        data = json.dumps(document, separators=(",", ":")).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, data, mode=0o600)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _load(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("digest cache %s is unreadable (%s); starting empty", self.path, exc)
            return
        try:
            document = json.loads(data)
            if document.get("format") != FORMAT:
                raise ValueError(f"format is {document.get('format')!r}, not {FORMAT!r}")
            for item in document["entries"]:
                key, variants = _entry_from_json(item)
                self._entries[(key.device, key.inode)] = (key, variants)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("digest cache %s is corrupt (%s); starting empty", self.path, exc)
            self._entries.clear()
            self._dirty = True


def _entry_json(key: CacheKey, variants: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    return {
        "dev": key.device,
        "ino": key.inode,
        "size": key.size,
        "mtime_ns": key.mtime_ns,
        "ctime_ns": key.ctime_ns,
        "digests": {name: list(values) for name, values in variants.items()},
    }


def _entry_from_json(item: Any) -> tuple[CacheKey, dict[str, tuple[str, ...]]]:
    numbers = [item[name] for name in ("dev", "ino", "size", "mtime_ns", "ctime_ns")]
    if not all(type(n) is int for n in numbers):
        raise ValueError("an entry's metadata is not integers")
    variants: dict[str, tuple[str, ...]] = {}
    for name, values in item["digests"].items():
        if not isinstance(name, str) or not isinstance(values, list):
            raise ValueError("an entry's digests are not a list")
        for value in values:
            bytes.fromhex(value)  # raises ValueError or TypeError
        variants[name] = tuple(values)
    return CacheKey(*numbers), variants
