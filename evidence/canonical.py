"""Canonical JSON: RFC 8785, the JSON Canonicalization Scheme (JCS).

Every byte string that is hashed or signed in attestd is the JCS form of a JSON
value, so agent and verifier, in any language, produce the same bytes::

    >>> canonical_json({"b": 1, "a": [True, None, "x"]})
    b'{"a":[true,null,"x"],"b":1}'
"""

from __future__ import annotations

import rfc8785

from attestd.evidence.errors import EvidenceFormatError


def canonical_json(value: object) -> bytes:
    """The RFC 8785 bytes of ``value`` (dict, list, tuple, str, int, float, bool, None).

    Raises EvidenceFormatError for anything JCS cannot represent: other types,
    non-string keys, integers beyond +-(2**53 - 1), NaN and infinities, strings
    with lone surrogates, nesting too deep to walk.
    """
    try:
        return rfc8785.dumps(value)  # type: ignore[arg-type]
    except rfc8785.CanonicalizationError as exc:
        raise EvidenceFormatError(f"not representable as canonical JSON: {exc}") from exc
    except RecursionError as exc:
        raise EvidenceFormatError("JSON value is nested too deeply") from exc
