"""DCAP appraisal of a TDX quote with its collateral, by dcap-qvl: signatures, CRLs, TCB status.

    >>> from attestd.tee.tdx.dcap import DcapOptions, verify_with_collateral
    >>> result = verify_with_collateral(raw, collateral, DcapOptions(now=now))  # Intel's root
    >>> result.status, result.advisory_ids            # ("UpToDate", ())
    >>> verify_with_collateral(raw, sim.collateral(), DcapOptions(now, root=sim.trust_root()))

dcap-qvl checks the PCK chain, the QE report and quote signatures, the TCB info
and QE identity signatures and dates, both CRLs, and finds the platform's TCB
level. A quote it refuses raises a :class:`DcapVerificationError`, one
subclass per ``reason``:

- ``untrusted_root``: the quote's PCK chain does not end at the chosen root,
  or collateral does not chain to it;
- ``collateral_expired``: a CRL, the TCB info or the QE identity is past its
  nextUpdate at ``now`` (``collateral_not_yet_valid`` for one issued after it);
- ``tcb_revoked``: the platform's TCB level is Revoked;
- ``certificate_revoked``: a certificate of the PCK chain is on a CRL;
- ``certificate_expired``: a certificate is outside its validity at ``now``;
- ``quote_signature_invalid``, ``qe_report_signature_invalid``,
  ``attestation_key_binding_invalid``: as in :mod:`attestd.tee.tdx.verify`;
- ``collateral_signature_invalid``: TCB info or QE identity not signed by its issuer;
- ``collateral_mismatch``: the collateral is for another platform or quoting enclave,
  or names no TCB level of this one;
- ``collateral_malformed``: collateral dcap-qvl cannot read;
- ``dcap_verification_failed``: anything else, with dcap-qvl's message.

A malformed quote raises :class:`~attestd.tee.errors.QuoteFormatError` first.

dcap-qvl's verdict on a quote rests on the platform (PCK chain, QE report,
attestation key), the TD's TCB fields, the collateral and the root; not on
REPORTDATA or the RTMRs, which change with every nonce and event. An accepted
verdict is therefore cached (bounded) under everything but those fields and
the quote's signature, with the root and the collateral's digest, and served
only while ``now`` is inside every date it rests on (each certificate's
validity, each CRL's thisUpdate..nextUpdate, the TCB info's and QE identity's
issueDate..nextUpdate, a second inside each end). A served verdict still needs
the quote's own signature under its attestation key, checked here unless
:func:`attestd.tee.tdx.verify.verify_quote` already checked those bytes.
Refusals are never cached: each one runs dcap-qvl and keeps its reason.
The TCB statuses are Intel's, spelled as in Intel's TCB info JSON whatever
spelling dcap-qvl reports: ``UpToDate``, ``SWHardeningNeeded``,
``ConfigurationNeeded``, ``ConfigurationAndSWHardeningNeeded``, ``OutOfDate``,
``OutOfDateConfigurationNeeded``; ``Revoked`` is never returned, it is
``tcb_revoked``. Whether a status other than UpToDate is acceptable is policy.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import dcap_qvl
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from attestd.tee import _cache
from attestd.tee.errors import QuoteVerificationError
from attestd.tee.tdx.abi import TD_REPORT10_SIZE, Quote, parse_quote
from attestd.tee.tdx.collateral import Collateral
from attestd.tee.tdx.rtmr import RTMR_COUNT, RTMR_SIZE
from attestd.tee.tdx.verify import intel_sgx_root_ca, verify_quote_signature

INTEL: Literal["intel"] = "intel"

UP_TO_DATE = "UpToDate"
SW_HARDENING_NEEDED = "SWHardeningNeeded"
CONFIGURATION_NEEDED = "ConfigurationNeeded"
CONFIGURATION_AND_SW_HARDENING_NEEDED = "ConfigurationAndSWHardeningNeeded"
OUT_OF_DATE = "OutOfDate"
OUT_OF_DATE_CONFIGURATION_NEEDED = "OutOfDateConfigurationNeeded"
REVOKED = "Revoked"
TCB_STATUSES = (
    UP_TO_DATE,
    SW_HARDENING_NEEDED,
    CONFIGURATION_NEEDED,
    CONFIGURATION_AND_SW_HARDENING_NEEDED,
    OUT_OF_DATE,
    OUT_OF_DATE_CONFIGURATION_NEEDED,
    REVOKED,
)
# Both of dcap-qvl's spellings ("OutOfDate", "OUT_OF_DATE") fold to one key; "OK" is UpToDate.
_STATUS_BY_KEY = {s.lower(): s for s in TCB_STATUSES} | {"ok": UP_TO_DATE}

UNTRUSTED_ROOT = "untrusted_root"
COLLATERAL_EXPIRED = "collateral_expired"
COLLATERAL_NOT_YET_VALID = "collateral_not_yet_valid"
TCB_REVOKED = "tcb_revoked"
CERTIFICATE_REVOKED = "certificate_revoked"
CERTIFICATE_EXPIRED = "certificate_expired"
QUOTE_SIGNATURE_INVALID = "quote_signature_invalid"
QE_REPORT_SIGNATURE_INVALID = "qe_report_signature_invalid"
ATTESTATION_KEY_BINDING_INVALID = "attestation_key_binding_invalid"
COLLATERAL_SIGNATURE_INVALID = "collateral_signature_invalid"
COLLATERAL_MISMATCH = "collateral_mismatch"
COLLATERAL_MALFORMED = "collateral_malformed"
DCAP_VERIFICATION_FAILED = "dcap_verification_failed"

# dcap-qvl (0.7) reports failures as text: the first fragment found (in lower
# case) decides the reason. Order matters: "TCB status is invalid: Revoked"
# before anything that says "invalid", "CrlExpired" before "expired".
_REASONS: tuple[tuple[str, str], ...] = (
    ("tcb status is invalid: revoked", TCB_REVOKED),
    ("certrevoked", CERTIFICATE_REVOKED),
    ("crlexpired", COLLATERAL_EXPIRED),
    ("certificate revocation list expired", COLLATERAL_EXPIRED),
    ("tcbinfo expired", COLLATERAL_EXPIRED),
    ("collateral expired", COLLATERAL_EXPIRED),
    ("qe identity expired", COLLATERAL_EXPIRED),
    ("qeidentity expired", COLLATERAL_EXPIRED),
    ("issue date is in the future", COLLATERAL_NOT_YET_VALID),
    ("certexpired", CERTIFICATE_EXPIRED),
    ("certnotvalidyet", CERTIFICATE_EXPIRED),
    ("unknownissuer", UNTRUSTED_ROOT),
    ("invalidcrlsignatureforpublickey", UNTRUSTED_ROOT),
    ("isv enclave report signature is invalid", QUOTE_SIGNATURE_INVALID),
    ("signature is invalid for qe_report", QE_REPORT_SIGNATURE_INVALID),
    ("qe report hash mismatch", ATTESTATION_KEY_BINDING_INVALID),
    ("signature is invalid for tcb_info", COLLATERAL_SIGNATURE_INVALID),
    ("signature is invalid for qe_identity", COLLATERAL_SIGNATURE_INVALID),
    ("fmspc mismatch", COLLATERAL_MISMATCH),
    ("mismatch", COLLATERAL_MISMATCH),
    ("no matching tcb level", COLLATERAL_MISMATCH),
    ("non-tdx tcb info", COLLATERAL_MISMATCH),
    ("failed to decode tcbinfo", COLLATERAL_MALFORMED),
    ("failed to parse", COLLATERAL_MALFORMED),
    ("should be valid json", COLLATERAL_MALFORMED),
)


class DcapVerificationError(QuoteVerificationError):
    """dcap-qvl refused the quote for a reason no subclass names; the message has its words."""

    reason = DCAP_VERIFICATION_FAILED


class DcapUntrustedRootError(DcapVerificationError):
    """The PCK chain or the collateral does not chain to the chosen root."""

    reason = UNTRUSTED_ROOT


class DcapCollateralExpiredError(DcapVerificationError):
    """A CRL, the TCB info or the QE identity is past its nextUpdate."""

    reason = COLLATERAL_EXPIRED


class DcapCollateralNotYetValidError(DcapVerificationError):
    """Collateral issued after the verification time."""

    reason = COLLATERAL_NOT_YET_VALID


class DcapTcbRevokedError(DcapVerificationError):
    """The platform's TCB level is Revoked."""

    reason = TCB_REVOKED


class DcapCertificateRevokedError(DcapVerificationError):
    """A certificate of the PCK chain is on a CRL."""

    reason = CERTIFICATE_REVOKED


class DcapCertificateExpiredError(DcapVerificationError):
    """A certificate is outside its validity at the verification time."""

    reason = CERTIFICATE_EXPIRED


class DcapQuoteSignatureInvalidError(DcapVerificationError):
    """The quote is not signed by its attestation key."""

    reason = QUOTE_SIGNATURE_INVALID


class DcapQeReportSignatureInvalidError(DcapVerificationError):
    """The QE report is not signed by the PCK certificate's key."""

    reason = QE_REPORT_SIGNATURE_INVALID


class DcapAttestationKeyBindingInvalidError(DcapVerificationError):
    """The QE report does not vouch for the attestation key."""

    reason = ATTESTATION_KEY_BINDING_INVALID


class DcapCollateralSignatureInvalidError(DcapVerificationError):
    """The TCB info or QE identity is not signed by its issuer."""

    reason = COLLATERAL_SIGNATURE_INVALID


class DcapCollateralMismatchError(DcapVerificationError):
    """The collateral is for another platform or QE, or names no TCB level of this one."""

    reason = COLLATERAL_MISMATCH


class DcapCollateralMalformedError(DcapVerificationError):
    """Collateral dcap-qvl cannot read."""

    reason = COLLATERAL_MALFORMED


_ERROR_BY_REASON: dict[str, type[DcapVerificationError]] = {
    error.reason: error
    for error in (
        DcapVerificationError,
        DcapUntrustedRootError,
        DcapCollateralExpiredError,
        DcapCollateralNotYetValidError,
        DcapTcbRevokedError,
        DcapCertificateRevokedError,
        DcapCertificateExpiredError,
        DcapQuoteSignatureInvalidError,
        DcapQeReportSignatureInvalidError,
        DcapAttestationKeyBindingInvalidError,
        DcapCollateralSignatureInvalidError,
        DcapCollateralMismatchError,
        DcapCollateralMalformedError,
    )
}


@dataclass(frozen=True)
class DcapOptions:
    """The clock (timezone-aware) and the root: Intel's, or a given certificate."""

    now: datetime
    root: Literal["intel"] | x509.Certificate = INTEL

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("DcapOptions.now must be timezone-aware")
        # isinstance first: comparing a certificate with a string is the slow way to say no.
        if not isinstance(self.root, x509.Certificate) and self.root != INTEL:
            raise ValueError('DcapOptions.root must be "intel" or an x509.Certificate')

    @property
    def root_certificate(self) -> x509.Certificate:
        return self.root if isinstance(self.root, x509.Certificate) else intel_sgx_root_ca()


@dataclass(frozen=True)
class DcapResult:
    """An accepted quote's TCB status (Intel's spelling) and the advisories that apply."""

    status: str
    advisory_ids: tuple[str, ...]

    @property
    def up_to_date(self) -> bool:
        return self.status == UP_TO_DATE


def normalise_status(status: str) -> str:
    """Intel's spelling of a TCB status, from either of dcap-qvl's; ValueError if unknown."""
    try:
        return _STATUS_BY_KEY[status.replace("_", "").lower()]
    except KeyError:
        raise ValueError(f"unknown TCB status {status!r}") from None


def reason_for(message: str) -> str:
    """The stable reason for one of dcap-qvl's error messages."""
    text = message.lower()
    return next(
        (reason for fragment, reason in _REASONS if fragment in text), DCAP_VERIFICATION_FAILED
    )


def error_for(message: str) -> type[DcapVerificationError]:
    """The exception type for one of dcap-qvl's error messages."""
    return _ERROR_BY_REASON[reason_for(message)]


# Verdicts by platform, TCB fields, collateral and root (module docstring).
_VERDICTS: _cache.ValidityCache[bytes, DcapResult] = _cache.ValidityCache(
    "tdx.dcap_verdicts", maxsize=1024
)
# dcap-qvl compares whole seconds, and may treat either end of a span as outside it.
_MARGIN = timedelta(seconds=1)
# In the TD report body (1.0, and 1.5 which extends it): RTMR0..3, then REPORTDATA, at its end.
_PER_QUOTE_FIELDS = slice(TD_REPORT10_SIZE - 64 - RTMR_COUNT * RTMR_SIZE, TD_REPORT10_SIZE)


def verify_with_collateral(
    quote: bytes | Quote,
    collateral: Collateral | dcap_qvl.QuoteCollateralV3,
    options: DcapOptions,
) -> DcapResult:
    """Appraise ``quote`` with ``collateral`` at ``options.now`` under ``options.root``."""
    # QuoteFormatError on malformed bytes, before dcap-qvl
    parsed = quote if isinstance(quote, Quote) else parse_quote(quote)
    root = options.root_certificate
    if parsed.pck_chain()[-1] != root:  # certificates compare by their DER
        subject = parsed.pck_chain()[-1].subject.rfc4514_string()
        raise DcapUntrustedRootError(
            f"the PCK chain ends at {subject!r}, not at {root.subject.rfc4514_string()!r}"
        )
    if not isinstance(collateral, Collateral):
        return _run_dcap_qvl(parsed, collateral, options)
    key = _verdict_key(parsed, collateral, options)
    cached = _VERDICTS.get(key, options.now)
    # The quote's own signature is the one link a cached verdict does not cover; where it
    # fails, dcap-qvl runs, so the refusal is dcap-qvl's, as without the cache.
    if cached is not None and _quote_signature_holds(parsed):
        return cached
    result = _run_dcap_qvl(parsed, collateral.to_dcap(), options)
    start, end = collateral.validity
    chain = parsed.pck_chain()
    start = max(start, *(c.not_valid_before_utc for c in chain)) + _MARGIN
    end = min(end, *(c.not_valid_after_utc for c in chain)) - _MARGIN
    _VERDICTS.put(key, result, not_before=start, not_after=end)
    return result


def _quote_signature_holds(quote: Quote) -> bool:
    try:
        verify_quote_signature(quote)
    except QuoteVerificationError:
        return False
    return True


def _verdict_key(quote: Quote, collateral: Collateral, options: DcapOptions) -> bytes:
    """Everything dcap-qvl's verdict depends on, but REPORTDATA, the RTMRs and the signature."""
    region = quote.signed_region
    body_start = len(region) - quote.body.SIZE
    masked = (
        region[: body_start + _PER_QUOTE_FIELDS.start]
        + region[body_start + _PER_QUOTE_FIELDS.stop :]
    )
    root = _der(options.root) if isinstance(options.root, x509.Certificate) else b"intel"
    return _cache.digest(
        masked,
        quote.signature_data.attestation_key,
        quote.certification_data.digest,
        collateral.cache_key,
        root,
    )


@functools.lru_cache(maxsize=64)
def _der(certificate: x509.Certificate) -> bytes:
    """A root's DER, once per root: certificates hash and compare by their DER."""
    return certificate.public_bytes(Encoding.DER)


def _run_dcap_qvl(
    parsed: Quote, collateral: dcap_qvl.QuoteCollateralV3, options: DcapOptions
) -> DcapResult:
    root_der = options.root_certificate.public_bytes(Encoding.DER)
    now_secs = int(options.now.timestamp())
    raw = parsed.to_bytes()  # without the zero padding a kernel buffer may add
    try:
        if options.root == INTEL:
            report = dcap_qvl.verify(raw, collateral, now_secs)
        else:
            report = dcap_qvl.verify_with_root_ca(raw, collateral, root_der, now_secs)
    except ValueError as e:
        message = str(e).replace("\n", " ")
        raise error_for(message)(f"dcap-qvl: {message}") from None
    try:
        status = normalise_status(report.status)
    except ValueError as e:
        raise DcapVerificationError(str(e)) from None
    if status == REVOKED:
        raise DcapTcbRevokedError("the platform's TCB level is Revoked")
    return DcapResult(status, tuple(str(a) for a in report.advisory_ids))
