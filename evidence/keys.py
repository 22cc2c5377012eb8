"""The agent's evidence key: how it is named and written down.

A key id is ``sha256:`` and the lowercase hex SHA-256 of the key's DER
SubjectPublicKeyInfo, the same for everyone who holds the public key::

    pem = public_key_pem(private_key.public_key())
    assert key_id(load_public_key_pem(pem)) == key_id(private_key.public_key())
"""

from __future__ import annotations

import functools
import hashlib
import re
import threading

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attestd.evidence.errors import EvidenceFormatError

KEY_ID_PATTERN = re.compile(r"sha256:[0-9a-f]{64}")
"""What every key id looks like."""

MAX_PUBLIC_KEY_PEM_CHARS = 4096


def _spki_der(public_key: ec.EllipticCurvePublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """``sha256:`` + hex(SHA-256(DER SubjectPublicKeyInfo of ``public_key``))."""
    # Keys are immutable and not hashable: the id is remembered per key object (held, so
    # that its id() is not reused), for the keys load_public_key_pem hands out again and
    # again, one per agent. Bounded; a miss only costs the encoding.
    with _KEY_IDS_LOCK:
        entry = _KEY_IDS.get(id(public_key))
    if entry is not None and entry[0] is public_key:
        return entry[1]
    kid = "sha256:" + hashlib.sha256(_spki_der(public_key)).hexdigest()
    with _KEY_IDS_LOCK:
        _KEY_IDS[id(public_key)] = (public_key, kid)
        while len(_KEY_IDS) > _KEY_IDS_MAX:
            del _KEY_IDS[next(iter(_KEY_IDS))]  # the oldest
    return kid


_KEY_IDS: dict[int, tuple[ec.EllipticCurvePublicKey, str]] = {}
_KEY_IDS_MAX = 256
_KEY_IDS_LOCK = threading.Lock()


def public_key_pem(public_key: ec.EllipticCurvePublicKey) -> str:
    """``public_key`` as a PEM ``PUBLIC KEY`` block (SubjectPublicKeyInfo)."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_public_key_pem(pem: str) -> ec.EllipticCurvePublicKey:
    """Read a PEM ``PUBLIC KEY``; only ECDSA P-256 (secp256r1) keys are accepted."""
    _check_pem_text(pem)
    return _load_p256(pem)


def pem_key_id(pem: str) -> str:
    """``key_id(load_public_key_pem(pem))``; refuses exactly what that refuses."""
    _check_pem_text(pem)
    return _pem_key_id(pem)


def _check_pem_text(pem: object) -> None:
    # Before any cache: only bounded strings are ever cache keys.
    if type(pem) is not str:
        raise EvidenceFormatError(f"public key must be a PEM string, not {type(pem).__name__}")
    if len(pem) > MAX_PUBLIC_KEY_PEM_CHARS:
        raise EvidenceFormatError(f"public key PEM is longer than {MAX_PUBLIC_KEY_PEM_CHARS}")


# One agent key signs many statements, and one appraisal reads it several times
# (statement, binding link, envelope): keys and their ids are remembered per PEM
# (bounded LRU). A refusal raises, and so is never cached.
@functools.lru_cache(maxsize=256)
def _pem_key_id(pem: str) -> str:
    return key_id(_load_p256(pem))


@functools.lru_cache(maxsize=256)
def _load_p256(pem: str) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError, UnsupportedAlgorithm, TypeError) as exc:
        raise EvidenceFormatError(f"not a PEM public key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise EvidenceFormatError(f"public key is {type(key).__name__}, expected ECDSA P-256")
    if not isinstance(key.curve, ec.SECP256R1):
        raise EvidenceFormatError(f"public key is on {key.curve.name}, expected secp256r1 (P-256)")
    return key
