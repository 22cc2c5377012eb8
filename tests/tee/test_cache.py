"""The validity cache: bounded, least recently used first, never served outside its span."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from attestd.tee._cache import ALWAYS, ValidityCache, caching, clear_all, digest

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def test_an_entry_is_served_only_inside_its_span() -> None:
    cache: ValidityCache[str, int] = ValidityCache("test.span", maxsize=4)
    cache.put("k", 1, not_before=T0, not_after=T0 + DAY)
    assert cache.get("k", T0) == 1
    assert cache.get("k", T0 + DAY) == 1
    assert cache.get("k", T0 + DAY + timedelta(seconds=1)) is None
    assert cache.get("k", T0 - timedelta(seconds=1)) is None


def test_the_least_recently_used_entry_goes_first_once_full() -> None:
    cache: ValidityCache[int, int] = ValidityCache("test.bound", maxsize=3)
    for i in range(3):
        cache.put(i, i, not_before=ALWAYS[0], not_after=ALWAYS[1])
    assert cache.get(0, T0) == 0  # 0 is now the most recently used
    cache.put(3, 3, not_before=ALWAYS[0], not_after=ALWAYS[1])
    assert len(cache) == 3
    assert cache.get(1, T0) is None
    assert [cache.get(k, T0) for k in (0, 2, 3)] == [0, 2, 3]


def test_an_empty_span_is_not_cached() -> None:
    cache: ValidityCache[str, int] = ValidityCache("test.empty", maxsize=2)
    cache.put("k", 1, not_before=T0 + DAY, not_after=T0)
    assert len(cache) == 0


def test_caching_off_neither_serves_nor_stores() -> None:
    cache: ValidityCache[str, int] = ValidityCache("test.off", maxsize=2)
    cache.put("k", 1, not_before=ALWAYS[0], not_after=ALWAYS[1])
    with caching(False):
        assert cache.get("k", T0) is None
        cache.put("j", 2, not_before=ALWAYS[0], not_after=ALWAYS[1])
    assert cache.get("k", T0) == 1
    assert cache.get("j", T0) is None
    clear_all()
    assert len(cache) == 0


def test_a_cache_holds_at_least_one_entry() -> None:
    with pytest.raises(ValueError):
        ValidityCache("test.zero", maxsize=0)


def test_digest_separates_part_boundaries() -> None:
    assert digest(b"ab", b"c") != digest(b"a", b"bc")
