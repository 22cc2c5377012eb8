"""AMD SEV-SNP attestation reports and GHCB certificate tables as bytes and as values; no I/O.

    >>> from attestd.tee.snp.abi import parse_cert_table, parse_report
    >>> report = parse_report(raw)            # raises QuoteFormatError on any malformation
    >>> report.report_data, report.measurement, report.guest_policy.debug
    >>> report.tcb("Milan").snp, report.to_bytes() == raw
    >>> certs = parse_cert_table(auxblob)     # {"vcek": der, "ask": der, "ark": der}

The layout is the ATTESTATION_REPORT structure of AMD's "SEV Secure Nested
Paging Firmware ABI Specification" (publication 56860, Table 23 in rev 1.57),
versions 2 to 5, as google/go-sev-guest reads it (``abi/abi.go``,
``ReportToProto``): 1184 bytes, little-endian, the ECDSA P-384 signature at
0x2A0 over everything before it. Version 3 adds the CPUID family, model and
stepping at 0x188; version 5 adds the launch and current mitigation vectors at
0x1F8 and 0x200. Parsing is strict: every reserved range must be zero and every
defined bit known, as go-sev-guest requires, because a lenient parser is where
two verifiers start to disagree about what was signed.

TCB_VERSION (Table 3) is one little-endian u64 whose byte layout depends on the
product: Milan and Genoa put the boot loader, TEE, SNP and microcode SPLs in
bytes 0, 1, 6 and 7; Turin puts FMC, boot loader, TEE, SNP and microcode in
bytes 0, 1, 2, 3 and 7 (as virtee/sev's ``TcbVersion::from_turin_bytes``).

The certificate table is the GHCB specification's (publication 56421, MSG_REPORT_REQ
extended request): 24-byte entries (GUID, offset u32, length u32) ended by an
all-zero entry, the certificates at their offsets after it.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from attestd.tee.errors import QuoteFormatError

REPORT_SIZE = 0x4A0
SIGNATURE_OFFSET = 0x2A0
SIGNATURE_SIZE = REPORT_SIZE - SIGNATURE_OFFSET
ECDSA_COMPONENT_SIZE = 72  # r and s, little-endian, each zero-padded to 72 bytes
SIGNATURE_ALGO_ECDSA_P384_SHA384 = 1
REPORT_VERSIONS = (2, 3, 4, 5)
REPORT_DATA_SIZE = 64

# Products, by the names AMD's KDS and the VCEK productName extension use.
MILAN = "Milan"
GENOA = "Genoa"
TURIN = "Turin"
PRODUCTS = (MILAN, GENOA, TURIN)

# (name, struct code) in report order; "_" names are reserved, must-be-zero bytes.
_LAYOUT: tuple[tuple[str, str], ...] = (
    ("version", "I"),
    ("guest_svn", "I"),
    ("policy", "Q"),
    ("family_id", "16s"),
    ("image_id", "16s"),
    ("vmpl", "I"),
    ("signature_algo", "I"),
    ("current_tcb", "Q"),
    ("platform_info", "Q"),
    ("signer_info", "I"),
    ("_reserved_4c", "4s"),
    ("report_data", "64s"),
    ("measurement", "48s"),
    ("host_data", "32s"),
    ("id_key_digest", "48s"),
    ("author_key_digest", "48s"),
    ("report_id", "32s"),
    ("report_id_ma", "32s"),
    ("reported_tcb", "Q"),
    ("cpuid_fam_id", "B"),
    ("cpuid_mod_id", "B"),
    ("cpuid_step", "B"),
    ("_reserved_18b", "21s"),
    ("chip_id", "64s"),
    ("committed_tcb", "Q"),
    ("current_build", "B"),
    ("current_minor", "B"),
    ("current_major", "B"),
    ("_reserved_1eb", "1s"),
    ("committed_build", "B"),
    ("committed_minor", "B"),
    ("committed_major", "B"),
    ("_reserved_1ef", "1s"),
    ("launch_tcb", "Q"),
    ("launch_mit_vector", "Q"),
    ("current_mit_vector", "Q"),
    ("_reserved_208", "152s"),
    ("signature", "512s"),
)
_STRUCT = struct.Struct("<" + "".join(code for _, code in _LAYOUT))
_OFFSETS: dict[str, int] = {}
_offset = 0
for _name, _code in _LAYOUT:
    _OFFSETS[_name] = _offset
    _offset += struct.calcsize("<" + _code)
assert _offset == _STRUCT.size == REPORT_SIZE
_RESERVED = {name: struct.calcsize("<" + code) for name, code in _LAYOUT if name.startswith("_")}
_PUBLIC = tuple(name for name, _ in _LAYOUT if not name.startswith("_"))
_BYTE_SIZES = {
    name: int(code[:-1]) for name, code in _LAYOUT if code.endswith("s") and name in _PUBLIC
}
_INT_BITS = {"I": 32, "Q": 64, "B": 8}
_INT_WIDTHS = {name: _INT_BITS[code] for name, code in _LAYOUT if code in _INT_BITS}

# Guest policy bits (ABI spec Table 9; go-sev-guest abi.go policy*Bit).
POLICY_SMT = 1 << 16
POLICY_RESERVED_ONE = 1 << 17  # must be 1
POLICY_MIGRATE_MA = 1 << 18
POLICY_DEBUG = 1 << 19
POLICY_SINGLE_SOCKET = 1 << 20
POLICY_CXL_ALLOW = 1 << 21
POLICY_MEM_AES_256_XTS = 1 << 22
POLICY_RAPL_DIS = 1 << 23
POLICY_CIPHERTEXT_HIDING = 1 << 24
POLICY_PAGE_SWAP_DISABLE = 1 << 25
_POLICY_KNOWN = (1 << 26) - 1

# Signer info (report offset 0x48).
SIGNING_KEY_VCEK = 0
SIGNING_KEY_VLEK = 1
SIGNING_KEY_NONE = 7


class _Sized:
    """Checks, for builders, that each bytes field has its width and each int fits."""

    _SIZES: ClassVar[dict[str, int]] = {}
    _BITS: ClassVar[dict[str, int]] = {}

    def __post_init__(self) -> None:
        for name, size in self._SIZES.items():
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != size:
                raise ValueError(f"{type(self).__name__}.{name} must be {size} bytes")
        for name, bits in self._BITS.items():
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value < (1 << bits):
                raise ValueError(f"{type(self).__name__}.{name} must be a {bits}-bit unsigned int")


@dataclass(frozen=True)
class TcbVersion:
    """The security patch levels of one TCB_VERSION; ``fmc`` exists on Turin only."""

    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None

    @classmethod
    def decode(cls, raw: int, product: str) -> TcbVersion:
        """Read the SPLs of a raw TCB_VERSION with ``product``'s byte layout."""
        b = raw.to_bytes(8, "little")
        if _product(product) == TURIN:
            return cls(bootloader=b[1], tee=b[2], snp=b[3], microcode=b[7], fmc=b[0])
        return cls(bootloader=b[0], tee=b[1], snp=b[6], microcode=b[7])

    def encode(self, product: str) -> int:
        """The raw TCB_VERSION (reserved bytes zero) in ``product``'s layout."""
        if _product(product) == TURIN:
            b = bytes([self.fmc or 0, self.bootloader, self.tee, self.snp, 0, 0, 0, self.microcode])
        else:
            if self.fmc is not None:
                raise ValueError(f"{product} TCB versions have no FMC SPL")
            b = bytes([self.bootloader, self.tee, 0, 0, 0, 0, self.snp, self.microcode])
        return int.from_bytes(b, "little")


def _product(product: str) -> str:
    if product not in PRODUCTS:
        raise ValueError(f"unknown SEV-SNP product {product!r}; known: {', '.join(PRODUCTS)}")
    return product


@dataclass(frozen=True)
class GuestPolicy:
    """The guest policy the VM owner fixed at launch (report offset 0x08)."""

    abi_minor: int
    abi_major: int
    smt: bool
    migrate_ma: bool
    debug: bool
    single_socket: bool
    cxl_allowed: bool
    mem_aes_256_xts: bool
    rapl_dis: bool
    ciphertext_hiding: bool
    page_swap_disable: bool

    @classmethod
    def decode(cls, raw: int) -> GuestPolicy:
        return cls(
            abi_minor=raw & 0xFF,
            abi_major=(raw >> 8) & 0xFF,
            smt=bool(raw & POLICY_SMT),
            migrate_ma=bool(raw & POLICY_MIGRATE_MA),
            debug=bool(raw & POLICY_DEBUG),
            single_socket=bool(raw & POLICY_SINGLE_SOCKET),
            cxl_allowed=bool(raw & POLICY_CXL_ALLOW),
            mem_aes_256_xts=bool(raw & POLICY_MEM_AES_256_XTS),
            rapl_dis=bool(raw & POLICY_RAPL_DIS),
            ciphertext_hiding=bool(raw & POLICY_CIPHERTEXT_HIDING),
            page_swap_disable=bool(raw & POLICY_PAGE_SWAP_DISABLE),
        )

    def encode(self) -> int:
        flags = (
            (self.smt, POLICY_SMT),
            (self.migrate_ma, POLICY_MIGRATE_MA),
            (self.debug, POLICY_DEBUG),
            (self.single_socket, POLICY_SINGLE_SOCKET),
            (self.cxl_allowed, POLICY_CXL_ALLOW),
            (self.mem_aes_256_xts, POLICY_MEM_AES_256_XTS),
            (self.rapl_dis, POLICY_RAPL_DIS),
            (self.ciphertext_hiding, POLICY_CIPHERTEXT_HIDING),
            (self.page_swap_disable, POLICY_PAGE_SWAP_DISABLE),
        )
        raw = (self.abi_minor & 0xFF) | (self.abi_major & 0xFF) << 8 | POLICY_RESERVED_ONE
        return raw | sum(bit for on, bit in flags if on)


@dataclass(frozen=True)
class PlatformInfo:
    """What the host says about itself (report offset 0x40); ``raw`` keeps every bit.

    Unknown bits are kept, not refused: newer firmware defines more of them
    and they describe the host, not what was signed for the guest.
    """

    raw: int

    @property
    def smt_enabled(self) -> bool:
        return bool(self.raw & 1)

    @property
    def tsme_enabled(self) -> bool:
        return bool(self.raw & 1 << 1)

    @property
    def ecc_enabled(self) -> bool:
        return bool(self.raw & 1 << 2)

    @property
    def rapl_disabled(self) -> bool:
        return bool(self.raw & 1 << 3)

    @property
    def ciphertext_hiding_enabled(self) -> bool:
        return bool(self.raw & 1 << 4)

    @property
    def alias_check_complete(self) -> bool:
        return bool(self.raw & 1 << 5)


@dataclass(frozen=True)
class AttestationReport(_Sized):
    """An SEV-SNP ATTESTATION_REPORT (versions 2 to 5). ``to_bytes()`` rebuilds it exactly.

    TCB values stay raw u64s (decode them with :meth:`tcb` and a product);
    ``cpuid_*`` are zero before version 3, the mitigation vectors before version 5.
    ``signature`` is the raw 512-byte field: r and s little-endian, then zeros.
    """

    _SIZES: ClassVar[dict[str, int]] = _BYTE_SIZES
    _BITS: ClassVar[dict[str, int]] = _INT_WIDTHS

    version: int
    guest_svn: int
    policy: int
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: int
    platform_info: int
    signer_info: int
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: int
    cpuid_fam_id: int
    cpuid_mod_id: int
    cpuid_step: int
    chip_id: bytes
    committed_tcb: int
    current_build: int
    current_minor: int
    current_major: int
    committed_build: int
    committed_minor: int
    committed_major: int
    launch_tcb: int
    launch_mit_vector: int
    current_mit_vector: int
    signature: bytes

    @property
    def guest_policy(self) -> GuestPolicy:
        return GuestPolicy.decode(self.policy)

    @property
    def platform(self) -> PlatformInfo:
        return PlatformInfo(self.platform_info)

    @property
    def author_key_en(self) -> bool:
        return bool(self.signer_info & 1)

    @property
    def mask_chip_key(self) -> bool:
        return bool(self.signer_info & 2)

    @property
    def signing_key(self) -> int:
        """0: VCEK, 1: VLEK, 7: none (SIGNING_KEY_*)."""
        return (self.signer_info >> 2) & 7

    @property
    def signature_r(self) -> int:
        return int.from_bytes(self.signature[:ECDSA_COMPONENT_SIZE], "little")

    @property
    def signature_s(self) -> int:
        return int.from_bytes(
            self.signature[ECDSA_COMPONENT_SIZE : 2 * ECDSA_COMPONENT_SIZE], "little"
        )

    @property
    def product(self) -> str | None:
        """The product the CPUID fields name (version 3 and later), else None."""
        if self.version < 3:
            return None
        if self.cpuid_fam_id == 0x1A:
            return TURIN
        if self.cpuid_fam_id == 0x19:
            if self.cpuid_mod_id <= 0x0F:
                return MILAN
            if 0x10 <= self.cpuid_mod_id <= 0x1F or 0xA0 <= self.cpuid_mod_id <= 0xAF:
                return GENOA  # Bergamo and Siena (0xA_) share Genoa's keys
        return None

    def tcb(self, product: str, which: str = "reported_tcb") -> TcbVersion:
        """One of the four TCB fields (reported, current, committed, launch), decoded."""
        if which not in ("reported_tcb", "current_tcb", "committed_tcb", "launch_tcb"):
            raise ValueError(f"{which!r} is not a TCB field")
        raw: int = getattr(self, which)
        return TcbVersion.decode(raw, product)

    @property
    def signed_region(self) -> bytes:
        """Bytes 0..0x2A0: what the VCEK or VLEK signs."""
        return self.to_bytes()[:SIGNATURE_OFFSET]

    def with_signature(self, signature: bytes) -> AttestationReport:
        return dataclasses.replace(self, signature=signature)

    def to_bytes(self) -> bytes:
        encoded = self.__dict__.get("_encoded")  # the input's bytes, where parsed from them
        if encoded is not None:
            return encoded  # type: ignore[no-any-return]
        values: list[object] = []
        for name, _ in _LAYOUT:
            if name in _RESERVED:
                values.append(bytes(_RESERVED[name]))
            else:
                values.append(getattr(self, name))
        return _STRUCT.pack(*values)


def signing_key_of(data: bytes) -> int | None:
    """The SIGNING_KEY field of raw report bytes, without parsing the rest; None if too short.

    For choosing a certificate chain before (or without) a strict parse, as an
    agent does with what its device returned.
    """
    offset = _OFFSETS["signer_info"]
    if len(data) < offset + 4:
        return None
    return (int.from_bytes(data[offset : offset + 4], "little") >> 2) & 7


def encode_signature(r: int, s: int) -> bytes:
    """The 512-byte SIGNATURE field for ECDSA P-384 (r, s)."""
    return (
        r.to_bytes(ECDSA_COMPONENT_SIZE, "little")
        + s.to_bytes(ECDSA_COMPONENT_SIZE, "little")
        + bytes(SIGNATURE_SIZE - 2 * ECDSA_COMPONENT_SIZE)
    )


def _fail(message: str, field: str, offset: int | None = None) -> QuoteFormatError:
    return QuoteFormatError(
        message, field=field, offset=_OFFSETS[field] if offset is None else offset
    )


def _check_zero(data: bytes, start: int, end: int, field: str) -> None:
    chunk = data[start:end]
    if chunk.count(0) != len(chunk):
        first = start + next(i for i, b in enumerate(chunk) if b)
        raise QuoteFormatError("reserved bytes must be zero", field=field, offset=first)


def parse_report(data: bytes) -> AttestationReport:
    """Parse a report; any malformation raises QuoteFormatError naming field and offset."""
    data = bytes(data)
    if len(data) != REPORT_SIZE:
        field = "report" if len(data) < REPORT_SIZE else "trailing_data"
        raise QuoteFormatError(
            f"is {len(data)} bytes; an attestation report is exactly {REPORT_SIZE}",
            field=field,
            offset=min(len(data), REPORT_SIZE),
        )
    values = dict(zip((name for name, _ in _LAYOUT), _STRUCT.unpack(data), strict=True))
    version = values["version"]
    if version not in REPORT_VERSIONS:
        raise _fail(f"is {version}, expected 2 to 5", "version")
    policy = values["policy"]
    if not policy & POLICY_RESERVED_ONE:
        raise _fail("bit 17 is reserved and must be 1", "policy")
    if policy & ~_POLICY_KNOWN:
        raise _fail(f"{policy:#x} sets reserved bits 26..63", "policy")
    if values["signature_algo"] != SIGNATURE_ALGO_ECDSA_P384_SHA384:
        raise _fail(
            f"is {values['signature_algo']}, expected 1 (ECDSA P-384 SHA-384)", "signature_algo"
        )
    signer_info = values["signer_info"]
    if signer_info >> 5:
        raise _fail(f"{signer_info:#x} sets reserved bits 5..31", "signer_info")
    if 1 < (signer_info >> 2) & 7 < 7:
        raise _fail(f"signing key {(signer_info >> 2) & 7} is reserved", "signer_info")
    for name, size in _RESERVED.items():
        start = _OFFSETS[name]
        _check_zero(data, start, start + size, name)
    if version < 3:
        _check_zero(data, _OFFSETS["cpuid_fam_id"], _OFFSETS["_reserved_18b"], "cpuid_fam_id")
    if version < 5:
        _check_zero(
            data, _OFFSETS["launch_mit_vector"], _OFFSETS["_reserved_208"], "launch_mit_vector"
        )
    _check_zero(data, SIGNATURE_OFFSET + 2 * ECDSA_COMPONENT_SIZE, REPORT_SIZE, "signature")
    for name in _RESERVED:
        del values[name]
    report = AttestationReport(**values)
    # Reserved bytes were checked to be zero, so these bytes are what to_bytes() would pack
    # (and the signed region is sliced from them, not rebuilt, on every verification).
    report.__dict__["_encoded"] = data
    return report


# -- certificate table ------------------------------------------------------------


class CertKind(enum.StrEnum):
    """The certificates a GHCB certificate table names, by their GUIDs."""

    VCEK = "vcek"
    VLEK = "vlek"
    ASK = "ask"
    ARK = "ark"


CERT_GUIDS: Mapping[CertKind, uuid.UUID] = {
    CertKind.VCEK: uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd"),
    CertKind.VLEK: uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1"),
    CertKind.ASK: uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782"),
    CertKind.ARK: uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae"),
}
_SIGNER_KINDS = {SIGNING_KEY_VCEK: (CertKind.VCEK,), SIGNING_KEY_VLEK: (CertKind.VLEK,)}
_KIND_BY_GUID = {guid.bytes: kind for kind, guid in CERT_GUIDS.items()}
_ENTRY = struct.Struct("<16sII")
CERT_TABLE_ENTRY_SIZE = _ENTRY.size
_ZERO_ENTRY = bytes(CERT_TABLE_ENTRY_SIZE)


def _kind_name(guid: bytes) -> str:
    """The CertKind for a known GUID, else the GUID's canonical string."""
    kind = _KIND_BY_GUID.get(guid)
    return kind.value if kind is not None else str(uuid.UUID(bytes=guid))


def parse_cert_table(data: bytes) -> dict[str, bytes]:
    """The certificates of a GHCB certificate table, keyed by CertKind value or GUID string.

    Empty input is an empty table. Entries must end with the all-zero entry (no
    other entry may carry the all-zero GUID), point past it and inside ``data``,
    and name each GUID once; anything after the certificates (page padding) is
    ignored.
    """
    data = bytes(data)
    if not data:
        return {}
    entries: list[tuple[int, bytes, int, int]] = []
    position = 0
    while True:
        if len(data) - position < CERT_TABLE_ENTRY_SIZE:
            raise QuoteFormatError(
                "truncated before the all-zero terminating entry",
                field="cert_table.entry",
                offset=position,
            )
        chunk = data[position : position + CERT_TABLE_ENTRY_SIZE]
        if chunk == _ZERO_ENTRY:
            break
        guid, offset, length = _ENTRY.unpack(chunk)
        if guid == bytes(16):  # the terminator's GUID, with an offset or length: no name
            raise QuoteFormatError(
                "an entry with the all-zero GUID must be all zero (it ends the table)",
                field="cert_table.guid",
                offset=position,
            )
        entries.append((position, guid, offset, length))
        position += CERT_TABLE_ENTRY_SIZE
    header_end = position + CERT_TABLE_ENTRY_SIZE
    table: dict[str, bytes] = {}
    for at, guid, offset, length in entries:
        if offset < header_end:
            raise QuoteFormatError(
                f"offset {offset:#x} points into the table itself (ends at {header_end:#x})",
                field="cert_table.offset",
                offset=at + 16,
            )
        if offset + length > len(data):
            raise QuoteFormatError(
                f"certificate {offset:#x}+{length:#x} runs past the end ({len(data):#x})",
                field="cert_table.length",
                offset=at + 20,
            )
        name = _kind_name(guid)
        if name in table:
            raise QuoteFormatError(f"{name} appears twice", field="cert_table.guid", offset=at)
        table[name] = data[offset : offset + length]
    return table


_Cert = TypeVar("_Cert")


@dataclass(frozen=True)
class CertChain(Generic[_Cert]):
    """The chain an SNP report's signature rests on: signing key (VCEK or VLEK), ASK, ARK.

    This is the one place that order is chosen. Evidence carries the chain as
    :meth:`ordered` gives it, the verifier reads it back with :meth:`from_ordered`,
    and a host's GHCB table is read with :meth:`from_table`. ``_Cert`` is
    whatever form the certificates are in (DER bytes, ``x509.Certificate``).
    """

    signer: _Cert | None = None
    ask: _Cert | None = None
    ark: _Cert | None = None

    @classmethod
    def from_table(
        cls, table: Mapping[str, _Cert], signing_key: int | None = None
    ) -> CertChain[_Cert]:
        """The chain in a parsed certificate table.

        ``signing_key`` (a report's SIGNING_KEY) picks the VCEK or the VLEK entry,
        and only that one; without it a VCEK wins over a VLEK when both are there.
        The ASK slot holds the ASVK when the signer is a VLEK: the GHCB table has
        no GUID of its own for the ASVK.
        """
        order: tuple[CertKind, ...] = (CertKind.VCEK, CertKind.VLEK)
        if signing_key is not None:
            order = _SIGNER_KINDS.get(signing_key, ())
        signer = next((table[k] for k in order if k in table), None)
        return cls(signer, table.get(CertKind.ASK), table.get(CertKind.ARK))

    @classmethod
    def from_ordered(cls, certificates: Sequence[_Cert]) -> CertChain[_Cert]:
        """The chain from its :meth:`ordered` form: by position, signer first."""
        padded = [*certificates[:3], None, None, None]
        return cls(padded[0], padded[1], padded[2])

    @classmethod
    def from_raw_table(cls, data: bytes | None, signing_key: int | None = None) -> CertChain[bytes]:
        """The chain in a raw GHCB certificate table (None or empty: no certificates)."""
        return CertChain.from_table(parse_cert_table(data or b""), signing_key)

    def ordered(self) -> tuple[_Cert, ...]:
        """Signer, ASK, ARK, up to the first that is absent.

        The form is read back by position, so a gap ends it: an ASK and ARK
        without a signer would otherwise be read as a VCEK and an ASK.
        """
        chain: list[_Cert] = []
        for cert in (self.signer, self.ask, self.ark):
            if cert is None:
                break
            chain.append(cert)
        return tuple(chain)


def build_cert_table(certificates: Mapping[str, bytes]) -> bytes:
    """A GHCB certificate table of ``certificates``, keyed as :func:`parse_cert_table` gives."""
    items = list(certificates.items())
    cursor = (len(items) + 1) * CERT_TABLE_ENTRY_SIZE
    header = bytearray()
    for name, blob in items:
        try:
            guid = CERT_GUIDS[CertKind(name)]
        except ValueError:
            guid = uuid.UUID(name)
        if guid.bytes == bytes(16):
            raise ValueError("the all-zero GUID ends the table and cannot name a certificate")
        header += _ENTRY.pack(guid.bytes, cursor, len(blob))
        cursor += len(blob)
    return bytes(header) + _ZERO_ENTRY + b"".join(blob for _, blob in items)
