"""Cryptographic verification of an SEV-SNP attestation report up to a trusted AMD root.

    >>> from datetime import UTC, datetime
    >>> from attestd.tee.snp.verify import VerifyOptions, load_certificate, verify_report
    >>> vcek = load_certificate(vcek_der)    # AMD's VCEKs have serial 0: loaded quietly
    >>> report = verify_report(raw, vcek=vcek, options=VerifyOptions(now=datetime.now(UTC)))
    >>> # raises a QuoteVerificationError subclass whose reason names the broken link

The report's SIGNING_KEY field says which key signed it, and so which chain:
a VCEK (chip-unique, from AMD's KDS) is signed by the ASK; a VLEK (loaded into
the chip by a cloud provider, named by its csp_id) by the ASVK. Both
intermediates are signed by the same ARK. The certificate given must be of the
kind the report names, checked first (``signing_key_mismatch``), so a VLEK is
never tried against the ASK or a VCEK against the ASVK.

The checks then run in the order the trust flows: ARK self-signed and trusted,
ASK (or ASVK) signed by the ARK, VCEK (or VLEK) signed by it (RSA-PSS, SHA-384,
salt 48), every certificate valid at ``now``, the report signed by the VCEK
(ECDSA P-384, SHA-384), and the VCEK's AMD extensions naming this chip and this
reported TCB.
The extension OIDs are those of AMD's VCEK specification (publication 57230)
as go-sev-guest's ``kds`` package reads them. Whether the TCB is current and
the measurement acceptable are policy, and separate.

Revocation is checked when the options carry a CRL source
(``VerifyOptions(revocation=...)``; attestd's is :class:`attestd.tee.snp.kds.CrlSource`).
AMD's KDS serves, per product, a CRL issued and signed by the ARK
(``/vcek/v1/{product}/crl`` for the ASK chain, ``/vlek/v1/{product}/crl`` for
the ASVK chain; the URL each intermediate names as its CRL distribution point).
It is checked against the ARK that anchored the chain: issuer the ARK's
subject, signed with the same fixed RSA-PSS rule as the certificates,
thisUpdate <= now < nextUpdate; then the ASK (or ASVK) must not be listed.
The VCEK or VLEK is not looked up in it: a CRL lists the serials of the
certificates its issuer signed (RFC 5280), the VCEK's issuer is the ASK, and
AMD issues every VCEK with serial 0, so a match would name another certificate.
AMD retires a chip's key by raising the TCB instead (``snp.min_tcb``), as
go-sev-guest's ``verify`` notes.

A verified CRL is cached, bounded, under its exact bytes and the ARK, and
served only while ``now`` is inside thisUpdate..nextUpdate; whether the chain's
intermediate is listed is decided on every call.

A verified chain (three RSA-PSS signatures) is cached, bounded, under the
three certificates and the trusted ARKs, and served only for a ``now`` inside
all three validities; outside it the chain is checked in full again. A
VCEK's extensions are cached by the certificate. The report's own signature
is checked every time.
"""

from __future__ import annotations

import hmac
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from importlib import resources
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat import asn1
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning

from attestd.tee import _cache
from attestd.tee.errors import (
    CertificateExpiredError,
    QuoteVerificationError,
    TeeError,
    UntrustedRootError,
)
from attestd.tee.snp.abi import (
    MILAN,
    PRODUCTS,
    SIGNATURE_ALGO_ECDSA_P384_SHA384,
    SIGNING_KEY_VCEK,
    SIGNING_KEY_VLEK,
    TURIN,
    AttestationReport,
    TcbVersion,
    parse_report,
)

VCEK_CHAIN_INVALID = "vcek_chain_invalid"
UNTRUSTED_ROOT = UntrustedRootError.reason
CERTIFICATE_EXPIRED = CertificateExpiredError.reason
REPORT_SIGNATURE_INVALID = "report_signature_invalid"
VCEK_EXTENSIONS_INVALID = "vcek_extensions_invalid"
PRODUCT_MISMATCH = "product_mismatch"
SIGNING_KEY_MISMATCH = "signing_key_mismatch"
TCB_MISMATCH = "tcb_mismatch"
CHIP_ID_MISMATCH = "chip_id_mismatch"
# The revocation reasons are the names the TDX side gives the same failures (tee/tdx/dcap.py).
CERTIFICATE_REVOKED = "certificate_revoked"
COLLATERAL_UNAVAILABLE = "collateral_unavailable"
COLLATERAL_TOO_LARGE = "collateral_too_large"
COLLATERAL_MALFORMED = "collateral_malformed"
COLLATERAL_SIGNATURE_INVALID = "collateral_signature_invalid"
COLLATERAL_EXPIRED = "collateral_expired"
COLLATERAL_NOT_YET_VALID = "collateral_not_yet_valid"


class VcekChainInvalidError(QuoteVerificationError):
    """The VCEK -> ASK -> ARK (or VLEK -> ASVK -> ARK) chain is unreadable, mis-signed
    or not a CA chain."""

    reason = VCEK_CHAIN_INVALID


class ReportSignatureInvalidError(QuoteVerificationError):
    """The report is not signed by the VCEK (or uses an algorithm attestd does not know)."""

    reason = REPORT_SIGNATURE_INVALID


class VcekExtensionsInvalidError(QuoteVerificationError):
    """The VCEK's AMD extensions (TCB, hwID, productName) are missing or malformed."""

    reason = VCEK_EXTENSIONS_INVALID


class ProductMismatchError(QuoteVerificationError):
    """The options, the VCEK and the report name different products."""

    reason = PRODUCT_MISMATCH


class SigningKeyMismatchError(QuoteVerificationError):
    """The report's SIGNING_KEY names another kind of key (VCEK or VLEK) than the one given.

    A VLEK presented for a VCEK-signed report, a VCEK for a VLEK-signed one, or a
    report whose field names no key at all.
    """

    reason = SIGNING_KEY_MISMATCH


class TcbMismatchError(QuoteVerificationError):
    """The report's REPORTED_TCB is not the TCB the VCEK was issued for."""

    reason = TCB_MISMATCH


class ChipIdMismatchError(QuoteVerificationError):
    """The report's CHIP_ID is not the VCEK's hwID."""

    reason = CHIP_ID_MISMATCH


class CertificateRevokedError(QuoteVerificationError):
    """The ARK's CRL lists the chain's ASK (or ASVK)."""

    reason = CERTIFICATE_REVOKED


class CrlMalformedError(QuoteVerificationError):
    """The bytes offered as the ARK's CRL are not a DER (or PEM) CRL with a nextUpdate."""

    reason = COLLATERAL_MALFORMED


class CrlSignatureInvalidError(QuoteVerificationError):
    """The CRL is not issued and signed (RSA-PSS, SHA-384, salt 48) by the chain's ARK."""

    reason = COLLATERAL_SIGNATURE_INVALID


class CrlExpiredError(QuoteVerificationError):
    """The CRL's nextUpdate is at or before ``now``: a newer one should exist."""

    reason = COLLATERAL_EXPIRED


class CrlNotYetValidError(QuoteVerificationError):
    """The CRL's thisUpdate is after ``now`` (a clock apart, or a CRL from the future)."""

    reason = COLLATERAL_NOT_YET_VALID


class CrlUnavailableError(TeeError):
    """No source could provide the ARK's CRL; the message says what was tried.

    With revocation checking on this fails the verification: no CRL, no verdict.
    """

    reason = COLLATERAL_UNAVAILABLE


class CrlTooLargeError(CrlUnavailableError):
    """A CRL file or response is larger than the bound (``kds.MAX_CRL_BYTES``)."""

    reason = COLLATERAL_TOO_LARGE


# AMD's KDS extensions, under 1.3.6.1.4.1.3704.1 (go-sev-guest kds/kds.go).
_AMD = "1.3.6.1.4.1.3704.1"
OID_STRUCT_VERSION = x509.ObjectIdentifier(f"{_AMD}.1")
OID_PRODUCT_NAME = x509.ObjectIdentifier(f"{_AMD}.2")
OID_BL_SPL = x509.ObjectIdentifier(f"{_AMD}.3.1")
OID_TEE_SPL = x509.ObjectIdentifier(f"{_AMD}.3.2")
OID_SNP_SPL = x509.ObjectIdentifier(f"{_AMD}.3.3")
OID_UCODE_SPL = x509.ObjectIdentifier(f"{_AMD}.3.8")
OID_FMC_SPL = x509.ObjectIdentifier(f"{_AMD}.3.9")  # Turin
OID_HWID = x509.ObjectIdentifier(f"{_AMD}.4")
OID_CSP_ID = x509.ObjectIdentifier(f"{_AMD}.5")  # VLEK only
TURIN_HWID_SIZE = 8

_ECDSA_SHA384 = ec.ECDSA(hashes.SHA384())
_AMD_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
_SERIAL_WARNING = r"Parsed a serial number which wasn't positive"

# Certificates hash and compare by their DER, so they key these caches directly.
_ChainKey = tuple[
    x509.Certificate, x509.Certificate, x509.Certificate | None, tuple[x509.Certificate, ...], str
]
# The verified chain's signing key, and the ARK that anchored it (its CRL is that ARK's).
_CHAINS: _cache.ValidityCache[_ChainKey, tuple[ec.EllipticCurvePublicKey, x509.Certificate]] = (
    _cache.ValidityCache("snp.chains", maxsize=1024)
)
_EXTENSIONS: _cache.ValidityCache[x509.Certificate, VcekExtensions] = _cache.ValidityCache(
    "snp.vcek_extensions", maxsize=1024
)
_CERTIFICATES: _cache.ValidityCache[bytes, x509.Certificate] = _cache.ValidityCache(
    "snp.certificates", maxsize=1024
)
# One CRL per product and key kind is current at a time: a few entries suffice.
_CRLS: _cache.ValidityCache[tuple[bytes, x509.Certificate], RevocationList] = _cache.ValidityCache(
    "snp.crls", maxsize=64
)


class CrlSource(Protocol):
    """Where the ARK's CRL for a product's VCEK or VLEK chain comes from.

    ``accept`` verifies a candidate's bytes (raising its verdict) and returns
    its nextUpdate; a source keeps or serves only bytes ``accept`` took, so a
    forged or stale CRL never enters a cache. Attestd's is
    :class:`attestd.tee.snp.kds.CrlSource`.
    """

    def crl(
        self,
        product: str,
        signing_key: int,
        now: datetime,
        accept: Callable[[bytes], datetime],
    ) -> bytes: ...


@dataclass(frozen=True)
class VerifyOptions:
    """The clock (timezone-aware), the product if known, the trusted ARKs, the CRL source.

    ``trusted_arks=None`` trusts AMD's pinned ARKs (Milan, Genoa, Turin).
    ``product`` picks the TCB layout and default ASK; None reads it from the
    report (version 3 and later) or the VCEK's productName.
    """

    now: datetime
    product: str | None = None
    trusted_arks: Sequence[x509.Certificate] | None = None
    revocation: CrlSource | None = None
    """Where the ARK's CRL comes from; None checks no revocation."""

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("VerifyOptions.now must be timezone-aware")
        if self.product is not None and self.product not in PRODUCTS:
            raise ValueError(f"unknown product {self.product!r}; known: {', '.join(PRODUCTS)}")

    def arks(self) -> Sequence[x509.Certificate]:
        if self.trusted_arks is not None:
            return self.trusted_arks
        return [amd_ark(p) for p in PRODUCTS]


def load_certificate(data: bytes) -> x509.Certificate:
    """A certificate from DER or PEM, without the warning AMD's serial-0 VCEKs trigger.

    AMD issues every VCEK with serial number 0, which RFC 5280 forbids and
    cryptography (>= 42) warns about on load. attestd knows and accepts this
    for AMD certificates, so that one warning, and only it, is silenced here.
    (Reading ``.serial_number`` of such a certificate warns again; attestd never does.)
    """
    # The evidence of a chip carries its same VCEK, ASK and ARK every time: a certificate
    # is parsed once per distinct bytes (it is an immutable value). Only what parsed is kept.
    start, end = _cache.ALWAYS
    data = bytes(data)
    cached = _CERTIFICATES.get(data, start)
    if cached is not None:
        return cached
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=_SERIAL_WARNING, category=CryptographyDeprecationWarning
        )
        if data.lstrip().startswith(b"-----BEGIN"):
            certificate = x509.load_pem_x509_certificate(data)
        else:
            certificate = x509.load_der_x509_certificate(data)
    _CERTIFICATES.put(data, certificate, not_before=start, not_after=end)
    return certificate


#: The report's SIGNING_KEY values, by the names attestd uses for the key kinds.
SIGNING_KEY_NAMES = {SIGNING_KEY_VCEK: "vcek", SIGNING_KEY_VLEK: "vlek"}


@cache
def _pinned(product: str, stem: str = "ask_ark") -> tuple[x509.Certificate, x509.Certificate]:
    """The (intermediate, ARK) pair AMD publishes: ``ask_ark`` or ``asvk_ark``."""
    if product not in PRODUCTS:
        raise ValueError(f"unknown product {product!r}; known: {', '.join(PRODUCTS)}")
    name = f"{stem}_{product.lower()}.pem"
    pem = resources.files("attestd.tee.snp").joinpath(name).read_bytes()
    intermediate, ark = x509.load_pem_x509_certificates(pem)
    return intermediate, ark


def amd_ark(product: str) -> x509.Certificate:
    """AMD's root key certificate (ARK) for ``product``, shipped with attestd."""
    return _pinned(product)[1]


def amd_ask(product: str) -> x509.Certificate:
    """AMD's SEV signing key certificate (ASK) for ``product``, shipped with attestd."""
    return _pinned(product)[0]


def amd_asvk(product: str) -> x509.Certificate:
    """AMD's SEV VLEK signing key certificate (ASVK) for ``product``, shipped with attestd.

    It signs the VLEKs AMD issues to cloud providers, under the same ARK as the ASK.
    """
    return _pinned(product, "asvk_ark")[0]


def amd_intermediate(product: str, signing_key: int) -> x509.Certificate:
    """The pinned certificate that signs ``signing_key``'s kind: the ASK or the ASVK."""
    if signing_key == SIGNING_KEY_VLEK:
        return amd_asvk(product)
    return amd_ask(product)


def key_kind(extensions: VcekExtensions) -> int:
    """SIGNING_KEY_VLEK for a certificate with a csp_id, else SIGNING_KEY_VCEK (it has a hwID)."""
    return SIGNING_KEY_VLEK if extensions.csp_id is not None else SIGNING_KEY_VCEK


def verify_report(
    report: AttestationReport | bytes,
    *,
    vcek: x509.Certificate,
    ask: x509.Certificate | None = None,
    ark: x509.Certificate | None = None,
    options: VerifyOptions,
) -> AttestationReport:
    """Check every link from a trusted ARK down to the report; return the report.

    ``vcek`` may be a VLEK, when the report's SIGNING_KEY says a VLEK signed it.
    ``ask`` (the ASK, or the ASVK for a VLEK) defaults to AMD's pinned one of
    the product and of the report's signing key; ``ark`` to the trusted ARK
    that signed it. Bytes are parsed first, so malformed input raises
    QuoteFormatError.

    With ``options.revocation`` set, the ARK's CRL for the product and the
    report's key kind is fetched and checked after the chain (and before the
    report's signature); a CRL that cannot be had fails the verification
    (``collateral_unavailable``), as a bad or listed one does.
    """
    if not isinstance(report, AttestationReport):
        report = parse_report(report)
    extensions = _read_extensions(vcek)
    _check_signing_key(report, extensions)
    product = _product(report, extensions, options)
    kind = _kind_name(report.signing_key)
    if ask is None:
        if product is None:
            raise VcekChainInvalidError(f"no {_issuer_name(kind)} given and the product is unknown")
        ask = amd_intermediate(product, report.signing_key)
    try:
        vcek_key, anchor = _cached_chain(vcek, ask, ark, options, kind)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        # cryptography decodes some certificate parts lazily; damage can surface here.
        raise VcekChainInvalidError(f"a certificate cannot be processed: {e}") from e
    if options.revocation is not None:
        check_not_revoked(ask, anchor, product, report.signing_key, options)
    _verify_report_signature(report, vcek_key)
    _verify_claims(report, extensions, product)
    return report


def _subject(cert: x509.Certificate) -> str:
    return repr(cert.subject.rfc4514_string())


def _kind_name(signing_key: int) -> str:
    return "VLEK" if signing_key == SIGNING_KEY_VLEK else "VCEK"


def _issuer_name(kind: str) -> str:
    return "ASVK" if kind == "VLEK" else "ASK"


def _check_signing_key(report: AttestationReport, extensions: VcekExtensions) -> None:
    """The certificate is of the kind the report's SIGNING_KEY names, checked before any chain.

    Checked first so that a VLEK given for a VCEK-signed report (or the reverse)
    is named as such, not as a chain that does not verify.
    """
    given = key_kind(extensions)
    if report.signing_key == given:
        return
    named = SIGNING_KEY_NAMES.get(report.signing_key)
    what = f"a {named.upper()}" if named is not None else f"no key ({report.signing_key})"
    raise SigningKeyMismatchError(
        f"the report's SIGNING_KEY names {what}, but the certificate given is a "
        f"{_kind_name(given)}",
    )


def _cached_chain(
    vcek: x509.Certificate,
    ask: x509.Certificate,
    ark: x509.Certificate | None,
    options: VerifyOptions,
    kind: str,
) -> tuple[ec.EllipticCurvePublicKey, x509.Certificate]:
    """:func:`_verify_chain`, served from the cache while ``now`` is inside every validity.

    The key holds the certificates given (``ark`` may be None: found among the
    trusted ones) and the trusted ARKs, so a chain verified under one root is
    never served for another.
    """
    key: _ChainKey = (vcek, ask, ark, tuple(options.arks()), kind)
    cached = _CHAINS.get(key, options.now)
    if cached is not None:
        return cached
    verified = _verify_chain(vcek, ask, ark, options, kind)
    # The ARK that anchored it is among the trusted ones; its validity was checked too.
    chain = [vcek, ask, verified[1]]
    not_before = max(c.not_valid_before_utc for c in chain)
    not_after = min(c.not_valid_after_utc for c in chain)
    _CHAINS.put(key, verified, not_before=not_before, not_after=not_after)
    return verified


def _verify_chain(
    vcek: x509.Certificate,
    ask: x509.Certificate,
    ark: x509.Certificate | None,
    options: VerifyOptions,
    kind: str = "VCEK",
) -> tuple[ec.EllipticCurvePublicKey, x509.Certificate]:
    """ASK → VCEK (or ASVK → VLEK) signatures, then the anchor, then the clock; return the
    signing key's P-384 key and the ARK that anchors the chain.

    An expired chain of good signatures from a trusted root reports
    ``certificate_expired``, not less.
    """
    issuer = _issuer_name(kind)
    try:
        _verify_pss(vcek, ask)
    except VcekChainInvalidError as e:
        # The usual cause is the other kind's intermediate: say which one signs a VLEK.
        raise VcekChainInvalidError(
            f"{e.message} (a {kind} is signed by the {issuer}"
            f"{', not the ASK' if kind == 'VLEK' else ''})"
        ) from e
    trusted = options.arks()
    if ark is None:
        ark = next((t for t in trusted if _signed_by(ask, t)), None)
        if ark is None:
            raise UntrustedRootError(f"no trusted ARK signed the {issuer} {_subject(ask)}")
    _verify_pss(ask, ark)
    _verify_pss(ark, ark)
    for ca in (ask, ark):
        if not _is_ca(ca):
            raise VcekChainInvalidError(f"{_subject(ca)} issues certificates but is not a CA")
    ark_der = ark.public_bytes(Encoding.DER)
    if not any(hmac.compare_digest(ark_der, t.public_bytes(Encoding.DER)) for t in trusted):
        raise UntrustedRootError(f"the chain ends at {_subject(ark)}, not a trusted ARK")
    for cert in (vcek, ask, ark):
        if not cert.not_valid_before_utc <= options.now <= cert.not_valid_after_utc:
            raise CertificateExpiredError(f"{_subject(cert)} is not valid at {options.now}")
    key = vcek.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise VcekChainInvalidError(f"the {kind}'s key is not ECDSA P-384")
    return key, ark


def _signed_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        _verify_pss(child, issuer)
    except (QuoteVerificationError, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _verify_pss(child: x509.Certificate, issuer: x509.Certificate) -> None:
    """``issuer``'s RSA key signed ``child`` with RSA-PSS, SHA-384, MGF1-SHA-384, salt 48.

    AMD's chain uses exactly these parameters; fixing them here, rather than
    following what the certificate claims, leaves no algorithm to negotiate.
    """
    key = issuer.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise VcekChainInvalidError(f"{_subject(issuer)} has no RSA key")
    if child.issuer != issuer.subject:
        raise VcekChainInvalidError(f"{_subject(child)} names another issuer")
    if not _amd_pss_valid(key, child.signature, child.tbs_certificate_bytes):
        raise VcekChainInvalidError(f"{_subject(child)} is not signed by {_subject(issuer)}")


def _amd_pss_valid(key: rsa.RSAPublicKey, signature: bytes, signed: bytes) -> bool:
    """AMD's one signature rule, for certificates and CRLs alike: RSA-PSS, SHA-384,
    MGF1-SHA-384, salt 48, whatever algorithm the signed object claims."""
    try:
        key.verify(signature, signed, _AMD_PSS, hashes.SHA384())
    except InvalidSignature:
        return False
    return True


# -- the ARK's CRL -----------------------------------------------------------------


@dataclass(frozen=True)
class RevocationList:
    """A CRL the ARK signed, verified at some ``now``: its dates and the serials it lists."""

    this_update: datetime
    next_update: datetime
    revoked: frozenset[int]


def verify_crl(data: bytes, ark: x509.Certificate, now: datetime) -> RevocationList:
    """``data`` as the ARK's CRL, current at ``now``; raises its named verdict.

        >>> crl = verify_crl(der, amd_ark("Milan"), datetime.now(UTC))
        >>> ask.serial_number in crl.revoked

    Checked in this order, so each failure has one name: a DER or PEM CRL with
    a nextUpdate (``collateral_malformed``), issued by the ARK and signed by
    its key with AMD's RSA-PSS rule (``collateral_signature_invalid``),
    thisUpdate <= now (``collateral_not_yet_valid``) and now < nextUpdate
    (``collateral_expired``). A verdict is cached for these bytes and this ARK
    while ``now`` is inside thisUpdate..nextUpdate.
    """
    data = bytes(data)
    cached = _CRLS.get((data, ark), now)
    if cached is not None:
        return cached
    crl = _parse_crl(data)
    key = ark.public_key()
    if crl.issuer != ark.subject or not isinstance(key, rsa.RSAPublicKey):
        raise CrlSignatureInvalidError(
            f"the CRL is issued by {crl.issuer.rfc4514_string()!r}, not by the ARK {_subject(ark)}"
        )
    if not _amd_pss_valid(key, crl.signature, crl.tbs_certlist_bytes):
        raise CrlSignatureInvalidError(f"the CRL is not signed by the ARK {_subject(ark)}")
    verified = _revocation_list(crl)
    if now < verified.this_update:
        raise CrlNotYetValidError(
            f"the ARK's CRL is valid from {verified.this_update.isoformat()}, after {now}"
        )
    if now >= verified.next_update:
        raise CrlExpiredError(
            f"the ARK's CRL expired at its nextUpdate {verified.next_update.isoformat()}"
        )
    # Expired at nextUpdate itself, so the cache serves it until just before.
    _CRLS.put(
        (data, ark),
        verified,
        not_before=verified.this_update,
        not_after=verified.next_update - timedelta(microseconds=1),
    )
    return verified


def check_not_revoked(
    intermediate: x509.Certificate,
    ark: x509.Certificate,
    product: str | None,
    signing_key: int,
    options: VerifyOptions,
) -> RevocationList:
    """The ARK's CRL from ``options.revocation``, verified, does not list ``intermediate``.

    ``intermediate`` is the ASK (``signing_key`` a VCEK) or the ASVK (a VLEK);
    the product and key kind pick the CRL (the KDS keeps one per both).
    """
    source = options.revocation
    kind = _kind_name(signing_key)
    if source is None:
        raise CrlUnavailableError("no CRL source is configured")
    if product is None:
        raise CrlUnavailableError(
            f"the product is unknown, so the ARK's CRL for the {kind} chain cannot be chosen "
            "(set the product)"
        )
    now = options.now

    def accept(data: bytes) -> datetime:
        return verify_crl(data, ark, now).next_update

    crl = verify_crl(source.crl(product, signing_key, now, accept), ark, now)
    serial = intermediate.serial_number  # AMD's ASKs and ASVKs have positive serials
    if serial in crl.revoked:
        raise CertificateRevokedError(
            f"the {_issuer_name(kind)} {_subject(intermediate)} (serial {serial:#x}) is on the "
            f"ARK's CRL of {crl.this_update.isoformat()}"
        )
    return crl


def _parse_crl(data: bytes) -> x509.CertificateRevocationList:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as e:
        raise CrlMalformedError(f"the ARK's CRL is not a DER or PEM CRL: {e}") from None


def _revocation_list(crl: x509.CertificateRevocationList) -> RevocationList:
    """The dates and serials, read strictly: cryptography decodes entries lazily."""
    try:
        this_update = crl.last_update_utc
        next_update = crl.next_update_utc
        revoked = frozenset(entry.serial_number for entry in crl)
    except (ValueError, TypeError) as e:
        raise CrlMalformedError(f"the ARK's CRL cannot be read: {e}") from None
    if next_update is None:
        raise CrlMalformedError("the ARK's CRL has no nextUpdate, so its freshness is unknown")
    return RevocationList(this_update, next_update, revoked)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _verify_report_signature(report: AttestationReport, key: ec.EllipticCurvePublicKey) -> None:
    if report.signature_algo != SIGNATURE_ALGO_ECDSA_P384_SHA384:
        raise ReportSignatureInvalidError(f"signature algorithm {report.signature_algo}")
    signature = encode_dss_signature(report.signature_r, report.signature_s)
    try:
        key.verify(signature, report.signed_region, _ECDSA_SHA384)
    except InvalidSignature as e:
        kind = _kind_name(report.signing_key)
        raise ReportSignatureInvalidError(f"the report is not signed by the {kind}") from e


# -- AMD's VCEK extensions -------------------------------------------------------


@dataclass(frozen=True)
class VcekExtensions:
    """What AMD's extensions in a VCEK or VLEK say; ``hwid`` is None on a VLEK."""

    product_name: str
    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None
    hwid: bytes | None
    csp_id: str | None
    reserved_spls: tuple[int, int, int, int]  # 1.3.6.1.4.1.3704.1.3.4 to .7

    @property
    def product(self) -> str | None:
        """``Milan-B0`` → ``Milan``; None for a name attestd does not know."""
        base = self.product_name.split("-", 1)[0]
        return base if base in PRODUCTS else None

    def tcb(self) -> TcbVersion:
        return TcbVersion(self.bootloader, self.tee, self.snp, self.microcode, self.fmc)


def vcek_extensions(cert: x509.Certificate) -> VcekExtensions:
    """Read AMD's extensions; raises QuoteVerificationError(vcek_extensions_invalid)."""
    return _read_extensions(cert)


def _read_extensions(cert: x509.Certificate) -> VcekExtensions:
    start, end = _cache.ALWAYS
    cached = _EXTENSIONS.get(cert, start)
    if cached is None:
        cached = _parse_extensions(cert)
        _EXTENSIONS.put(cert, cached, not_before=start, not_after=end)
    return cached


def _parse_extensions(cert: x509.Certificate) -> VcekExtensions:
    try:
        raw = {e.oid: e.value for e in cert.extensions}
    except (ValueError, TypeError) as e:
        raise VcekExtensionsInvalidError(f"the VCEK's extensions cannot be read: {e}") from e

    def value(oid: x509.ObjectIdentifier) -> bytes | None:
        ext = raw.get(oid)
        return ext.value if isinstance(ext, x509.UnrecognizedExtension) else None

    def spl(oid: x509.ObjectIdentifier, required: bool = True) -> int | None:
        data = value(oid)
        if data is None:
            if required:
                raise VcekExtensionsInvalidError(f"the VCEK lacks extension {oid.dotted_string}")
            return None
        try:
            number: int = asn1.decode_der(int, data)  # strict DER: minimal, nothing trailing
        except ValueError:
            number = -1
        if 0 <= number <= 0xFF:
            return number
        raise VcekExtensionsInvalidError(f"extension {oid.dotted_string} is not a 0..255 INTEGER")

    def ia5(oid: x509.ObjectIdentifier) -> str | None:
        data = value(oid)
        if data is None:
            return None
        try:
            text: str = asn1.decode_der(asn1.IA5String, data).as_str()
        except ValueError:
            raise VcekExtensionsInvalidError(
                f"extension {oid.dotted_string} is not an IA5String"
            ) from None
        return text

    product_name = ia5(OID_PRODUCT_NAME)
    if product_name is None:
        raise VcekExtensionsInvalidError("the VCEK lacks its productName extension")
    hwid = value(OID_HWID)
    if hwid is not None and len(hwid) == 66 and hwid[:2] == b"\x04\x40":
        # KDS omits the OCTET STRING tag; accept it should AMD add one.
        hwid = asn1.decode_der(bytes, hwid)
    csp_id = ia5(OID_CSP_ID)
    if (hwid is None) == (csp_id is None):
        raise VcekExtensionsInvalidError("need exactly one of hwID (VCEK) and csp_id (VLEK)")
    reserved = tuple(spl(x509.ObjectIdentifier(f"{_AMD}.3.{i}"), False) or 0 for i in range(4, 8))
    return VcekExtensions(
        product_name=product_name,
        bootloader=_int(spl(OID_BL_SPL)),
        tee=_int(spl(OID_TEE_SPL)),
        snp=_int(spl(OID_SNP_SPL)),
        microcode=_int(spl(OID_UCODE_SPL)),
        fmc=spl(OID_FMC_SPL, required=False),
        hwid=hwid,
        csp_id=csp_id,
        reserved_spls=(reserved[0], reserved[1], reserved[2], reserved[3]),
    )


def _int(value: int | None) -> int:
    assert value is not None  # required SPLs raise before this
    return value


def _product(
    report: AttestationReport, extensions: VcekExtensions, options: VerifyOptions
) -> str | None:
    """The product from the options, else the VCEK, else the report; all that speak must agree."""
    named = [p for p in (options.product, extensions.product, report.product) if p is not None]
    if len(set(named)) > 1:
        raise ProductMismatchError(f"the options, VCEK and report name {sorted(set(named))}")
    return named[0] if named else None


def _verify_claims(
    report: AttestationReport, extensions: VcekExtensions, product: str | None
) -> None:
    """The reported TCB and the chip id must be the VCEK's (a VLEK names no chip)."""
    layout = product or MILAN  # Milan and Genoa share a layout; Turin's VCEKs carry fmcSPL
    if extensions.fmc is not None:
        layout = TURIN
    expected = _expected_tcb(extensions, layout)
    if report.reported_tcb != expected:
        raise TcbMismatchError(
            f"reported TCB {report.reported_tcb:#018x} is not the VCEK's {expected:#018x} "
            f"({extensions.tcb()})",
        )
    if extensions.hwid is not None and not _same_chip(extensions.hwid, report.chip_id):
        raise ChipIdMismatchError("the report's CHIP_ID is not the VCEK's hwID")


def _expected_tcb(ext: VcekExtensions, layout: str) -> int:
    if layout == TURIN:
        return ext.tcb().encode(TURIN)
    spl4, spl5, spl6, spl7 = ext.reserved_spls
    b = bytes([ext.bootloader, ext.tee, spl4, spl5, spl6, spl7, ext.snp, ext.microcode])
    return int.from_bytes(b, "little")


def _same_chip(hwid: bytes, chip_id: bytes) -> bool:
    """64-byte hwIDs equal CHIP_ID; Turin's 8-byte ones equal its first 8 bytes, the rest zero."""
    if len(hwid) == len(chip_id):
        return hmac.compare_digest(hwid, chip_id)
    if len(hwid) == TURIN_HWID_SIZE:
        padded = hwid + bytes(len(chip_id) - TURIN_HWID_SIZE)
        return hmac.compare_digest(padded, chip_id)
    return False
