"""Bounded caches for work keyed by immutable bytes, each entry valid for a span of time.

    >>> cache: ValidityCache[bytes, str] = ValidityCache("example", maxsize=2)
    >>> cache.put(b"key", "value", not_before=start, not_after=end)
    >>> cache.get(b"key", now)          # "value" while start <= now <= end, else None

Verifying a certificate chain, parsing collateral or asking dcap-qvl about a
platform gives the same answer for the same bytes, as long as the clock stays
inside every validity period the answer rests on. The caches here hold such
answers: least recently used entries go first once ``maxsize`` is reached,
and an entry is never served for a ``now`` outside its ``[not_before,
not_after]``; the caller then does the full work again, which names the
failure (an expired certificate, a CRL past its nextUpdate). Only successes
are cached, so every refusal keeps its reason. Keys must hold everything the
answer depends on (the bytes checked and the roots trusted).

``caching(False)`` turns every cache off for a block (tests compare results
with and without caches; benchmarks measure both); ``clear_all()`` empties them.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: For answers that no clock can change (a signature over given bytes verifies or not).
ALWAYS = (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))

_enabled = True
_registry: list[ValidityCache[Any, Any]] = []
_registry_lock = threading.Lock()


@dataclass(frozen=True)
class _Entry(Generic[V]):
    value: V
    not_before: datetime
    not_after: datetime


class ValidityCache(Generic[K, V]):
    """A thread-safe LRU map of at most ``maxsize`` entries, each valid for a time span."""

    def __init__(self, name: str, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("a cache holds at least one entry")
        self.name = name
        self.maxsize = maxsize
        self._entries: OrderedDict[K, _Entry[V]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        with _registry_lock:
            _registry.append(self)

    def get(self, key: K, now: datetime) -> V | None:
        """The value for ``key`` if one is held and ``now`` lies in its validity; else None."""
        if not _enabled:
            return None
        entries = self._entries
        with self._lock:
            entry = entries.get(key)
            if entry is None or not entry.not_before <= now <= entry.not_after:
                self.misses += 1
                return None
            entries.move_to_end(key)
            self.hits += 1
        return entry.value

    def put(self, key: K, value: V, *, not_before: datetime, not_after: datetime) -> None:
        """Hold ``value`` for ``key``, valid from ``not_before`` to ``not_after`` inclusive."""
        if not _enabled or not_before > not_after:
            return
        with self._lock:
            self._entries[key] = _Entry(value, not_before, not_after)
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)


def digest(*parts: bytes) -> bytes:
    """SHA-256 over length-prefixed parts: a compact key that no two part lists share."""
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.digest()


def clear_all() -> None:
    """Empty every cache (tests, or an operator replacing trust anchors in place)."""
    with _registry_lock:
        caches = list(_registry)
    for cache in caches:
        cache.clear()


def enabled() -> bool:
    return _enabled


@contextmanager
def caching(on: bool) -> Iterator[None]:
    """Within the block, every cache is on (``True``) or bypassed and left untouched."""
    global _enabled
    previous = _enabled
    _enabled = on
    try:
        yield
    finally:
        _enabled = previous
