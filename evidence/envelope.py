"""The DSSE envelope around a statement, signed by the agent key.

Signing and verification use securesystemslib's DSSE implementation for the
envelope format and its pre-authentication encoding (``Envelope.pae``, DSSE
v1); the one signature is then made or checked with ``cryptography``
directly, which is what securesystemslib's ``CryptoSigner`` and key would do
(scheme ``ecdsa-sha2-nistp256``: DER ECDSA over SHA-256 of the PAE), without
building signer or key objects per signature::

    data = sign_statement(statement, agent_private_key)
    envelope, statement = open_evidence(data)           # parsed, not yet trusted
    verify_envelope(envelope, load_public_key_pem(statement.predicate.agent_key_pem))
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Mapping

import pybase64
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from securesystemslib.dsse import Envelope
from securesystemslib.signer import Signature  # type: ignore[attr-defined]  # no re-export

from attestd.evidence import _json
from attestd.evidence.canonical import canonical_json
from attestd.evidence.errors import EnvelopeSignatureError, EvidenceFormatError
from attestd.evidence.keys import key_id
from attestd.evidence.statement import Statement, parse_statement

PAYLOAD_TYPE = "application/vnd.in-toto+json"
"""The DSSE payloadType of an in-toto statement."""

MAX_ENVELOPE_BYTES = 16 * 1024 * 1024
"""Largest envelope parse_envelope reads."""

MAX_SIGNATURES = 16
MAX_SIGNATURE_BYTES = 1024
MAX_KEYID_LENGTH = 256

_B64_ANY = re.compile(r"[A-Za-z0-9+/\-_]*={0,2}")
# securesystemslib's scheme for P-256 keys (``ecdsa-sha2-nistp256``): DER signatures over SHA-256.
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


@functools.lru_cache(maxsize=8)
def _signing_key_id(private_key: ec.EllipticCurvePrivateKey) -> str:
    """The key id of a P-256 signing key, computed once per key object.

    An agent signs every evidence with one key; its id (a DER export and a
    hash) and the curve check were a few per cent of an agent's CPU when
    redone per signature. Private keys hash by identity, so this holds the few
    most recent key objects (never their bytes), as the agent itself does.
    """
    public = private_key.public_key()
    if not isinstance(public.curve, ec.SECP256R1):
        raise EvidenceFormatError(f"agent key is on {public.curve.name}, expected P-256")
    return key_id(public)


def _sign(envelope: Envelope, private_key: ec.EllipticCurvePrivateKey) -> None:
    """Add the signature of ``private_key`` over the envelope's PAE, as ``Envelope.sign``
    with a securesystemslib ``CryptoSigner`` would: same keyid, same DER ECDSA bytes."""
    keyid = _signing_key_id(private_key)
    signature = private_key.sign(envelope.pae(), _ECDSA_SHA256)
    envelope.signatures[keyid] = Signature(keyid, signature.hex())


def sign_statement(statement: Statement, private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """The DSSE envelope (JSON bytes) of ``statement``, signed by ``private_key`` (P-256).

    The payload is the JCS form of the statement; the signature's ``keyid`` is
    ``key_id(private_key.public_key())``.
    """
    return sign_json(statement.to_json(), private_key)


def sign_json(statement: Mapping[str, object], private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """The DSSE envelope (JSON bytes) of any in-toto statement given as JSON, JCS-encoded."""
    envelope = Envelope(canonical_json(dict(statement)), PAYLOAD_TYPE, {})
    _sign(envelope, private_key)
    return canonical_json(envelope.to_dict())


def sign_payload(payload: bytes, private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """:func:`sign_json` for a statement already in JCS form (``StatementTemplate.encode``).

    The envelope's JCS is built around the payload's base64 rather than by
    re-encoding it: base64 needs no JSON escaping, and ``payload`` sorts first.
    The rest of the envelope (type, signatures) is securesystemslib's ``to_dict``
    of the same envelope with an empty payload, whose base64 is the empty string.
    """
    envelope = Envelope(payload, PAYLOAD_TYPE, {})
    _sign(envelope, private_key)
    skeleton = canonical_json(Envelope(b"", PAYLOAD_TYPE, envelope.signatures).to_dict())
    empty = b'{"payload":""'
    if not skeleton.startswith(empty):
        raise EvidenceFormatError("unexpected DSSE envelope layout")  # pragma: no cover
    # pybase64 (SIMD) writes standard base64 with padding, byte for byte what the
    # stdlib's b64encode (securesystemslib's) does; the payload is most of the evidence.
    return b'{"payload":"' + pybase64.b64encode(payload) + b'"' + skeleton[len(empty) :]


def _b64_dsse(value: object, path: str, *, max_size: int) -> bytes:
    """DSSE allows standard or URL-safe base64; padding may be omitted."""
    text = _json.string(value, path, max_len=4 * ((max_size + 2) // 3) + 2)
    # Fast path: standard base64 with its padding, as attestd writes it. pybase64's strict
    # decoding (SIMD; the payload is most of the evidence) accepts only text the checks
    # below also accept, and decodes it to the same bytes; anything else takes them, so
    # each refusal keeps its message.
    try:
        fast = pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        fast = None
    if fast is not None and len(fast) <= max_size:
        return fast
    if not _B64_ANY.fullmatch(text):
        _json.fail(path, "not base64 (standard or URL-safe alphabet)")
    body = text.rstrip("=").replace("-", "+").replace("_", "/")
    if len(body) % 4 == 1:
        _json.fail(path, "base64 has an impossible length")
    try:
        data = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except binascii.Error as exc:
        _json.fail(path, f"bad base64: {exc}")
    if len(data) > max_size:
        _json.fail(path, f"{len(data)} bytes, more than the limit of {max_size}")
    return data


def parse_envelope(data: bytes) -> Envelope:
    """Strictly parse DSSE envelope JSON; nothing is verified yet.

    The payloadType must be PAYLOAD_TYPE; there must be 1..MAX_SIGNATURES
    signatures, each with a distinct string ``keyid`` and a base64 ``sig``.
    """
    doc = _json.obj(
        _json.loads(data, what="envelope", max_bytes=MAX_ENVELOPE_BYTES),
        "$",
        fields=("payload", "payloadType", "signatures"),
    )
    payload = _b64_dsse(doc["payload"], "$.payload", max_size=MAX_ENVELOPE_BYTES)
    payload_type = _json.string(doc["payloadType"], "$.payloadType", max_len=256)
    if payload_type != PAYLOAD_TYPE:
        _json.fail("$.payloadType", f"{payload_type!r} is not {PAYLOAD_TYPE!r}")
    sigs = _json.array(doc["signatures"], "$.signatures", max_len=MAX_SIGNATURES)
    if not sigs:
        _json.fail("$.signatures", "an envelope needs at least one signature")
    signatures: dict[str, Signature] = {}
    for i, raw in enumerate(sigs):
        path = f"$.signatures[{i}]"
        members = _json.obj(raw, path, fields=("keyid", "sig"))
        keyid = _json.string(members["keyid"], f"{path}.keyid", max_len=MAX_KEYID_LENGTH)
        sig = _b64_dsse(members["sig"], f"{path}.sig", max_size=MAX_SIGNATURE_BYTES)
        if keyid in signatures:
            _json.fail(f"{path}.keyid", f"{keyid!r} signs more than once")
        signatures[keyid] = Signature(keyid, sig.hex())
    return Envelope(payload, payload_type, signatures)


def verify_envelope(envelope: Envelope, public_key: ec.EllipticCurvePublicKey) -> bytes:
    """The payload, once a signature with keyid ``key_id(public_key)`` verifies under it.

    Signatures by other keys are ignored; if none by this key verifies, raise
    EnvelopeSignatureError.
    """
    if envelope.payload_type != PAYLOAD_TYPE:
        raise EnvelopeSignatureError(
            f"payloadType {envelope.payload_type!r} is not signed evidence"
        )
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        raise EnvelopeSignatureError("evidence keys are ECDSA P-256")
    expected = key_id(public_key)
    if expected not in envelope.signatures:
        present = ", ".join(sorted(envelope.signatures)) or "none"
        raise EnvelopeSignatureError(f"no signature by {expected} (signed by: {present})")
    # Envelope.verify([SSlibKey.from_crypto(public_key)], 1) in effect: signatures are keyed by
    # keyid, so the one by ``expected`` is the only candidate; its bytes are DER ECDSA over PAE.
    try:
        signature = bytes.fromhex(envelope.signatures[expected].signature)
        public_key.verify(signature, envelope.pae(), _ECDSA_SHA256)
    except (InvalidSignature, ValueError) as exc:
        raise EnvelopeSignatureError(f"signature by {expected} does not verify") from exc
    return bytes(envelope.payload)


def open_evidence(data: bytes) -> tuple[Envelope, Statement]:
    """Parse an envelope and its statement without checking any signature.

    The caller decides which key to trust (the one the quoted binding names)
    and then calls verify_envelope.
    """
    envelope = parse_envelope(data)
    return envelope, parse_statement(envelope.payload)
