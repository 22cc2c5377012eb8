"""Intel TDX quotes (versions 4 and 5) as bytes and as values; no I/O.

    >>> from attestd.tee.tdx.abi import parse_quote
    >>> quote = parse_quote(raw)                 # raises QuoteFormatError on any malformation
    >>> quote.body.rtmrs[3], quote.body.report_data
    >>> quote.to_bytes() == raw[: len(quote.to_bytes())]  # byte-exact; the rest is zero padding
    >>> leaf, platform_ca, root = quote.pck_chain()

The layouts follow Intel's "TDX DCAP Quoting Library API" (quote format v4 and
v5). Parsing is strict: every length field must agree with the bytes it
describes, because a lenient parser is where two verifiers start to disagree
about what was signed. Only zero padding after the quote is tolerated, since
the kernel hands quotes back in fixed-size buffers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import struct
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

from cryptography import x509

from attestd.tee import _cache
from attestd.tee._reader import ByteReader
from attestd.tee.errors import QuoteFormatError
from attestd.tee.tdx.rtmr import RTMR_COUNT, RTMR_SIZE

QUOTE_VERSION_4 = 4
QUOTE_VERSION_5 = 5
ATTESTATION_KEY_TYPE_ECDSA_P256 = 2
TEE_TYPE_TDX = 0x81
BODY_TYPE_TD_REPORT10 = 2
BODY_TYPE_TD_REPORT15 = 3
CERT_DATA_TYPE_PCK_CHAIN = 5
CERT_DATA_TYPE_QE_REPORT = 6
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")

HEADER_SIZE = 48
TD_REPORT10_SIZE = 584
TD_REPORT15_SIZE = 648
ENCLAVE_REPORT_SIZE = 384
SIGNATURE_SIZE = 64
ATTESTATION_KEY_SIZE = 64

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_HEADER = struct.Struct("<HHIHH16s20s")
_BODY_DESCRIPTOR = struct.Struct("<HI")
# One or more PEM certificates, nothing else; NUL terminators are allowed after them.
_PEM_CHAIN = re.compile(
    rb"(?:\s*-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----)+\s*\x00*"
)


class _Sized:
    """Checks, for builders, that each bytes field has its fixed width."""

    _SIZES: ClassVar[dict[str, int]] = {}

    def __post_init__(self) -> None:
        for name, size in self._SIZES.items():
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != size:
                raise ValueError(f"{type(self).__name__}.{name} must be {size} bytes")


class _Reader(ByteReader):
    """A cursor over ``data[start:end]`` that reports truncation as QuoteFormatError."""

    def error(self, message: str, field: str, offset: int) -> QuoteFormatError:
        return QuoteFormatError(message, field=field, offset=offset)


def _expect(value: int, allowed: tuple[int, ...], field: str, offset: int) -> None:
    if value not in allowed:
        wanted = " or ".join(f"{a:#x}" for a in allowed)
        raise QuoteFormatError(f"is {value:#x}, expected {wanted}", field=field, offset=offset)


@dataclass(frozen=True)
class QuoteHeader(_Sized):
    """The 48-byte quote header; the only part whose layout is the same for every body."""

    _SIZES: ClassVar[dict[str, int]] = {"qe_vendor_id": 16, "user_data": 20}

    version: int
    attestation_key_type: int
    tee_type: int
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    user_data: bytes

    def to_bytes(self) -> bytes:
        return _HEADER.pack(
            self.version,
            self.attestation_key_type,
            self.tee_type,
            self.qe_svn,
            self.pce_svn,
            self.qe_vendor_id,
            self.user_data,
        )

    @classmethod
    def _read(cls, r: _Reader) -> QuoteHeader:
        start = r.offset
        header = cls(*_HEADER.unpack(r.take(HEADER_SIZE, "header")))
        _expect(header.version, (QUOTE_VERSION_4, QUOTE_VERSION_5), "header.version", start)
        _expect(
            header.attestation_key_type,
            (ATTESTATION_KEY_TYPE_ECDSA_P256,),
            "header.attestation_key_type",
            start + 2,
        )
        _expect(header.tee_type, (TEE_TYPE_TDX,), "header.tee_type", start + 4)
        return header


_TD10_LAYOUT: tuple[tuple[str, int], ...] = (
    ("tee_tcb_svn", 16),
    ("mr_seam", 48),
    ("mr_signer_seam", 48),
    ("seam_attributes", 8),
    ("td_attributes", 8),
    ("xfam", 8),
    ("mr_td", 48),
    ("mr_config_id", 48),
    ("mr_owner", 48),
    ("mr_owner_config", 48),
)
_TD10_NAMES = tuple(name for name, _ in _TD10_LAYOUT)
_TD10_STRUCT = struct.Struct(
    "".join(f"{size}s" for _, size in _TD10_LAYOUT) + f"{RTMR_SIZE}s" * RTMR_COUNT + "64s"
)
_TD15_EXTRA_LAYOUT: tuple[tuple[str, int], ...] = (("tee_tcb_svn2", 16), ("mr_service_td", 48))


@dataclass(frozen=True)
class TdReport10(_Sized):
    """TD report 1.0 (584 bytes): what the TDX module measured about the TD.

    ``rtmrs`` holds RTMR0..3 in order; ``td_attributes`` and ``xfam`` stay as the
    raw little-endian 8 bytes, as in the spec and in dcap-qvl.
    """

    _SIZES: ClassVar[dict[str, int]] = {**dict(_TD10_LAYOUT), "report_data": 64}
    SIZE: ClassVar[int] = TD_REPORT10_SIZE
    BODY_TYPE: ClassVar[int] = BODY_TYPE_TD_REPORT10

    tee_tcb_svn: bytes
    mr_seam: bytes
    mr_signer_seam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    xfam: bytes
    mr_td: bytes
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    rtmrs: tuple[bytes, bytes, bytes, bytes]
    report_data: bytes

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.rtmrs) != RTMR_COUNT or any(
            not isinstance(m, bytes) or len(m) != RTMR_SIZE for m in self.rtmrs
        ):
            raise ValueError(f"rtmrs must be {RTMR_COUNT} values of {RTMR_SIZE} bytes")

    @property
    def debug(self) -> bool:
        """TDATTRIBUTES.DEBUG (bit 0): the host can read and change this TD's memory."""
        return bool(self.td_attributes[0] & 1)

    def to_bytes(self) -> bytes:
        fixed = b"".join(getattr(self, name) for name, _ in _TD10_LAYOUT)
        return fixed + b"".join(self.rtmrs) + self.report_data

    @classmethod
    def _read_fields(cls, r: _Reader) -> dict[str, object]:
        if r.end - r.offset >= _TD10_STRUCT.size:
            # One unpack for the whole 1.0 body; a short one is read field by field below,
            # so that the error names the field it ends in.
            parts = _TD10_STRUCT.unpack(r.take(_TD10_STRUCT.size, "body"))
            fixed = len(_TD10_LAYOUT)
            values: dict[str, object] = dict(zip(_TD10_NAMES, parts[:fixed], strict=True))
            values["rtmrs"] = parts[fixed : fixed + RTMR_COUNT]
            values["report_data"] = parts[-1]
            return values
        values = {n: r.take(s, f"body.{n}") for n, s in _TD10_LAYOUT}
        rtmrs = tuple(r.take(RTMR_SIZE, f"body.rtmr{i}") for i in range(RTMR_COUNT))
        values["rtmrs"] = rtmrs
        values["report_data"] = r.take(64, "body.report_data")
        return values

    @classmethod
    def _read(cls, r: _Reader) -> TdReport10:
        return cls(**cls._read_fields(r))  # type: ignore[arg-type]


@dataclass(frozen=True)
class TdReport15(TdReport10):
    """TD report 1.5 (648 bytes, quote v5 body type 3): 1.0 plus TEE_TCB_SVN2 and MRSERVICETD."""

    _SIZES: ClassVar[dict[str, int]] = {**TdReport10._SIZES, **dict(_TD15_EXTRA_LAYOUT)}
    SIZE: ClassVar[int] = TD_REPORT15_SIZE
    BODY_TYPE: ClassVar[int] = BODY_TYPE_TD_REPORT15

    tee_tcb_svn2: bytes = dataclasses.field(kw_only=True)
    mr_service_td: bytes = dataclasses.field(kw_only=True)

    def to_bytes(self) -> bytes:
        return super().to_bytes() + self.tee_tcb_svn2 + self.mr_service_td

    @classmethod
    def _read_fields(cls, r: _Reader) -> dict[str, object]:
        values = super()._read_fields(r)
        values.update({n: r.take(s, f"body.{n}") for n, s in _TD15_EXTRA_LAYOUT})
        return values


@dataclass(frozen=True)
class EnclaveReport(_Sized):
    """The 384-byte SGX enclave report body, here the quoting enclave's (QE) report.

    Reserved areas are kept verbatim so that the bytes the PCK key signed can be
    rebuilt exactly.
    """

    _SIZES: ClassVar[dict[str, int]] = {
        "cpu_svn": 16,
        "reserved1": 28,
        "attributes": 16,
        "mr_enclave": 32,
        "reserved2": 32,
        "mr_signer": 32,
        "reserved3": 96,
        "reserved4": 60,
        "report_data": 64,
    }
    _LAYOUT: ClassVar[struct.Struct] = struct.Struct("<16sI28s16s32s32s32s96sHH60s64s")

    cpu_svn: bytes
    misc_select: int
    reserved1: bytes
    attributes: bytes
    mr_enclave: bytes
    reserved2: bytes
    mr_signer: bytes
    reserved3: bytes
    isv_prod_id: int
    isv_svn: int
    reserved4: bytes
    report_data: bytes

    def to_bytes(self) -> bytes:
        encoded = self.__dict__.get("_encoded")  # the input's bytes, where parsed from them
        if encoded is not None:
            return encoded  # type: ignore[no-any-return]
        return self._LAYOUT.pack(*(getattr(self, f.name) for f in dataclasses.fields(self)))

    @classmethod
    def _read(cls, r: _Reader, field: str) -> EnclaveReport:
        raw = r.take(ENCLAVE_REPORT_SIZE, field)
        report = cls(*cls._LAYOUT.unpack(raw))
        # The layout has no padding or choice, so these bytes are what to_bytes() would pack.
        report.__dict__["_encoded"] = raw
        return report


@dataclass(frozen=True)
class QeReportCertificationData(_Sized):
    """Certification data type 6: the QE report that vouches for the attestation key.

    ``pck_chain_pem`` is the inner certification data type 5 exactly as quoted
    (PEM leaf, intermediate, root; sometimes NUL-terminated).
    """

    _SIZES: ClassVar[dict[str, int]] = {"qe_report_signature": SIGNATURE_SIZE}

    qe_report: EnclaveReport
    qe_report_signature: bytes
    qe_auth_data: bytes
    pck_chain_pem: bytes

    @cached_property
    def pck_certificates(self) -> tuple[x509.Certificate, ...]:
        """The PCK chain, leaf first, parsed (once) from ``pck_chain_pem``."""
        return _load_pem_chain(self.pck_chain_pem, "pck_chain_pem", 0)

    @cached_property
    def digest(self) -> bytes:
        """SHA-256 of :meth:`to_bytes`, computed once (a platform's quotes share these bytes)."""
        return hashlib.sha256(self.to_bytes()).digest()

    def to_bytes(self) -> bytes:
        encoded = self.__dict__.get("_encoded")  # the input's bytes, where parsed from them
        if encoded is not None:
            return encoded  # type: ignore[no-any-return]
        return b"".join(
            (
                self.qe_report.to_bytes(),
                self.qe_report_signature,
                _U16.pack(len(self.qe_auth_data)),
                self.qe_auth_data,
                _BODY_DESCRIPTOR.pack(CERT_DATA_TYPE_PCK_CHAIN, len(self.pck_chain_pem)),
                self.pck_chain_pem,
            )
        )

    @classmethod
    def _read(cls, r: _Reader) -> QeReportCertificationData:
        p = "signature_data.certification_data"
        start = r.offset
        qe_report = EnclaveReport._read(r, f"{p}.qe_report")
        qe_report_signature = r.take(SIGNATURE_SIZE, f"{p}.qe_report_signature")
        auth_size = r.u16(f"{p}.qe_auth_data_size")
        qe_auth_data = r.take(auth_size, f"{p}.qe_auth_data")
        type_offset = r.offset
        inner_type = r.u16(f"{p}.inner_type")
        _expect(inner_type, (CERT_DATA_TYPE_PCK_CHAIN,), f"{p}.inner_type", type_offset)
        pem_size = r.u32(f"{p}.inner_size")
        pem_offset = r.offset
        pem = r.take(pem_size, f"{p}.pck_chain_pem")
        r.expect_end(f"{p}.size")
        data = cls(qe_report, qe_report_signature, qe_auth_data, pem)
        # Parsing is strict, so these bytes are what to_bytes() would rebuild (dcap's cache key).
        data.__dict__["_encoded"] = r.data[start : r.offset]
        # Parse now, so that a bad chain is a format error with its offset.
        data.__dict__["pck_certificates"] = _load_pem_chain(pem, f"{p}.pck_chain_pem", pem_offset)
        return data


# A verifier sees a few platforms and many quotes from each: the same PCK chain PEM, parsed
# once. Only chains that parsed are kept; certificates are immutable values.
_PEM_CHAINS: _cache.ValidityCache[bytes, tuple[x509.Certificate, ...]] = _cache.ValidityCache(
    "tdx.pem_chains", maxsize=1024
)


def _load_pem_chain(pem: bytes, field: str, offset: int) -> tuple[x509.Certificate, ...]:
    start, end = _cache.ALWAYS
    cached = _PEM_CHAINS.get(pem, start)
    if cached is not None:
        return cached
    certs = _parse_pem_chain(pem, field, offset)
    _PEM_CHAINS.put(pem, certs, not_before=start, not_after=end)
    return certs


def _parse_pem_chain(pem: bytes, field: str, offset: int) -> tuple[x509.Certificate, ...]:
    if _PEM_CHAIN.fullmatch(pem) is None:
        raise QuoteFormatError("is not a PEM certificate chain", field=field, offset=offset)
    try:
        certs = x509.load_pem_x509_certificates(pem.rstrip(b"\0"))
    except Exception as e:  # ValueError, InvalidVersion, ...: any refusal is a format error
        raise QuoteFormatError(f"bad certificate: {e}", field=field, offset=offset) from None
    return tuple(certs)


@dataclass(frozen=True)
class QuoteSignatureData(_Sized):
    """ECDSA-P256 quote signature data: signature (r||s), attestation key (x||y), QE proof."""

    _SIZES: ClassVar[dict[str, int]] = {
        "signature": SIGNATURE_SIZE,
        "attestation_key": ATTESTATION_KEY_SIZE,
    }

    signature: bytes
    attestation_key: bytes
    certification_data: QeReportCertificationData

    def to_bytes(self) -> bytes:
        cert_data = self.certification_data.to_bytes()
        return b"".join(
            (
                self.signature,
                self.attestation_key,
                _BODY_DESCRIPTOR.pack(CERT_DATA_TYPE_QE_REPORT, len(cert_data)),
                cert_data,
            )
        )

    @classmethod
    def _read(cls, r: _Reader) -> QuoteSignatureData:
        signature = r.take(SIGNATURE_SIZE, "signature_data.signature")
        attestation_key = r.take(ATTESTATION_KEY_SIZE, "signature_data.attestation_key")
        field = "signature_data.certification_data"
        type_offset = r.offset
        _expect(r.u16(f"{field}.type"), (CERT_DATA_TYPE_QE_REPORT,), f"{field}.type", type_offset)
        size = r.u32(f"{field}.size")
        cert_data = _read_certification_data(r.sub(size, field))
        r.expect_end("signature_data_length")
        return cls(signature, attestation_key, cert_data)


# A platform's quotes all carry the same certification data (QE report, its signature, PCK
# chain): parsed once per distinct bytes. Only what parsed is kept, and a parse's result
# does not depend on where in a quote the bytes sit; the values are frozen.
_CERTIFICATION_DATA: _cache.ValidityCache[bytes, QeReportCertificationData] = _cache.ValidityCache(
    "tdx.certification_data", maxsize=1024
)


def _read_certification_data(r: _Reader) -> QeReportCertificationData:
    raw = r.data[r.offset : r.end]
    start, end = _cache.ALWAYS
    cached = _CERTIFICATION_DATA.get(raw, start)
    if cached is not None:
        r.offset = r.end
        return cached
    data = QeReportCertificationData._read(r)
    _CERTIFICATION_DATA.put(raw, data, not_before=start, not_after=end)
    return data


def signed_region(header: QuoteHeader, body: TdReport10) -> bytes:
    """The bytes the attestation key signs: header and body (v5: with the body descriptor)."""
    if header.version == QUOTE_VERSION_4:
        return header.to_bytes() + body.to_bytes()
    descriptor = _BODY_DESCRIPTOR.pack(body.BODY_TYPE, body.SIZE)
    return header.to_bytes() + descriptor + body.to_bytes()


@dataclass(frozen=True)
class Quote:
    """A TDX quote v4 or v5. ``to_bytes()`` rebuilds the input byte for byte."""

    header: QuoteHeader
    body: TdReport10
    signature_data: QuoteSignatureData

    def __post_init__(self) -> None:
        if self.header.version == QUOTE_VERSION_4 and type(self.body) is not TdReport10:
            raise ValueError("a version 4 quote carries a TD report 1.0 body")
        if self.header.version not in (QUOTE_VERSION_4, QUOTE_VERSION_5):
            raise ValueError(f"unsupported quote version {self.header.version}")

    @cached_property
    def signed_region(self) -> bytes:
        """Header and body as signed; :func:`parse_quote` fills it from the input's bytes."""
        return signed_region(self.header, self.body)

    @property
    def certification_data(self) -> QeReportCertificationData:
        return self.signature_data.certification_data

    def pck_chain(self) -> tuple[x509.Certificate, ...]:
        """The PCK certificate chain, leaf first (usually leaf, platform/processor CA, root)."""
        return self.certification_data.pck_certificates

    def to_bytes(self) -> bytes:
        signature_data = self.signature_data.to_bytes()
        return self.signed_region + _U32.pack(len(signature_data)) + signature_data


def parse_quote(data: bytes) -> Quote:
    """Parse a TDX quote; any malformation raises QuoteFormatError naming field and offset."""
    r = _Reader(bytes(data))
    header = QuoteHeader._read(r)
    body_cls: type[TdReport10] = TdReport10
    if header.version == QUOTE_VERSION_5:
        type_offset = r.offset
        body_type = r.u16("body_type")
        _expect(body_type, (BODY_TYPE_TD_REPORT10, BODY_TYPE_TD_REPORT15), "body_type", type_offset)
        body_cls = TdReport10 if body_type == BODY_TYPE_TD_REPORT10 else TdReport15
        size_offset = r.offset
        _expect(r.u32("body_size"), (body_cls.SIZE,), "body_size", size_offset)
    body = body_cls._read(r)
    # Parsing is strict, so the bytes read so far are exactly what the rebuild would give.
    region = r.data[: r.offset]
    signature_size = r.u32("signature_data_length")
    signature_data = QuoteSignatureData._read(r.sub(signature_size, "signature_data"))
    trailing = r.data[r.offset :]
    if trailing.strip(b"\0"):
        first = r.offset + len(trailing) - len(trailing.lstrip(b"\0"))
        raise QuoteFormatError(
            "non-zero bytes after the quote", field="trailing_data", offset=first
        )
    quote = Quote(header, body, signature_data)
    quote.__dict__["signed_region"] = region  # what the cached_property would compute
    return quote
