"""Inspect and verify one TDX quote or SEV-SNP report file: the library behind ``attestctl quote``.

    >>> from attestd.verifier.quote import VerifyRequest, inspect, read_evidence, verify
    >>> evidence = read_evidence(Path("quote.bin"))   # binary or hex; TDX or SEV-SNP detected
    >>> inspect(evidence)                              # every field, JSON-ready
    >>> result = verify(evidence, VerifyRequest(now=now, collateral=Path("collateral.json")))
    >>> result.valid, result.reason, result.to_json()

Input is read as hex when, ignoring whitespace, it is nothing but hex digits;
otherwise as binary. A TDX quote starts with version 4 or 5 and TEE type 0x81
at offset 4; an SEV-SNP report is exactly 1184 bytes with version 2 to 5 at
offset 0. Bytes that could be both are refused: name the TEE.

Roots: ``intel`` (Intel's SGX Root CA, TDX), ``amd`` (AMD's pinned ARKs,
SEV-SNP), or any other value as the path of a PEM file, e.g. a simulated root
exported with ``attestctl trust-root export``. For SEV-SNP the file's
self-signed certificates are the trusted ARKs and the others candidate ASKs.

Unreadable or malformed input raises an :class:`~attestd.errors.AttestdError`
(``quote_input_invalid``, ``quote_malformed``, ``collateral_malformed``);
evidence that fails verification is a :class:`VerifyResult` with ``valid``
False and the ``reason`` of :mod:`attestd.tee.tdx.verify`,
:mod:`attestd.tee.tdx.dcap` or :mod:`attestd.tee.snp.verify`. Its checks
(``TDX_QUOTE_CHECKS``, ``SNP_QUOTE_CHECKS``, the registry's ``quote_tdx`` and
``quote_snp`` suites) are declared and run like the appraisal's
(``attestd.verifier.checks``), reported up to the first failure.
"""

from __future__ import annotations

import dataclasses
import re
import string
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from attestd._files import FileRefusedError, FileTooLargeError, read_regular_file
from attestd.errors import AttestdError
from attestd.evidence import format_rfc3339
from attestd.tee.errors import QuoteFormatError, QuoteVerificationError
from attestd.tee.snp import abi as snp_abi
from attestd.tee.snp import kds as snp_kds
from attestd.tee.snp import verify as snp_verify
from attestd.tee.tdx import abi as tdx_abi
from attestd.tee.tdx import dcap
from attestd.tee.tdx import verify as tdx_verify
from attestd.tee.tdx.collateral import MAX_COLLATERAL_BYTES, Collateral

# The reasons come from the TEE modules, not the registry: the registry lists these suites.
from attestd.verifier._snp import SNP_REPORT_REASONS
from attestd.verifier._tdx import DCAP_REASONS, TDX_QUOTE_REASONS
from attestd.verifier.checks import (
    Check,
    CheckDef,
    CheckStatus,
    Outcome,
    Runner,
    not_checked,
    passed,
)

TDX = "tdx"
SEV_SNP = "sev-snp"
TEES = (TDX, SEV_SNP)
ROOT_INTEL = "intel"
ROOT_AMD = "amd"
#: A quote is a few kilobytes (8 KB padded); hex doubles it. Anything far larger is not one.
MAX_INPUT_BYTES = 1024 * 1024
INPUT_INVALID = "quote_input_invalid"

_HEX_DIGITS = frozenset(string.hexdigits.encode())
_WHITESPACE = frozenset(string.whitespace.encode())
_TEXT = frozenset(string.printable.encode())


class QuoteInputError(AttestdError):
    """A file cannot be read, or is not what its option says it is."""

    reason = INPUT_INVALID


@dataclass(frozen=True)
class Evidence:
    """The raw bytes of a quote or report, the TEE they are for, and how they were encoded."""

    tee: str
    data: bytes
    encoding: str  # "binary" or "hex"


# -- reading -------------------------------------------------------------------------


def read_file(path: Path | str, what: str, limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of ``path`` (``-``: stdin), at most ``limit``; QuoteInputError otherwise."""
    if str(path) != "-":
        # A regular file only: a FIFO or device named here would block or never end.
        try:
            return read_regular_file(path, limit, what)
        except FileTooLargeError:
            raise QuoteInputError(f"{what} {path} is larger than {limit} bytes") from None
        except FileRefusedError as e:
            raise QuoteInputError(f"cannot read {what} {path}: {e.detail}") from None
    try:
        data = sys.stdin.buffer.read(limit + 1)
    except OSError as e:
        raise QuoteInputError(f"cannot read {what} {path}: {e.strerror or e}") from None
    if len(data) > limit:
        raise QuoteInputError(f"{what} {path} is larger than {limit} bytes")
    return data


def decode_input(data: bytes) -> tuple[bytes, str]:
    """``data`` as bytes and its encoding: hex (whitespace allowed) when it is only hex digits."""
    compact = bytes(b for b in data if b not in _WHITESPACE)
    if not compact or any(b not in _HEX_DIGITS for b in compact):
        return data, "binary"
    if len(compact) % 2:
        raise QuoteFormatError(
            f"hex input has an odd number of digits ({len(compact)})", field="hex", offset=len(data)
        )
    return bytes.fromhex(compact.decode("ascii")), "hex"


def detect_tee(data: bytes) -> str:
    """``tdx`` or ``sev-snp`` by the header; QuoteFormatError for neither or both."""
    tdx = (
        len(data) >= 8
        and int.from_bytes(data[0:2], "little") in (4, 5)
        and int.from_bytes(data[4:8], "little") == tdx_abi.TEE_TYPE_TDX
    )
    snp = (
        len(data) == snp_abi.REPORT_SIZE
        and int.from_bytes(data[0:4], "little") in snp_abi.REPORT_VERSIONS
    )
    if tdx and snp:
        raise QuoteFormatError(
            "reads both as a TDX quote header and as a 1184-byte SEV-SNP report; "
            "say which with --tee tdx or --tee sev-snp",
            field="header",
            offset=0,
        )
    if tdx:
        return TDX
    if snp:
        return SEV_SNP
    raise QuoteFormatError(_neither(data), field="header", offset=0)


def _neither(data: bytes) -> str:
    head = data[:8].hex()
    message = (
        f"is neither a TDX quote (version 4 or 5, TEE type 0x81 at offset 4) nor an SEV-SNP "
        f"report ({snp_abi.REPORT_SIZE} bytes, version 2 to 5): {len(data)} bytes "
        f"starting {head or '(empty)'}"
    )
    if data and all(b in _TEXT for b in data):
        bad = next((i for i, b in enumerate(data) if b not in _HEX_DIGITS | _WHITESPACE), 0)
        message += f"; it is text but not hex (non-hex character {chr(data[bad])!r} at {bad:#x})"
    return message


def read_evidence(path: Path | str, tee: str | None = None) -> Evidence:
    """Read a quote or report file; ``tee`` forces the TEE instead of detecting it."""
    data, encoding = decode_input(read_file(path, "quote"))
    if tee is None:
        tee = detect_tee(data)
    elif tee not in TEES:
        raise QuoteInputError(f"unknown TEE {tee!r}; known: {', '.join(TEES)}")
    return Evidence(tee, data, encoding)


# -- inspect -------------------------------------------------------------------------


def _camel(name: str) -> str:
    return re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), name)


def _json_value(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple | list):
        return [_json_value(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return fields_json(value)
    return value


def fields_json(value: Any) -> dict[str, object]:
    """Every field of a dataclass, camelCase, bytes as lowercase hex, nested ones recursed."""
    return {_camel(f.name): _json_value(getattr(value, f.name)) for f in dataclasses.fields(value)}


def certificate_json(cert: x509.Certificate) -> dict[str, object]:
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "notBefore": format_rfc3339(cert.not_valid_before_utc),
        "notAfter": format_rfc3339(cert.not_valid_after_utc),
    }


def inspect(evidence: Evidence, *, product: str | None = None) -> dict[str, object]:
    """Every field of the quote or report, JSON-ready; QuoteFormatError if malformed."""
    head: dict[str, object] = {"tee": evidence.tee, "encoding": evidence.encoding}
    if evidence.tee == TDX:
        return head | inspect_tdx(tdx_abi.parse_quote(evidence.data), len(evidence.data))
    return head | inspect_snp(snp_abi.parse_report(evidence.data), product)


def inspect_tdx(quote: tdx_abi.Quote, input_size: int) -> dict[str, object]:
    size = len(quote.to_bytes())
    body = fields_json(quote.body)
    body["debug"] = quote.body.debug
    cert_data = quote.certification_data
    certification: dict[str, object] = {
        "qeReport": fields_json(cert_data.qe_report),
        "qeReportSignature": cert_data.qe_report_signature.hex(),
        "qeAuthData": cert_data.qe_auth_data.hex(),
        "pckChain": [certificate_json(c) for c in quote.pck_chain()],
    }
    return {
        "size": size,
        "paddingBytes": input_size - size,
        "header": fields_json(quote.header),
        "bodyType": type(quote.body).__name__,
        "body": body,
        "signatureData": {
            "signature": quote.signature_data.signature.hex(),
            "attestationKey": quote.signature_data.attestation_key.hex(),
            "certificationData": certification,
        },
        "fmspc": _fmspc(quote),
    }


def _fmspc(quote: tdx_abi.Quote) -> str | None:
    """The FMSPC in the PCK leaf's SGX extension (via dcap-qvl), None if it names none."""
    import dcap_qvl

    try:
        return str(dcap_qvl.parse_quote(quote.to_bytes()).fmspc()).lower()
    except ValueError:
        return None


def snp_product(report: snp_abi.AttestationReport, product: str | None) -> tuple[str | None, str]:
    """The product and where it came from (``cpuid``, ``option``, ``unknown``)."""
    if report.product is not None:
        if product is not None and product != report.product:
            raise QuoteInputError(
                f"--product {product} contradicts the report's CPUID ({report.product})"
            )
        return report.product, "cpuid"
    if product is not None:
        return product, "option"
    return None, "unknown"


def _tcb_json(report: snp_abi.AttestationReport, product: str | None) -> dict[str, object]:
    tcbs: dict[str, object] = {}
    for which in ("reported_tcb", "current_tcb", "committed_tcb", "launch_tcb"):
        raw: int = getattr(report, which)
        entry: dict[str, object] = {"raw": f"{raw:016x}"}
        if product is not None:
            entry |= fields_json(report.tcb(product, which))
        tcbs[_camel(which)] = entry
    return tcbs


def inspect_snp(report: snp_abi.AttestationReport, product: str | None) -> dict[str, object]:
    product, source = snp_product(report, product)
    platform = report.platform
    signing_key = {0: "vcek", 1: "vlek", 7: "none"}.get(report.signing_key, "reserved")
    return {
        "size": snp_abi.REPORT_SIZE,
        "fields": fields_json(report),
        "guestPolicy": fields_json(report.guest_policy),
        "platformInfo": {
            "smtEnabled": platform.smt_enabled,
            "tsmeEnabled": platform.tsme_enabled,
            "eccEnabled": platform.ecc_enabled,
            "raplDisabled": platform.rapl_disabled,
            "ciphertextHidingEnabled": platform.ciphertext_hiding_enabled,
            "aliasCheckComplete": platform.alias_check_complete,
        },
        "signerInfo": {
            "authorKeyEn": report.author_key_en,
            "maskChipKey": report.mask_chip_key,
            "signingKey": signing_key,
        },
        "product": product,
        "productSource": source,
        "tcb": _tcb_json(report, product),
        "signature": {
            "r": f"{report.signature_r:096x}",
            "s": f"{report.signature_s:096x}",
        },
    }


# -- verify --------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyRequest:
    """What to verify against: the clock, a root, and the TEE's extra inputs.

    ``root`` None means the TEE's vendor (``intel`` for TDX, ``amd`` for SEV-SNP).
    """

    now: datetime
    root: str | None = None
    collateral: Path | None = None
    vcek: Path | None = None
    certs: Path | None = None
    product: str | None = None
    crl: Path | None = None
    """SEV-SNP: the ARK's CRL; when given, a listed ASK or ASVK fails the chain."""

    def __post_init__(self) -> None:
        if self.now.tzinfo is None or self.now.utcoffset() is None:
            raise QuoteInputError("the verification time needs a zone, e.g. 2026-01-01T00:00:00Z")


@dataclass(frozen=True)
class VerifyResult:
    """The verdict on one quote or report; ``details`` holds what is TEE-specific."""

    tee: str
    valid: bool
    message: str
    root: dict[str, object]
    checked_at: datetime
    checks: tuple[Check, ...]
    reason: str | None = None
    tcb_status: str | None = None
    advisory_ids: tuple[str, ...] = ()
    details: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"tee": self.tee, "valid": self.valid}
        if self.reason is not None:
            out["reason"] = self.reason
        out |= {
            "message": self.message,
            "tcbStatus": self.tcb_status,
            "tcbChecked": any(
                c.name == "tcb_status" and c.status is not CheckStatus.SKIP for c in self.checks
            ),
            "advisoryIds": list(self.advisory_ids),
            "root": self.root,
            "checkedAt": format_rfc3339(self.checked_at),
            "checks": [_check_json(c) for c in self.checks],
        }
        return out | self.details


def _check_json(check: Check) -> dict[str, object]:
    """A check as the quote tool prints it: no detail (``message`` says it), a reason if any."""
    out: dict[str, object] = {"name": check.name, "status": check.status.value}
    if check.reason is not None:
        out["reason"] = check.reason
    return out


def verify(evidence: Evidence, request: VerifyRequest) -> VerifyResult:
    """Verify the signature chain (and, where possible, the TCB); never raises for a verdict."""
    if evidence.tee == TDX:
        return verify_tdx(evidence.data, request)
    return verify_snp(evidence.data, request)


def _load_pem_roots(path: str) -> list[x509.Certificate]:
    data = read_file(path, "root file")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise QuoteInputError(f"root file {path} holds no PEM certificate: {e}") from None
    return certs


def _simulated_hint(path: str) -> None:
    if path == "simulated" and not Path(path).exists():
        raise QuoteInputError(
            "--root takes intel, amd, or a PEM file: give the simulated root itself, "
            "e.g. `attestctl trust-root export --state-dir DIR -o root.pem` and --root root.pem"
        )


def _root_json(kind: str, certs: Sequence[x509.Certificate], path: str | None) -> dict[str, object]:
    return {
        "kind": kind,
        "path": path,
        "subjects": [c.subject.rfc4514_string() for c in certs],
    }


def verify_tdx(data: bytes, request: VerifyRequest) -> VerifyResult:
    quote = tdx_abi.parse_quote(data)
    root = request.root or ROOT_INTEL
    if root == ROOT_AMD:
        raise QuoteInputError("--root amd is for SEV-SNP reports; a TDX quote needs intel or PEM")
    if root == ROOT_INTEL:
        roots = [tdx_verify.intel_sgx_root_ca()]
        root_info = _root_json(ROOT_INTEL, roots, None)
        dcap_root = dcap.DcapOptions(now=request.now)
    else:
        _simulated_hint(root)
        roots = _load_pem_roots(root)
        root_info = _root_json("file", roots, root)
        dcap_root = dcap.DcapOptions(now=request.now, root=_matching_root(quote, roots))
    collateral = _read_collateral(request.collateral) if request.collateral else None
    tdx = _TdxQuote(quote, roots, request.now, collateral, dcap_root, {"fmspc": _fmspc(quote)})
    checks = _run(TDX_QUOTE_CHECKS, tdx)
    status = tdx.status
    if status is not None:
        message = f"the quote verifies with its collateral; TCB status {status.status}"
    else:
        message = "the quote's signature chain verifies; TCB status not checked (no --collateral)"
    return _verdict(
        TDX, checks, message, root_info, request.now, tdx.details,
        tcb_status=status.status if status else None,
        advisory_ids=status.advisory_ids if status else (),
    )  # fmt: skip


def _matching_root(quote: tdx_abi.Quote, roots: Sequence[x509.Certificate]) -> x509.Certificate:
    """The given root the quote's PCK chain ends at, else the first (dcap then refuses it)."""
    end = quote.pck_chain()[-1]
    return next((r for r in roots if r == end), roots[0])


def _read_collateral(path: Path) -> Collateral:
    return Collateral.from_json(read_file(path, "collateral", MAX_COLLATERAL_BYTES))


@dataclass
class _TdxQuote:
    """What the TDX checks work on, and what they found."""

    quote: tdx_abi.Quote
    roots: list[x509.Certificate]
    now: datetime
    collateral: Collateral | None
    dcap_options: dcap.DcapOptions
    details: dict[str, object]
    status: dcap.DcapResult | None = None

    def signature_chain(self) -> Outcome:
        tdx_verify.verify_quote(self.quote, tdx_verify.VerifyOptions(self.roots, self.now))
        return passed("the quote's signature chain verifies")

    def tcb_status(self) -> Outcome:
        if self.collateral is None:
            return not_checked("no --collateral: the TCB status is not checked")
        self.details["collateralNextUpdate"] = format_rfc3339(self.collateral.next_update)
        self.status = dcap.verify_with_collateral(
            self.quote.to_bytes(), self.collateral, self.dcap_options
        )
        return passed(f"TCB status {self.status.status}")


TDX_QUOTE_CHECKS: tuple[CheckDef[_TdxQuote], ...] = (
    CheckDef("signature_chain", _TdxQuote.signature_chain, reasons=TDX_QUOTE_REASONS),
    CheckDef("tcb_status", _TdxQuote.tcb_status, ("signature_chain",), reasons=DCAP_REASONS),
)
"""The checks of ``attestctl quote verify`` for a TDX quote, in order."""


def _run(suite: Sequence[CheckDef[Any]], context: object) -> tuple[Check, ...]:
    """Run the quote tool's checks: a verification failure is a verdict, up to the first one;
    anything else (unreadable input) is the caller's error and propagates."""
    runner = Runner(
        verdicts=(QuoteVerificationError,), propagate=(Exception,), stop_at_failure=True
    )
    runner.run(suite, context)
    return runner.checks


def _verdict(
    tee: str,
    checks: tuple[Check, ...],
    message: str,
    root: dict[str, object],
    now: datetime,
    details: dict[str, object],
    *,
    tcb_status: str | None = None,
    advisory_ids: tuple[str, ...] = (),
) -> VerifyResult:
    """The result of ``checks``: valid unless one failed, which then gives reason and message."""
    failure = next((c for c in checks if c.status is CheckStatus.FAIL), None)
    if failure is not None:
        return VerifyResult(
            tee, False, failure.detail, root, now, checks, failure.reason, details=details
        )
    return VerifyResult(
        tee, True, message, root, now, checks, None, tcb_status, advisory_ids, details
    )


def verify_snp(data: bytes, request: VerifyRequest) -> VerifyResult:
    report = snp_abi.parse_report(data)
    table = _cert_table(request.certs) if request.certs else {}
    chain = snp_abi.CertChain.from_table(table, report.signing_key)
    vcek = _vcek(request.vcek, chain)
    ask = _load_cert(chain.ask, "ASK in the certificate table") if chain.ask is not None else None
    root = request.root or ROOT_AMD
    if root == ROOT_INTEL:
        raise QuoteInputError("--root intel is for TDX quotes; an SEV-SNP report needs amd or PEM")
    arks: list[x509.Certificate] | None = None
    if root == ROOT_AMD:
        root_info = _root_json(ROOT_AMD, [snp_verify.amd_ark(p) for p in snp_abi.PRODUCTS], None)
    else:
        _simulated_hint(root)
        certs = _load_pem_roots(root)
        arks = [c for c in certs if c.subject == c.issuer]
        if not arks:
            raise QuoteInputError(f"{root} holds no self-signed ARK certificate")
        if ask is None:
            ask = next(
                (c for c in certs if c.subject != c.issuer and c.subject == vcek.issuer), None
            )
        root_info = _root_json("file", arks, root)
    revocation = snp_kds.CrlFile(request.crl) if request.crl is not None else None
    options = snp_verify.VerifyOptions(
        now=request.now, product=request.product, trusted_arks=arks, revocation=revocation
    )
    # With a CRL, signature_chain also looked the ASK (or ASVK) up in it.
    details = _snp_details(report, vcek, request.product) | {"crlChecked": revocation is not None}
    checks = _run(SNP_QUOTE_CHECKS, _SnpReport(report, vcek, ask, options))
    signer, intermediate = (
        ("VLEK", "ASVK") if report.signing_key == snp_abi.SIGNING_KEY_VLEK else ("VCEK", "ASK")
    )
    message = (
        f"the report is signed by a {signer} that chains through the {intermediate} to a "
        "trusted ARK and names its reported TCB; whether that TCB is current is policy"
    )
    return _verdict(SEV_SNP, checks, message, root_info, request.now, details)


@dataclass(frozen=True)
class _SnpReport:
    """What the SEV-SNP checks work on."""

    report: snp_abi.AttestationReport
    vcek: x509.Certificate
    ask: x509.Certificate | None
    options: snp_verify.VerifyOptions

    def signature_chain(self) -> Outcome:
        snp_verify.verify_report(self.report, vcek=self.vcek, ask=self.ask, options=self.options)
        return passed("the report's VCEK chain and signature verify")


SNP_QUOTE_CHECKS: tuple[CheckDef[_SnpReport], ...] = (
    CheckDef("signature_chain", _SnpReport.signature_chain, reasons=SNP_REPORT_REASONS),
    # SEV-SNP has no vendor TCB status: whether the reported TCB is current is policy.
    CheckDef(
        "tcb_status",
        lambda _: not_checked("SEV-SNP has no vendor TCB status"),
        ("signature_chain",),
    ),
)
"""The checks of ``attestctl quote verify`` for an SEV-SNP report, in order."""


def _snp_details(
    report: snp_abi.AttestationReport, vcek: x509.Certificate, product: str | None
) -> dict[str, object]:
    vcek_info: dict[str, object] = certificate_json(vcek)
    try:
        extensions = snp_verify.vcek_extensions(vcek)
    except QuoteVerificationError:
        extensions = None  # verify_report names the problem
    if extensions is not None:
        vcek_info["productName"] = extensions.product_name
        vcek_info["tcb"] = fields_json(extensions.tcb())
        product = product or extensions.product
    # The CPUID decides the layout; verify_report reports any disagreement (product_mismatch).
    product = report.product or product
    return {"product": product, "tcb": _tcb_json(report, product), "vcek": vcek_info}


def _cert_table(path: Path) -> dict[str, bytes]:
    return snp_abi.parse_cert_table(read_file(path, "certificate table"))


def _vcek(path: Path | None, chain: snp_abi.CertChain[bytes]) -> x509.Certificate:
    if path is not None:
        return _load_cert(read_file(path, "VCEK"), str(path))
    if chain.signer is not None:
        return _load_cert(chain.signer, "the VCEK or VLEK in the certificate table")
    raise QuoteInputError(
        "an SEV-SNP report needs its VCEK: --vcek FILE (DER or PEM) or --certs TABLE"
    )


def _load_cert(data: bytes, what: str) -> x509.Certificate:
    try:
        return snp_verify.load_certificate(data)
    except ValueError as e:
        raise QuoteInputError(f"{what} is not a DER or PEM certificate: {e}") from None
