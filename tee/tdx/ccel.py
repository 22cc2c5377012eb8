"""The CC event log (CCEL) of a TD: its ACPI table, its events, and their replay to RTMRs.

    >>> from attestd.tee.tdx.ccel import parse_ccel_table, parse_event_log, read_ccel, replay_rtmrs
    >>> found = read_ccel()                     # (table, log) from sysfs, None without a CCEL
    >>> table = parse_ccel_table(found[0])      # raises CcelFormatError on any malformation
    >>> table.is_tdx, table.log_area_minimum_length
    >>> log = parse_event_log(found[1])
    >>> [(e.mr_index, e.type_name) for e in log.events]
    >>> replay_rtmrs(log) == quote.body.rtmrs   # the log is what the quoted RTMR0..3 measured

The table follows ACPI 6.5, section 5.2.34 ("CC Event Log ACPI Table"); the log
is a TCG2 crypto-agile event log (TCG PC Client Platform Firmware Profile,
section 10): one SHA-1 format header event carrying the "Spec ID Event03"
structure, then TCG_PCR_EVENT2 records. In a CCEL the record's index names a
TDX measurement register: 0 is MRTD, 1..4 are RTMR0..3.

Parsing is strict, as in ``abi``: every size must fit the bytes it describes,
every digest must belong to an algorithm the header declared with its
standard size, and a malformation is a CcelFormatError naming the field and
its offset. The one thing tolerated is fill after the last record: firmware
reserves a log area of LAML bytes and sets it to 0xFF before writing, and a log
copied into a zeroed buffer ends in 0x00, so a remainder made only of 0xFF or
only of 0x00 bytes ends the log (go-eventlog stops at an index of 0xFFFFFFFF
and ignores what follows; here, what follows must be fill as well).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from attestd.tee._reader import ByteReader
from attestd.tee.errors import CcelFormatError, DeviceError
from attestd.tee.tdx import rtmr

CCEL_SIGNATURE = b"CCEL"
CCEL_TABLE_SIZE = 56
CCEL_TABLE_REVISION = 1
CC_TYPE_SEV = 1
CC_TYPE_TDX = 2

SPEC_ID_SIGNATURE = b"Spec ID Event03\0"
SPEC_VERSION_MAJOR = 2
SPEC_VERSION_MINOR = 0

TPM_ALG_SHA1 = 0x0004
TPM_ALG_SHA256 = 0x000B
TPM_ALG_SHA384 = 0x000C
TPM_ALG_SHA512 = 0x000D
TPM_ALG_SM3_256 = 0x0012
#: Digest sizes of the algorithms whose size is fixed by their definition; a
#: header that declares another size for one of them is malformed.
KNOWN_DIGEST_SIZES: Mapping[int, int] = MappingProxyType(
    {
        TPM_ALG_SHA1: 20,
        TPM_ALG_SHA256: 32,
        TPM_ALG_SHA384: 48,
        TPM_ALG_SHA512: 64,
        TPM_ALG_SM3_256: 32,
    }
)

MR_INDEX_MRTD = 0
MR_INDEX_MAX = rtmr.RTMR_COUNT  # RTMR3: the CCEL counts MRTD as 0

ACPI_TABLES = Path("/sys/firmware/acpi/tables")

# ACPI header (signature, length, revision, checksum, OEM id, OEM table id, OEM
# revision, creator id, creator revision), then CC type, subtype, reserved, LAML, LASA.
_TABLE = struct.Struct("<4sIBB6s8sI4sIBBHQQ")
_SHA1_EVENT_DIGEST_SIZE = 20


class EventType(enum.IntEnum):
    """TCG event types (PC Client Platform Firmware Profile, table 9), for display.

    An event's type is not measured: never decide anything on it alone.
    """

    EV_PREBOOT_CERT = 0x00000000
    EV_POST_CODE = 0x00000001
    EV_UNUSED = 0x00000002
    EV_NO_ACTION = 0x00000003
    EV_SEPARATOR = 0x00000004
    EV_ACTION = 0x00000005
    EV_EVENT_TAG = 0x00000006
    EV_S_CRTM_CONTENTS = 0x00000007
    EV_S_CRTM_VERSION = 0x00000008
    EV_CPU_MICROCODE = 0x00000009
    EV_PLATFORM_CONFIG_FLAGS = 0x0000000A
    EV_TABLE_OF_DEVICES = 0x0000000B
    EV_COMPACT_HASH = 0x0000000C
    EV_IPL = 0x0000000D
    EV_IPL_PARTITION_DATA = 0x0000000E
    EV_NONHOST_CODE = 0x0000000F
    EV_NONHOST_CONFIG = 0x00000010
    EV_NONHOST_INFO = 0x00000011
    EV_OMIT_BOOT_DEVICE_EVENTS = 0x00000012
    EV_POST_CODE2 = 0x00000013
    EV_EFI_EVENT_BASE = 0x80000000
    EV_EFI_VARIABLE_DRIVER_CONFIG = 0x80000001
    EV_EFI_VARIABLE_BOOT = 0x80000002
    EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000003
    EV_EFI_BOOT_SERVICES_DRIVER = 0x80000004
    EV_EFI_RUNTIME_SERVICES_DRIVER = 0x80000005
    EV_EFI_GPT_EVENT = 0x80000006
    EV_EFI_ACTION = 0x80000007
    EV_EFI_PLATFORM_FIRMWARE_BLOB = 0x80000008
    EV_EFI_HANDOFF_TABLES = 0x80000009
    EV_EFI_PLATFORM_FIRMWARE_BLOB2 = 0x8000000A
    EV_EFI_HANDOFF_TABLES2 = 0x8000000B
    EV_EFI_VARIABLE_BOOT2 = 0x8000000C
    EV_EFI_GPT_EVENT2 = 0x8000000D
    EV_EFI_HCRTM_EVENT = 0x80000010
    EV_EFI_VARIABLE_AUTHORITY = 0x800000E0
    EV_EFI_SPDM_FIRMWARE_BLOB = 0x800000E1
    EV_EFI_SPDM_FIRMWARE_CONFIG = 0x800000E2
    EV_EFI_SPDM_DEVICE_POLICY = 0x800000E3
    EV_EFI_SPDM_DEVICE_AUTHORITY = 0x800000E4


def event_type_name(event_type: int) -> str:
    """``EV_...`` for a known type, ``EV_UNKNOWN(0x...)`` otherwise."""
    try:
        return EventType(event_type).name
    except ValueError:
        return f"EV_UNKNOWN({event_type:#010x})"


class _Reader(ByteReader):
    """A cursor over ``data[start:end]`` that reports truncation as CcelFormatError."""

    def error(self, message: str, field: str, offset: int) -> CcelFormatError:
        return CcelFormatError(message, field=field, offset=offset)


@dataclass(frozen=True)
class CcelTable:
    """The ACPI CCEL table: where firmware put the CC event log, and for which TEE.

    The OEM and creator fields are kept as raw bytes (space-padded ASCII in practice).
    """

    revision: int
    checksum: int
    oem_id: bytes
    oem_table_id: bytes
    oem_revision: int
    creator_id: bytes
    creator_revision: int
    cc_type: int
    cc_subtype: int
    log_area_minimum_length: int  # LAML: bytes reserved for the log
    log_area_start_address: int  # LASA: guest-physical address of the log

    @property
    def is_tdx(self) -> bool:
        return self.cc_type == CC_TYPE_TDX


def parse_ccel_table(data: bytes) -> CcelTable:
    """Parse the ACPI CCEL table; signature, length, revision and checksum must all be right."""
    data = bytes(data)
    r = _Reader(data)
    signature = r.take(4, "signature")
    if signature != CCEL_SIGNATURE:
        raise CcelFormatError(
            f"is {signature!r}, expected {CCEL_SIGNATURE!r}", field="signature", offset=0
        )
    length = r.u32("length")
    if length != len(data):
        raise CcelFormatError(
            f"says {length} bytes, the table has {len(data)}", field="length", offset=4
        )
    if length != CCEL_TABLE_SIZE:
        raise CcelFormatError(
            f"is {length}, a revision 1 CCEL table has {CCEL_TABLE_SIZE} bytes",
            field="length",
            offset=4,
        )
    revision = r.u8("revision")
    if revision != CCEL_TABLE_REVISION:
        raise CcelFormatError(
            f"is {revision}, expected {CCEL_TABLE_REVISION}", field="revision", offset=8
        )
    if sum(data) & 0xFF:
        raise CcelFormatError(
            f"bytes sum to {sum(data) & 0xFF:#04x} modulo 256, expected 0",
            field="checksum",
            offset=9,
        )
    (_, _, _, checksum, oem_id, oem_table_id, oem_rev, creator_id, creator_rev, cc_type, subtype,
     _reserved, laml, lasa) = _TABLE.unpack_from(data)  # fmt: skip
    return CcelTable(
        revision, checksum, oem_id, oem_table_id, oem_rev, creator_id, creator_rev,
        cc_type, subtype, laml, lasa,
    )  # fmt: skip


@dataclass(frozen=True)
class SpecIdEvent:
    """TCG_EfiSpecIDEventStruct: the log's header, and the digest size of each algorithm.

    ``algorithms`` maps a TPM_ALG_ID to its digest size, in the header's order.
    """

    platform_class: int
    spec_version_minor: int
    spec_version_major: int
    spec_errata: int
    uintn_size: int
    algorithms: Mapping[int, int]
    vendor_info: bytes


@dataclass(frozen=True)
class CcelEvent:
    """One TCG_PCR_EVENT2 record.

    ``mr_index`` is the CCEL's register index (0 MRTD, 1..4 RTMR0..3);
    ``digests`` maps a TPM_ALG_ID to the digest the firmware extended;
    ``offset`` is where the record starts in the log, for messages only.
    """

    mr_index: int
    event_type: int
    digests: Mapping[int, bytes]
    data: bytes
    offset: int = field(default=0, compare=False, kw_only=True)

    @property
    def type_name(self) -> str:
        return event_type_name(self.event_type)

    @property
    def rtmr_index(self) -> int | None:
        """The RTMR (0..3) this record extends, or None for MRTD."""
        return self.mr_index - 1 if self.mr_index > MR_INDEX_MRTD else None


@dataclass(frozen=True)
class EventLog:
    """A parsed CC event log: its Spec ID header and its records, in log order."""

    spec_id: SpecIdEvent
    events: tuple[CcelEvent, ...]


def parse_event_log(data: bytes) -> EventLog:
    """Parse a CC event log; any malformation raises CcelFormatError naming field and offset."""
    data = bytes(data)
    r = _Reader(data)
    spec_id = _read_spec_id_event(r)
    events: list[CcelEvent] = []
    while r.offset < len(data) and not _only_fill_from(data, r.offset):
        events.append(_read_event(r, spec_id, len(events)))
    return EventLog(spec_id, tuple(events))


def _only_fill_from(data: bytes, offset: int) -> bool:
    """Whether ``data[offset:]`` is all 0xFF or all 0x00, which no record is."""
    fill = data[offset : offset + 1]
    if fill not in (b"\x00", b"\xff"):
        return False
    # A record's first 12 bytes hold an index below 0xFF and a non-zero digest count,
    # so this short look rules out every record, and the full comparison runs at most
    # once per log: the parse stays linear however many records start with a zero.
    head = data[offset : offset + 12]
    return head == fill * len(head) and data.endswith(fill * (len(data) - offset))


def _read_spec_id_event(r: _Reader) -> SpecIdEvent:
    p = "spec_id_event"
    r.u32(f"{p}.mr_index")
    type_offset = r.offset
    event_type = r.u32(f"{p}.event_type")
    if event_type != EventType.EV_NO_ACTION:
        raise CcelFormatError(
            f"is {event_type:#x}, the first event must be EV_NO_ACTION (0x3)",
            field=f"{p}.event_type",
            offset=type_offset,
        )
    r.take(_SHA1_EVENT_DIGEST_SIZE, f"{p}.digest")
    size = r.u32(f"{p}.event_size")
    s = r.sub(size, f"{p}.event_data")
    signature_offset = s.offset
    signature = s.take(len(SPEC_ID_SIGNATURE), f"{p}.signature")
    if signature != SPEC_ID_SIGNATURE:
        raise CcelFormatError(
            f"is {signature!r}, expected {SPEC_ID_SIGNATURE!r}",
            field=f"{p}.signature",
            offset=signature_offset,
        )
    platform_class = s.u32(f"{p}.platform_class")
    version_offset = s.offset
    minor, major = s.u8(f"{p}.spec_version_minor"), s.u8(f"{p}.spec_version_major")
    if (major, minor) != (SPEC_VERSION_MAJOR, SPEC_VERSION_MINOR):
        raise CcelFormatError(
            f"is {major}.{minor}, expected {SPEC_VERSION_MAJOR}.{SPEC_VERSION_MINOR}",
            field=f"{p}.spec_version",
            offset=version_offset,
        )
    errata = s.u8(f"{p}.spec_errata")
    uintn_size = s.u8(f"{p}.uintn_size")
    count_offset = s.offset
    count = s.u32(f"{p}.number_of_algorithms")
    if count == 0:
        raise CcelFormatError("is 0", field=f"{p}.number_of_algorithms", offset=count_offset)
    algorithms: dict[int, int] = {}
    for i in range(count):
        entry_offset = s.offset
        alg, digest_size = s.u16(f"{p}.algorithms[{i}].id"), s.u16(f"{p}.algorithms[{i}].size")
        wanted = KNOWN_DIGEST_SIZES.get(alg)
        if alg in algorithms or digest_size == 0 or wanted not in (None, digest_size):
            problem = "listed twice" if alg in algorithms else f"has digest size {digest_size}"
            raise CcelFormatError(
                f"algorithm {alg:#06x} {problem}", field=f"{p}.algorithms[{i}]", offset=entry_offset
            )
        algorithms[alg] = digest_size
    vendor_info = s.take(s.u8(f"{p}.vendor_info_size"), f"{p}.vendor_info")
    s.expect_end(f"{p}.event_size")
    return SpecIdEvent(
        platform_class, minor, major, errata, uintn_size, MappingProxyType(algorithms), vendor_info
    )


def _read_event(r: _Reader, spec_id: SpecIdEvent, number: int) -> CcelEvent:
    p = f"events[{number}]"
    start = r.offset
    mr_index = r.u32(f"{p}.mr_index")
    if mr_index > MR_INDEX_MAX:
        raise CcelFormatError(
            f"is {mr_index:#x}, a CCEL names registers 0..{MR_INDEX_MAX}",
            field=f"{p}.mr_index",
            offset=start,
        )
    event_type = r.u32(f"{p}.event_type")
    count_offset = r.offset
    count = r.u32(f"{p}.digest_count")
    if not 1 <= count <= len(spec_id.algorithms):
        raise CcelFormatError(
            f"is {count}, the log declares {len(spec_id.algorithms)} algorithm(s)",
            field=f"{p}.digest_count",
            offset=count_offset,
        )
    digests: dict[int, bytes] = {}
    for i in range(count):
        alg_offset = r.offset
        alg = r.u16(f"{p}.digests[{i}].algorithm")
        size = spec_id.algorithms.get(alg)
        if size is None or alg in digests:
            problem = "repeated" if alg in digests else "not declared in the Spec ID event"
            raise CcelFormatError(
                f"algorithm {alg:#06x} is {problem}, its digest size is unknown",
                field=f"{p}.digests[{i}].algorithm",
                offset=alg_offset,
            )
        digests[alg] = r.take(size, f"{p}.digests[{i}].digest")
    data = r.take(r.u32(f"{p}.event_size"), f"{p}.event_data")
    return CcelEvent(mr_index, event_type, MappingProxyType(digests), data, offset=start)


def replay_rtmrs(log: EventLog) -> tuple[bytes, bytes, bytes, bytes]:
    """RTMR0..3 as the log says they were extended: RTMR = SHA-384(RTMR || digest), from zero.

    Only the SHA-384 bank counts (the RTMRs are SHA-384 registers); MRTD
    records (index 0) are measured by the TDX module, not extended, and
    EV_NO_ACTION records are by definition not extended.
    """
    if log.spec_id.algorithms.get(TPM_ALG_SHA384) != rtmr.RTMR_SIZE:
        raise CcelFormatError(
            "the log declares no SHA-384 bank to replay", field="spec_id_event.algorithms", offset=0
        )
    rtmrs = [rtmr.INITIAL_VALUE] * rtmr.RTMR_COUNT
    for number, event in enumerate(log.events):
        if event.mr_index == MR_INDEX_MRTD or event.event_type == EventType.EV_NO_ACTION:
            continue
        if event.mr_index > MR_INDEX_MAX:
            raise CcelFormatError(
                f"is {event.mr_index:#x}, not an RTMR",
                field=f"events[{number}].mr_index",
                offset=event.offset,
            )
        digest = event.digests.get(TPM_ALG_SHA384)
        if digest is None or len(digest) != rtmr.RTMR_SIZE:
            raise CcelFormatError(
                "has no 48-byte SHA-384 digest to extend",
                field=f"events[{number}].digests",
                offset=event.offset,
            )
        i = event.mr_index - 1
        rtmrs[i] = rtmr.extend(rtmrs[i], digest)
    return rtmrs[0], rtmrs[1], rtmrs[2], rtmrs[3]


def read_ccel(acpi_root: Path = ACPI_TABLES) -> tuple[bytes, bytes] | None:
    """``(table, log)`` from ``<root>/CCEL`` and ``<root>/data/CCEL``; None without a CCEL.

    Both are readable by root only on Linux. A table without its log data is a
    DeviceError, not None: the machine has a CCEL that the kernel did not export.
    """
    table_path, log_path = acpi_root / "CCEL", acpi_root / "data" / "CCEL"
    try:
        table = table_path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise DeviceError(f"cannot read the CCEL table {table_path}: {e.strerror or e}") from e
    try:
        log = log_path.read_bytes()
    except OSError as e:
        raise DeviceError(
            f"the CCEL table exists but its log {log_path} cannot be read: {e.strerror or e}"
        ) from e
    return table, log
