"""Cryptographic verification of a TDX quote up to a trusted root.

    >>> from datetime import UTC, datetime
    >>> from attestd.tee.tdx.verify import VerifyOptions, intel_sgx_root_ca, verify_quote
    >>> options = VerifyOptions(trusted_roots=[intel_sgx_root_ca()], now=datetime.now(UTC))
    >>> quote = verify_quote(raw, options)   # raises a QuoteVerificationError subclass

The checks run in the order the trust flows: PCK chain to a trusted root,
PCK leaf key over the QE report, QE report binding the attestation key, and
the attestation key over the quote. Each failure has its own stable ``reason``.
This module proves who signed the quote; whether the TCB is current (TCB info,
QE identity, CRLs) and whether the measurements are acceptable are separate
steps.

A verified PCK chain is cached (bounded, :mod:`attestd.tee._cache`) under its
PEM bytes and the trusted roots, and served only for a ``now`` inside every
certificate's validity; outside it, the chain is checked again in full, so an
expired certificate is still ``certificate_expired``. Signatures that verified
are remembered: a quote's by its bytes, key and signature, so that
:mod:`attestd.tee.tdx.dcap` does not check the same quote signature twice; the
QE report's by the digest of the certification data that holds the report, its
signature and the PCK chain (a platform's quotes share it). The attestation
key's point is decoded once per distinct bytes.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from attestd.tee import _cache
from attestd.tee.errors import (
    CertificateExpiredError,
    QuoteVerificationError,
    UntrustedRootError,
)
from attestd.tee.tdx.abi import Quote, parse_quote

PCK_CHAIN_INVALID = "pck_chain_invalid"
UNTRUSTED_ROOT = UntrustedRootError.reason
CERTIFICATE_EXPIRED = CertificateExpiredError.reason
QE_REPORT_SIGNATURE_INVALID = "qe_report_signature_invalid"
ATTESTATION_KEY_BINDING_INVALID = "attestation_key_binding_invalid"
QUOTE_SIGNATURE_INVALID = "quote_signature_invalid"


class PckChainInvalidError(QuoteVerificationError):
    """The PCK chain is malformed, mis-signed, not a CA chain, or its leaf key is not P-256."""

    reason = PCK_CHAIN_INVALID


class QeReportSignatureInvalidError(QuoteVerificationError):
    """The quoting enclave's report is not signed by the PCK certificate's key."""

    reason = QE_REPORT_SIGNATURE_INVALID


class AttestationKeyBindingInvalidError(QuoteVerificationError):
    """The QE report does not vouch for the attestation key that signed the quote."""

    reason = ATTESTATION_KEY_BINDING_INVALID


class QuoteSignatureInvalidError(QuoteVerificationError):
    """The quote is not signed by its attestation key (or that key is not a P-256 point)."""

    reason = QUOTE_SIGNATURE_INVALID


_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())

# A verifier sees a few platforms (PCK chains) and many quotes from each.
_PCK_CHAINS: _cache.ValidityCache[
    tuple[bytes, tuple[x509.Certificate, ...]], ec.EllipticCurvePublicKey
] = _cache.ValidityCache("tdx.pck_chains", maxsize=1024)
_SIGNATURES: _cache.ValidityCache[bytes, bool] = _cache.ValidityCache(
    "tdx.signatures", maxsize=4096
)
_ATTESTATION_KEYS: _cache.ValidityCache[bytes, ec.EllipticCurvePublicKey] = _cache.ValidityCache(
    "tdx.attestation_keys", maxsize=1024
)


@dataclass(frozen=True)
class VerifyOptions:
    """What verification trusts: the root certificates, and the clock (timezone-aware)."""

    trusted_roots: Sequence[x509.Certificate]
    now: datetime

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("VerifyOptions.now must be timezone-aware")


@cache
def intel_sgx_root_ca() -> x509.Certificate:
    """Intel's SGX Root CA, shipped with attestd; the root of every real PCK chain."""
    pem = resources.files("attestd.tee.tdx").joinpath("intel_sgx_root_ca.pem").read_bytes()
    return x509.load_pem_x509_certificate(pem)


def verify_quote(quote: Quote | bytes, options: VerifyOptions) -> Quote:
    """Check every signature from the trusted root down to the quote; return the quote.

    Bytes are parsed first, so malformed input raises QuoteFormatError.
    """
    if not isinstance(quote, Quote):
        quote = parse_quote(quote)
    cert_data = quote.certification_data
    pck_key = _cached_pck_chain(cert_data.pck_chain_pem, quote.pck_chain(), options)
    # The PCK leaf key, the QE report and its signature all lie in the certification data,
    # whose digest (computed once per platform's bytes) therefore names this check's answer.
    qe_report_checked = _QE_REPORT_SIGNED + cert_data.digest
    if not _signature_verified_under(qe_report_checked):
        _verify_signature(
            pck_key,
            cert_data.qe_report_signature,
            cert_data.qe_report.to_bytes(),
            QeReportSignatureInvalidError,
            "the QE report is not signed by the PCK certificate's key",
        )
        _remember_verified(qe_report_checked)
    _verify_attestation_key_binding(quote)
    verify_quote_signature(quote)
    return quote


def verify_quote_signature(quote: Quote) -> None:
    """The attestation key in the quote signed its header and body (QuoteSignatureInvalidError).

    Only this link; :func:`verify_quote` checks the chain that vouches for the key.
    """
    key = quote.signature_data.attestation_key
    signature = quote.signature_data.signature
    region = quote.signed_region
    if _signature_verified(key, signature, region):
        return
    _verify_signature(
        _attestation_public_key(key),
        signature,
        region,
        QuoteSignatureInvalidError,
        "the quote is not signed by the attestation key",
    )
    _remember_signature(key, signature, region)


def _signature_verified(key: bytes, signature: bytes, data: bytes) -> bool:
    return _signature_verified_under(_cache.digest(key, signature, data))


def _remember_signature(key: bytes, signature: bytes, data: bytes) -> None:
    _remember_verified(_cache.digest(key, signature, data))


# Keys of _SIGNATURES are 32-byte digests; with this prefix, the QE report's are 48 bytes.
_QE_REPORT_SIGNED = b"qe-report-signed"


def _signature_verified_under(key: bytes) -> bool:
    return _SIGNATURES.get(key, _cache.ALWAYS[0]) is not None


def _remember_verified(key: bytes) -> None:
    # A signature that verified over these bytes under this key always will: no clock.
    start, end = _cache.ALWAYS
    _SIGNATURES.put(key, True, not_before=start, not_after=end)


def _cached_pck_chain(
    pem: bytes, chain: Sequence[x509.Certificate], options: VerifyOptions
) -> ec.EllipticCurvePublicKey:
    """:func:`_verify_pck_chain`, served from the cache while ``now`` is inside every validity.

    The key is the chain's PEM bytes and the trusted roots (certificates compare
    and hash by their DER), so a chain verified under one root is never served
    for another.
    """
    key = (pem, tuple(options.trusted_roots))
    leaf_key = _PCK_CHAINS.get(key, options.now)
    if leaf_key is not None:
        return leaf_key
    leaf_key = _verify_pck_chain(chain, options)
    not_before = max(c.not_valid_before_utc for c in chain)
    not_after = min(c.not_valid_after_utc for c in chain)
    _PCK_CHAINS.put(key, leaf_key, not_before=not_before, not_after=not_after)
    return leaf_key


def _verify_pck_chain(
    chain: Sequence[x509.Certificate], options: VerifyOptions
) -> ec.EllipticCurvePublicKey:
    # cryptography decodes some certificate parts lazily, so a damaged field
    # can first surface here, as ValueError or UnsupportedAlgorithm.
    try:
        return _check_pck_chain(chain, options)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise PckChainInvalidError(f"a PCK certificate cannot be processed: {e}") from e


def _check_pck_chain(
    chain: Sequence[x509.Certificate], options: VerifyOptions
) -> ec.EllipticCurvePublicKey:
    """Walk leaf → intermediates → self-signed root; return the leaf's P-256 key.

    Signatures come first, then the anchor, then the clock: an expired chain of
    good signatures from a trusted root reports ``certificate_expired``, not less.
    """
    if len(chain) < 2:
        raise PckChainInvalidError(f"the PCK chain has {len(chain)} certificate(s)")
    for child, issuer in zip(chain, [*chain[1:], chain[-1]], strict=True):
        try:
            child.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature) as e:
            subject = child.subject.rfc4514_string()
            raise PckChainInvalidError(f"{subject!r} is not signed by its issuer: {e}") from e
    for ca in chain[1:]:
        if not _is_ca(ca):
            subject = ca.subject.rfc4514_string()
            raise PckChainInvalidError(f"{subject!r} issues certificates but is not a CA")
    root_der = chain[-1].public_bytes(Encoding.DER)
    if not any(
        hmac.compare_digest(root_der, t.public_bytes(Encoding.DER)) for t in options.trusted_roots
    ):
        subject = chain[-1].subject.rfc4514_string()
        raise UntrustedRootError(f"the PCK chain ends at {subject!r}, not a trusted root")
    for cert in chain:
        if not cert.not_valid_before_utc <= options.now <= cert.not_valid_after_utc:
            subject = cert.subject.rfc4514_string()
            raise CertificateExpiredError(f"{subject!r} is not valid at {options.now}")
    leaf_key = chain[0].public_key()
    if not isinstance(leaf_key, ec.EllipticCurvePublicKey) or leaf_key.curve.name != "secp256r1":
        raise PckChainInvalidError("the PCK certificate's key is not ECDSA P-256")
    return leaf_key


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _verify_attestation_key_binding(quote: Quote) -> None:
    """The QE report's REPORTDATA must be SHA-256(attestation key ‖ QE auth data) ‖ 32 zeros."""
    cert_data = quote.certification_data
    expected = hashlib.sha256(
        quote.signature_data.attestation_key + cert_data.qe_auth_data
    ).digest() + bytes(32)
    if not hmac.compare_digest(cert_data.qe_report.report_data, expected):
        raise AttestationKeyBindingInvalidError(
            "the QE report does not vouch for this attestation key and auth data",
        )


def _attestation_public_key(raw: bytes) -> ec.EllipticCurvePublicKey:
    # A quoting enclave signs many quotes with one key: the point is decoded (and checked
    # to lie on the curve) once per distinct bytes. Only points that decoded are kept.
    start, end = _cache.ALWAYS
    key = _ATTESTATION_KEYS.get(raw, start)
    if key is not None:
        return key
    try:
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + raw)
    except ValueError as e:
        raise QuoteSignatureInvalidError("the attestation key is not a P-256 point") from e
    _ATTESTATION_KEYS.put(raw, key, not_before=start, not_after=end)
    return key


def _verify_signature(
    key: ec.EllipticCurvePublicKey,
    raw_signature: bytes,
    data: bytes,
    error: type[QuoteVerificationError],
    message: str,
) -> None:
    """Verify a raw r||s (two 32-byte big-endian integers) ECDSA-P256-SHA256 signature."""
    r = int.from_bytes(raw_signature[:32], "big")
    s = int.from_bytes(raw_signature[32:], "big")
    try:
        key.verify(encode_dss_signature(r, s), data, _ECDSA_SHA256)
    except InvalidSignature as e:
        raise error(message) from e
