"""A pipeline layout as a signed in-toto attestation, so it can travel with the model.

A producer signs the layout its pipeline was meant to follow; a consumer checks
a run against it knowing only the producer's public key, not trusting a config
file handed over beside the model::

    data = sign_layout(Path("layout.toml").read_text(), producer_private_key)
    signed = open_layout_attestation(data, producer_public_key, source=Path("layout.intoto.json"))
    verify_chain(attestations, signed.layout)

The attestation is a DSSE envelope (:mod:`attestd.evidence.envelope`, the
signing stage attestations use) around an in-toto Statement v1 whose
predicate type is :data:`LAYOUT_PREDICATE_TYPE`; docs/layout-attestation.md
describes the predicate. The layout travels as its exact TOML text, and the
statement's one subject is that text's SHA-256, so the signed bytes are the
bytes a verifier parses. Relative paths in the layout (``simulated_root``,
pinned certificates) resolve against the attestation file's directory: those
files are not inside the attestation.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec

from attestd.evidence import _json
from attestd.evidence.envelope import parse_envelope, sign_json, verify_envelope
from attestd.evidence.errors import EnvelopeSignatureError, EvidenceFormatError
from attestd.evidence.keys import key_id
from attestd.evidence.statement import STATEMENT_TYPE
from attestd.verifier.errors import VerifierError
from attestd.verifier.layout import Layout, LayoutError, parse_layout

__all__ = [
    "LAYOUT_MEDIA_TYPE",
    "LAYOUT_PREDICATE_TYPE",
    "MAX_LAYOUT_BYTES",
    "LayoutAttestationError",
    "LayoutSignatureError",
    "SignedLayout",
    "open_layout_attestation",
    "sign_layout",
]

LAYOUT_PREDICATE_TYPE: Final = "https://attestd.dev/layout/v1"
"""The in-toto predicate type of a signed layout (docs/layout-attestation.md)."""
LAYOUT_MEDIA_TYPE: Final = "application/toml"
"""How the predicate's ``layout`` text is encoded: a layout file (docs/layout.md)."""
MAX_LAYOUT_BYTES: Final = 1024 * 1024
"""A layout larger than this is refused (layouts are a few kilobytes)."""

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class LayoutAttestationError(VerifierError):
    """A layout attestation that is not one: malformed envelope, statement or predicate."""

    reason = "layout_attestation_invalid"


class LayoutSignatureError(LayoutAttestationError):
    """The layout attestation carries no valid signature by the expected key."""

    reason = "layout_signature_invalid"


@dataclass(frozen=True)
class SignedLayout:
    """A layout whose attestation verified under ``key_id``'s key."""

    layout: Layout
    text: str
    """The layout's TOML text, exactly as signed."""
    sha256: str
    """Hex SHA-256 of ``text`` (UTF-8): the statement's subject digest."""
    key_id: str
    """The signer: ``attestd.evidence.keys.key_id`` of the key it verified under."""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sign_layout(
    text: str, private_key: ec.EllipticCurvePrivateKey, *, source: Path = Path("layout.toml")
) -> bytes:
    """The signed layout attestation (DSSE envelope JSON) of the layout ``text``.

    ``sign_layout(Path("layout.toml").read_text(), key)``. The layout is parsed
    first (``source`` resolves its relative paths and names it in errors), so
    only a layout that loads is signed: :class:`LayoutError` otherwise.
    """
    data = text.encode("utf-8")
    if len(data) > MAX_LAYOUT_BYTES:
        raise LayoutError(f"{len(data)} bytes, more than {MAX_LAYOUT_BYTES}", path=str(source))
    layout = _parse(text, source)
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": f"layout:{layout.pipeline}", "digest": {"sha256": _digest(text)}}],
        "predicateType": LAYOUT_PREDICATE_TYPE,
        "predicate": {
            "pipeline": layout.pipeline,
            "layoutMediaType": LAYOUT_MEDIA_TYPE,
            "layout": text,
        },
    }
    return sign_json(statement, private_key)


def _parse(text: str, source: Path) -> Layout:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise LayoutError(f"not TOML: {err}", path=str(source)) from err
    return parse_layout(document, source=source)


def open_layout_attestation(
    data: bytes, public_key: ec.EllipticCurvePublicKey, *, source: Path
) -> SignedLayout:
    """The layout in the attestation ``data``, once its signature by ``public_key`` verifies.

    ``open_layout_attestation(Path(f).read_bytes(), key, source=Path(f)).layout``.
    Refuses a malformed envelope, statement or predicate
    (:class:`LayoutAttestationError`), a missing or wrong signature
    (:class:`LayoutSignatureError`, checked before the payload is read) and a
    signed layout that does not load (:class:`LayoutError`).
    """
    where = str(source)
    try:
        envelope = parse_envelope(data)
    except EvidenceFormatError as err:
        raise LayoutAttestationError(f"{where}: not a DSSE envelope: {err.message}") from err
    try:
        payload = verify_envelope(envelope, public_key)
    except EnvelopeSignatureError as err:
        raise LayoutSignatureError(f"{where}: {err.message}") from err
    try:
        text, pipeline = _read_statement(payload)
    except EvidenceFormatError as err:
        raise LayoutAttestationError(f"{where}: {err.message}") from err
    layout = _parse(text, source)
    if layout.pipeline != pipeline:
        raise LayoutAttestationError(
            f"{where}: the predicate names pipeline {pipeline!r}, the layout {layout.pipeline!r}"
        )
    return SignedLayout(layout, text, _digest(text), key_id(public_key))


def _read_statement(payload: bytes) -> tuple[str, str]:
    """The layout text and pipeline name of a layout statement; EvidenceFormatError if not one."""
    statement = _json.obj(
        _json.loads(payload, what="statement", max_bytes=2 * MAX_LAYOUT_BYTES),
        "$",
        fields=("_type", "subject", "predicateType", "predicate"),
    )
    if statement["_type"] != STATEMENT_TYPE:
        _json.fail("$._type", f"not {STATEMENT_TYPE!r}")
    if statement["predicateType"] != LAYOUT_PREDICATE_TYPE:
        _json.fail("$.predicateType", f"not {LAYOUT_PREDICATE_TYPE!r}: not a layout attestation")
    subjects = _json.array(statement["subject"], "$.subject", max_len=1)
    if len(subjects) != 1:
        _json.fail("$.subject", "a layout attestation has exactly one subject")
    subject = _json.obj(subjects[0], "$.subject[0]", fields=("name", "digest"))
    digest = _json.obj(subject["digest"], "$.subject[0].digest", fields=("sha256",))
    sha256 = _json.string(
        digest["sha256"], "$.subject[0].digest.sha256", max_len=64, pattern=_SHA256_HEX
    )
    predicate = _json.obj(
        statement["predicate"], "$.predicate", fields=("pipeline", "layoutMediaType", "layout")
    )
    pipeline = _json.string(predicate["pipeline"], "$.predicate.pipeline", min_len=1, max_len=1024)
    name = _json.string(subject["name"], "$.subject[0].name", max_len=1040)
    if name != f"layout:{pipeline}":
        _json.fail("$.subject[0].name", f"not 'layout:{pipeline}'")
    if predicate["layoutMediaType"] != LAYOUT_MEDIA_TYPE:
        _json.fail("$.predicate.layoutMediaType", f"not {LAYOUT_MEDIA_TYPE!r}")
    text = _json.string(predicate["layout"], "$.predicate.layout", max_len=MAX_LAYOUT_BYTES)
    # The subject names the layout by digest: the text must be the bytes it names.
    if _digest(text) != sha256:
        _json.fail("$.predicate.layout", "its SHA-256 is not the subject's digest")
    return text, pipeline
