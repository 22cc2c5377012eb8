"""Strict readers for untrusted JSON: every failure is an EvidenceFormatError with a path.

Parsers in this package never let KeyError, TypeError or binascii.Error escape;
they read each field through these helpers, which know where they are.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import NoReturn

import pybase64

from attestd.evidence.errors import EvidenceFormatError

# JSON integers outside this range are not exact in IEEE 754 doubles, and
# RFC 8785 refuses them; every integer field in the format lies inside it.
MAX_SAFE_INTEGER = 2**53 - 1

_HEX = re.compile(r"[0-9a-f]*")
_B64_STD = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def fail(path: str, message: str) -> NoReturn:
    raise EvidenceFormatError(message, path=path)


def _no_constants(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out = dict(pairs)  # in C; a duplicate shows as a shorter dict, then is named
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate object member {key!r}")
            seen.add(key)
    return out


def loads(data: bytes, *, what: str, max_bytes: int) -> object:
    """Parse UTF-8 JSON text strictly: size bound, no NaN, no duplicate keys."""
    if not isinstance(data, bytes | bytearray | memoryview):
        fail("$", f"{what} must be bytes, not {type(data).__name__}")
    if len(data) > max_bytes:
        fail("$", f"{what} is {len(data)} bytes, more than the limit of {max_bytes}")
    try:
        text = bytes(data).decode("utf-8")
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except UnicodeDecodeError as exc:
        fail("$", f"{what} is not UTF-8: {exc.reason} at byte {exc.start}")
    except RecursionError:
        fail("$", f"{what} is nested too deeply")
    except ValueError as exc:  # JSONDecodeError, our hooks, over-long integers
        fail("$", f"{what} is not valid JSON: {exc}")


def type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def obj(value: object, path: str, *, fields: tuple[str, ...] | None = None) -> Mapping[str, object]:
    """``value`` as a JSON object; with ``fields``, exactly those members, all present."""
    if not isinstance(value, dict):
        fail(path, f"expected an object, got {type_name(value)}")
    if fields is not None:
        for name in fields:
            if name not in value:
                fail(f"{path}.{name}", "required member is missing")
        if len(value) != len(fields):  # every (distinct) field is present: the rest are extra
            extra = sorted(str(k) for k in value if k not in fields)
            if extra:
                fail(f"{path}.{extra[0]}", "unknown member")
    return value


def string(
    value: object,
    path: str,
    *,
    min_len: int = 0,
    max_len: int,
    pattern: re.Pattern[str] | None = None,
) -> str:
    if not isinstance(value, str):
        fail(path, f"expected a string, got {type_name(value)}")
    if not min_len <= len(value) <= max_len:
        fail(path, f"length {len(value)} is outside {min_len}..{max_len}")
    if pattern is not None and not pattern.fullmatch(value):
        fail(path, f"{value[:80]!r} does not match {pattern.pattern}")
    return value


def integer(value: object, path: str, *, minimum: int = 0, maximum: int = MAX_SAFE_INTEGER) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        fail(path, f"expected an integer, got {type_name(value)}")
    if not minimum <= value <= maximum:
        fail(path, f"{value} is outside {minimum}..{maximum}")
    return value


def boolean(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        fail(path, f"expected true or false, got {type_name(value)}")
    return value


def array(value: object, path: str, *, max_len: int) -> list[object]:
    if not isinstance(value, list):
        fail(path, f"expected an array, got {type_name(value)}")
    if len(value) > max_len:
        fail(path, f"{len(value)} elements, more than the limit of {max_len}")
    return value


def hex_bytes(value: object, path: str, *, size: int | None = None, max_size: int = 1024) -> bytes:
    """Lowercase hex, even length; ``size`` fixes the decoded length."""
    text = string(value, path, max_len=2 * (size if size is not None else max_size))
    # Fast path: text that decodes and re-encodes to itself is lowercase hex of even length
    # (fromhex also takes upper case and spaces; hex() writes neither), all the checks below
    # accept; anything else takes them, so each refusal keeps its message.
    try:
        data = bytes.fromhex(text)
    except ValueError:
        data = None
    if data is not None and data.hex() == text and (size is None or len(data) == size):
        return data
    if len(text) % 2 or not _HEX.fullmatch(text):
        fail(path, "expected lowercase hexadecimal with an even number of digits")
    if size is not None and len(text) != 2 * size:
        fail(path, f"expected {size} bytes ({2 * size} hex digits), got {len(text) // 2}")
    return bytes.fromhex(text)


def b64_bytes(value: object, path: str, *, max_size: int) -> bytes:
    """Standard base64 (RFC 4648 section 4) with padding, canonical, at most ``max_size`` bytes."""
    text = string(value, path, max_len=4 * ((max_size + 2) // 3))
    # Fast path: text that decodes strictly and re-encodes to itself is canonical
    # standard base64, which is all the checks below accept; anything else takes
    # them, so each refusal keeps its message. pybase64 (SIMD) does both passes in a
    # fraction of the standard library's time; a quote is kilobytes.
    try:
        data = pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        data = None
    if data is not None and len(data) <= max_size and pybase64.b64encode(data) == text.encode():
        return data
    if not _B64_STD.fullmatch(text):
        fail(path, "expected standard base64 with padding (RFC 4648 section 4)")
    try:
        data = base64.b64decode(text, validate=True)
    except binascii.Error as exc:  # unreachable after the pattern, kept as a guard
        fail(path, f"bad base64: {exc}")
    if base64.b64encode(data).decode("ascii") != text:
        fail(path, "base64 has non-zero padding bits (not the canonical encoding)")
    if len(data) > max_size:
        fail(path, f"{len(data)} bytes, more than the limit of {max_size}")
    return data


def b64_encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
