"""tee/_http.py: the bounded GET and the expiring disk cache that PCCS and KDS share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from attestd.tee._http import DiskCache, FetchError, Response, http_get

NOW = datetime(2026, 1, 1, tzinfo=UTC)
URL = "https://pccs.example/tdx/certification/v4/tcb?fmspc=00"


def test_an_entry_serves_until_it_expires(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path / "c", max_bytes=1024)
    response = Response(b"body", {"tcb-info-issuer-chain": "pem"})
    cache.store("tcb.json", URL, response, expires=NOW + timedelta(hours=1))
    assert cache.load("tcb.json", URL, NOW) == response
    assert cache.load("tcb.json", URL, NOW + timedelta(hours=1)) is None
    assert cache.load("tcb.json", URL + "&other", NOW) is None


def test_a_damaged_or_missing_entry_is_a_miss(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, max_bytes=1024)
    assert cache.load("absent.json", URL, NOW) is None
    (tmp_path / "tcb.json").write_text("damaged")
    assert cache.load("tcb.json", URL, NOW) is None


def test_a_body_only_entry_is_the_body_and_never_expires(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, max_bytes=1024, body_only=True)
    cache.store("vcek.der", URL, Response(b"\x30\x82"))
    assert (tmp_path / "vcek.der").read_bytes() == b"\x30\x82"
    assert cache.load("vcek.der", URL) == Response(b"\x30\x82")


def test_only_http_urls_are_fetched() -> None:
    with pytest.raises(FetchError, match="not an http"):
        http_get("file:///etc/passwd", 1.0, 1024)
