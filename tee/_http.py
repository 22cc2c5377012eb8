"""One size-limited HTTP GET, and one disk cache whose entries expire, for vendor services.

    from attestd.tee._http import DiskCache, http_get

    response = http_get(url, timeout=10.0, max_bytes=1 << 20, accept="application/pkix-cert")
    cache = DiskCache(Path("/var/cache/attestd/pccs"))
    cache.store("tcb-00606a000000", url, response, expires=next_update)
    cached = cache.load("tcb-00606a000000", url, now)       # None when absent, stale or damaged

Intel's PCCS/PCS (:mod:`attestd.tee.tdx.collateral`) and AMD's KDS
(:mod:`attestd.tee.snp.kds`) are both served this way. Only ``http`` and
``https`` URLs are fetched, so urllib's ``file:`` and custom handlers never run.
A failed fetch is a :class:`FetchError` subclass; each caller turns it into its
own error (``collateral_unavailable``, ``vcek_unavailable``, ...).

A cache entry is either the response with its headers and expiry, as JSON, or
(``body_only=True``) the body alone, for responses that never expire because
their URL names exactly what they hold (a VCEK is fixed for its chip and TCB)
and that an operator may drop into the cache directory by hand. Entries are
written atomically; a cache that cannot be written costs a refetch, nothing more.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from attestd._files import FileMissingError, FileRefusedError, read_regular_file, write_atomic
from attestd.tee.errors import TeeError

_CACHE_FORMAT = "attestd-http-cache/1"


class FetchError(TeeError):
    """A URL could not be fetched: refused, unreachable, timed out, or not http(s)."""

    reason = "fetch_failed"

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class FetchStatusError(FetchError):
    """The server answered with an HTTP error status (``status``)."""

    reason = "fetch_status"

    def __init__(self, message: str, *, url: str, status: int) -> None:
        super().__init__(message, url=url)
        self.status = status


class FetchTooLargeError(FetchError):
    """The response body was larger than the caller's bound."""

    reason = "fetch_too_large"


@dataclass(frozen=True)
class Response:
    """A response body and its headers (names in lower case)."""

    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


class Fetcher(Protocol):
    """What :func:`http_get` is; tests pass their own."""

    def __call__(self, url: str, timeout: float, max_bytes: int) -> Response: ...


def http_get(url: str, timeout: float, max_bytes: int, *, accept: str = "*/*") -> Response:
    """GET ``url``: at most ``max_bytes`` of body, within ``timeout`` seconds per socket wait."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise FetchError(f"refusing to fetch {url!r}: not an http(s) URL", url=url)
    request = urllib.request.Request(url, headers={"Accept": accept})  # noqa: S310 (checked)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (checked)
            body = _read_at_most(response, max_bytes + 1)
            headers = {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as e:
        raise FetchStatusError(
            f"{url} answered HTTP {e.code} {e.reason}", url=url, status=e.code
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as e:  # refused, DNS, timeout, TLS
        raise FetchError(f"cannot fetch {url}: {e}", url=url) from None
    if len(body) > max_bytes:
        raise FetchTooLargeError(f"{url} answered more than {max_bytes} bytes", url=url)
    return Response(body, headers)


def _read_at_most(stream: Any, limit: int) -> bytes:
    """Up to ``limit`` bytes until EOF: one ``read(n)`` of a socket may return fewer."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = stream.read(min(65536, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class DiskCache:
    """Responses kept in ``directory`` (made 0700), one file per ``name``, each until it expires.

    ``max_bytes`` bounds what is read back from a file (an entry is at most one response).
    """

    def __init__(self, directory: Path, *, max_bytes: int, body_only: bool = False) -> None:
        self.directory = Path(directory)
        self._max_bytes = max_bytes
        self._body_only = body_only

    def path(self, name: str) -> Path:
        return self.directory / name

    def load(self, name: str, url: str, now: datetime | None = None) -> Response | None:
        """The entry for ``url`` while ``now`` is before its expiry; None if absent or damaged.

        A body-only entry never expires; a JSON entry with another URL is a miss.
        """
        path = self.path(name)
        # JSON holds the body in hex: twice its size, plus the headers.
        limit = self._max_bytes if self._body_only else 2 * self._max_bytes + (64 << 10)
        try:
            data = read_regular_file(path, limit, "cache entry")
        except FileMissingError:
            return None
        except FileRefusedError:
            return None  # a damaged entry is refetched and replaced
        if self._body_only:
            return Response(data)
        try:
            document = json.loads(data)
            if document["format"] != _CACHE_FORMAT or document["url"] != url:
                return None
            expires = datetime.fromisoformat(document["expires"])
            headers = {str(k): str(v) for k, v in dict(document["headers"]).items()}
            response = Response(bytes.fromhex(document["body"]), headers)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        if now is None or expires.tzinfo is None or now >= expires:
            return None
        return response

    def store(
        self, name: str, url: str, response: Response, *, expires: datetime | None = None
    ) -> None:
        """Keep ``response`` for ``url`` until ``expires`` (body-only entries: forever)."""
        if self._body_only:
            data = response.body
        else:
            if expires is None:
                raise ValueError("a JSON cache entry needs an expiry")
            data = json.dumps(
                {
                    "format": _CACHE_FORMAT,
                    "url": url,
                    "expires": expires.astimezone(UTC).isoformat(),
                    "headers": dict(response.headers),
                    "body": response.body.hex(),
                }
            ).encode()
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_atomic(self.path(name), data, mode=0o644)  # public data, as served
        except OSError:
            pass  # a cache that cannot be written costs a refetch, nothing more
