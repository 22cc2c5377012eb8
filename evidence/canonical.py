"""Canonical JSON: RFC 8785, the JSON Canonicalization Scheme (JCS).

Every byte string that is hashed or signed in attestd is the JCS form of a JSON
value, so agent and verifier, in any language, produce the same bytes::

    >>> canonical_json({"b": 1, "a": [True, None, "x"]})
    b'{"a":[true,null,"x"],"b":1}'
"""

from __future__ import annotations

import json

import rfc8785

from attestd.evidence.errors import EvidenceFormatError


def canonical_json(value: object) -> bytes:
    """The RFC 8785 bytes of ``value`` (dict, list, tuple, str, int, float, bool, None).

    Raises EvidenceFormatError for anything JCS cannot represent: other types,
    non-string keys, integers beyond +-(2**53 - 1), NaN and infinities, strings
    with lone surrogates, nesting too deep to walk.
    """
    if _plain(value):
        try:
            return _encoder.encode(value).encode("utf-8")
        except UnicodeEncodeError:
            pass  # a lone surrogate: rfc8785 names the refusal below
    try:
        return rfc8785.dumps(value)  # type: ignore[arg-type]
    except rfc8785.CanonicalizationError as exc:
        raise EvidenceFormatError(f"not representable as canonical JSON: {exc}") from exc
    except RecursionError as exc:
        raise EvidenceFormatError("JSON value is nested too deeply") from exc


# For values of plain types, the standard library's encoder writes exactly the
# JCS bytes: it escapes the same characters in the same way (\b \f \n \r \t
# \" \\ and \u00xx in lower case for other controls, every other character
# literal), and sorting keys by code point equals JCS's UTF-16 order while no key
# has a character at or above U+D800. Anything else (floats, big integers, such
# keys, other types) goes to rfc8785, which is slower in pure Python but
# complete. tests/evidence/test_canonical_fast.py holds the two to the same bytes.
_encoder = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":"), check_circular=False
)
_MAX_SAFE = 2**53 - 1
_MAX_DEPTH = 64


def _plain(value: object, depth: int = 0) -> bool:
    """Whether the fast encoder writes ``value``'s JCS form exactly."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return -_MAX_SAFE <= value <= _MAX_SAFE  # type: ignore[operator]
    if depth >= _MAX_DEPTH:
        return False
    if kind is list or kind is tuple:
        return all(_plain(item, depth + 1) for item in value)  # type: ignore[attr-defined]
    if kind is dict:
        return all(
            type(k) is str and (k.isascii() or max(k) < "\ud800") and _plain(v, depth + 1)
            for k, v in value.items()  # type: ignore[attr-defined]
        )
    return False
