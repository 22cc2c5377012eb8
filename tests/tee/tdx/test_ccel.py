"""CCEL table and CC event log parsing and replay, against a real TD's log and its quote."""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType

import pytest

from attestd.tee.errors import CcelFormatError, DeviceError, TeeError
from attestd.tee.tdx.abi import parse_quote
from attestd.tee.tdx.ccel import (
    CC_TYPE_TDX,
    TPM_ALG_SHA256,
    TPM_ALG_SHA384,
    CcelEvent,
    EventLog,
    EventType,
    event_type_name,
    parse_ccel_table,
    parse_event_log,
    read_ccel,
    replay_rtmrs,
)

SHA384 = TPM_ALG_SHA384
EV_NO_ACTION = 3
EV_SEPARATOR = 4
EV_IPL = 0xD


# --- Builders, from the TCG layouts, independent of the parser ---


def spec_id_event(
    algorithms: tuple[tuple[int, int], ...] = ((SHA384, 48),),
    *,
    signature: bytes = b"Spec ID Event03\0",
    event_type: int = EV_NO_ACTION,
    version: tuple[int, int] = (0, 2),  # minor, major
    vendor_info: bytes = b"",
    extra: bytes = b"",
) -> bytes:
    body = signature + struct.pack("<IBBBBI", 0, version[0], version[1], 0, 2, len(algorithms))
    body += b"".join(struct.pack("<HH", alg, size) for alg, size in algorithms)
    body += bytes([len(vendor_info)]) + vendor_info + extra
    return struct.pack("<II20sI", 0, event_type, bytes(20), len(body)) + body


def event2(
    mr_index: int,
    event_type: int,
    data: bytes,
    digests: tuple[tuple[int, bytes], ...] | None = None,
    *,
    count: int | None = None,
    size: int | None = None,
) -> bytes:
    if digests is None:
        digests = ((SHA384, hashlib.sha384(data).digest()),)
    out = struct.pack("<III", mr_index, event_type, len(digests) if count is None else count)
    out += b"".join(struct.pack("<H", alg) + d for alg, d in digests)
    return out + struct.pack("<I", len(data) if size is None else size) + data


def replay_by_hand(events: list[tuple[int, int, bytes]]) -> list[bytes]:
    """RTMR0..3 from (mr_index, type, sha384 digest) triples, the rule written out again."""
    rtmrs = [bytes(48)] * 4
    for mr_index, event_type, digest in events:
        if mr_index >= 1 and event_type != EV_NO_ACTION:
            rtmrs[mr_index - 1] = hashlib.sha384(rtmrs[mr_index - 1] + digest).digest()
    return rtmrs


# --- Vectors ---


@pytest.fixture(scope="module")
def table_bytes(vectors_dir: Path) -> bytes:
    return (vectors_dir / "tdx" / "cos113_ccel_table.bin").read_bytes()


@pytest.fixture(scope="module")
def log_bytes(vectors_dir: Path) -> bytes:
    return (vectors_dir / "tdx" / "cos113_ccel_data.bin").read_bytes()


@pytest.fixture(scope="module")
def log(log_bytes: bytes) -> EventLog:
    return parse_event_log(log_bytes)


@pytest.fixture(scope="module")
def quoted_rtmrs(vectors_dir: Path) -> tuple[bytes, ...]:
    return parse_quote((vectors_dir / "tdx" / "cos113_quote_v4_padded.bin").read_bytes()).body.rtmrs


def record_end(event: CcelEvent) -> int:
    """Where a parsed record ends, from the TCG_PCR_EVENT2 layout."""
    digests = sum(2 + len(d) for d in event.digests.values())
    return event.offset + 12 + digests + 4 + len(event.data)


# --- The ACPI table ---


def test_real_table_parses_with_its_tdx_log_area(table_bytes: bytes) -> None:
    table = parse_ccel_table(table_bytes)
    assert table_bytes[:4] == b"CCEL" and len(table_bytes) == 56
    assert table.revision == 1
    assert table.checksum == 0x69 and sum(table_bytes) % 256 == 0
    assert table.cc_type == CC_TYPE_TDX and table.is_tdx and table.cc_subtype == 0
    assert table.log_area_minimum_length == 0x40000
    assert table.log_area_start_address == 0xBEDBF000
    assert table.oem_id == b"INTEL " and table.oem_table_id == b"EDK2    "


def test_log_area_minimum_length_is_the_size_of_the_real_log(
    table_bytes: bytes, log_bytes: bytes
) -> None:
    assert parse_ccel_table(table_bytes).log_area_minimum_length == len(log_bytes)


def _with_checksum(table: bytearray) -> bytes:
    table[9] = 0
    table[9] = -sum(table) % 256
    return bytes(table)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda t: b"XCEL" + t[4:], "signature"),
        (lambda t: t[:20] + bytes([t[20] ^ 1]) + t[21:], "checksum"),
        (lambda t: t + b"\0", "length"),
        (
            lambda t: _with_checksum(bytearray(t[:4] + struct.pack("<I", 57) + t[8:] + b"\0")),
            "length",
        ),
        (lambda t: _with_checksum(bytearray(t[:8] + b"\x02" + t[9:])), "revision"),
    ],
    ids=["signature", "checksum", "length_mismatch", "length_not_56", "revision"],
)
def test_table_with_a_bad_field_is_refused_naming_it(
    table_bytes: bytes, edit: Callable[[bytes], bytes], field: str
) -> None:
    bad = edit(table_bytes)
    with pytest.raises(CcelFormatError) as e:
        parse_ccel_table(bad)
    assert e.value.field == field
    assert e.value.reason == "ccel_malformed" and isinstance(e.value, TeeError)
    assert field in str(e.value) and "offset" in str(e.value)


@pytest.mark.parametrize("cut", range(56))
def test_truncated_table_is_refused(table_bytes: bytes, cut: int) -> None:
    with pytest.raises(CcelFormatError):
        parse_ccel_table(table_bytes[:cut])


# --- The event log ---


def test_real_log_parses_into_its_records(log: EventLog) -> None:
    assert dict(log.spec_id.algorithms) == {SHA384: 48}
    assert (log.spec_id.spec_version_major, log.spec_id.spec_version_minor) == (2, 0)
    assert len(log.events) == 43
    assert all(set(e.digests) == {SHA384} for e in log.events)
    assert {e.mr_index for e in log.events} == {1, 2, 3}
    assert log.events[0].type_name == "EV_EFI_HANDOFF_TABLES2"
    separators = [e.mr_index for e in log.events if e.event_type == EV_SEPARATOR]
    assert separators == [1, 2]
    assert log.events[-1].data == b"Exit Boot Services Returned with Success"


def test_real_log_replays_to_the_quoted_rtmrs(
    log: EventLog, quoted_rtmrs: tuple[bytes, ...]
) -> None:
    assert replay_rtmrs(log) == quoted_rtmrs
    by_hand = [(e.mr_index, e.event_type, e.digests[SHA384]) for e in log.events]
    assert tuple(replay_by_hand(by_hand)) == quoted_rtmrs


def test_changed_digest_changes_only_its_rtmr(
    log: EventLog, log_bytes: bytes, quoted_rtmrs: tuple[bytes, ...]
) -> None:
    target = next(i for i, e in enumerate(log.events) if e.mr_index == 3)
    event = log.events[target]
    changed = bytearray(event.digests[SHA384])
    changed[0] ^= 1
    edited = dataclasses.replace(event, digests=MappingProxyType({SHA384: bytes(changed)}))
    events = (*log.events[:target], edited, *log.events[target + 1 :])
    replayed = replay_rtmrs(dataclasses.replace(log, events=events))
    assert replayed[2] != quoted_rtmrs[2]
    assert replayed[:2] + replayed[3:] == quoted_rtmrs[:2] + quoted_rtmrs[3:]

    # The same change made in the bytes: the log still parses, and no longer matches.
    digest_at = event.offset + 12 + 2
    raw = bytearray(log_bytes)
    raw[digest_at] ^= 1
    assert replay_rtmrs(parse_event_log(bytes(raw)))[2] != quoted_rtmrs[2]


def test_no_action_and_mrtd_records_are_not_extended(log: EventLog) -> None:
    extra = (
        CcelEvent(2, EV_NO_ACTION, MappingProxyType({SHA384: bytes(48)}), b"x"),
        CcelEvent(0, EV_IPL, MappingProxyType({SHA384: bytes(48)}), b"mrtd"),
    )
    assert replay_rtmrs(dataclasses.replace(log, events=log.events + extra)) == replay_rtmrs(log)


def test_log_ends_at_ff_or_zero_fill_or_at_the_end(log: EventLog, log_bytes: bytes) -> None:
    end = record_end(log.events[-1])
    assert set(log_bytes[end:]) == {0xFF}  # the vector is its log area, 0xFF-filled
    for data in (log_bytes[:end], log_bytes[:end] + bytes(1000), log_bytes[:end] + b"\xff"):
        assert parse_event_log(data) == log


@pytest.mark.parametrize(
    "tail", [b"\x01", b"\0\0\0\xff\xff\xff\xff\xff", b"\xff" * 8 + b"\x00", b"\xff\xff\xff\xff\x01"]
)
def test_anything_but_uniform_fill_after_the_log_is_refused(
    log: EventLog, log_bytes: bytes, tail: bytes
) -> None:
    end = record_end(log.events[-1])
    with pytest.raises(CcelFormatError) as e:
        parse_event_log(log_bytes[:end] + tail)
    assert e.value.field.startswith(f"events[{len(log.events)}].")
    assert e.value.offset >= end


def test_records_full_of_zero_bytes_are_records_not_fill() -> None:
    mrtd = event2(0, 0, b"", ((SHA384, bytes(48)),))
    assert mrtd.count(0) == len(mrtd) - 2  # only the digest count and algorithm id are not zero
    log = parse_event_log(HEADER + mrtd * 2000 + bytes(100))
    assert len(log.events) == 2000
    assert replay_rtmrs(log) == (bytes(48),) * 4  # MRTD records extend no RTMR


def test_truncated_log_is_refused_between_record_boundaries(
    log: EventLog, log_bytes: bytes
) -> None:
    boundaries = {e.offset for e in log.events} | {record_end(e) for e in log.events}
    for cut in range(record_end(log.events[5])):
        if cut in boundaries:
            assert len(parse_event_log(log_bytes[:cut]).events) == sum(
                record_end(e) <= cut for e in log.events
            )
        else:
            with pytest.raises(CcelFormatError):
                parse_event_log(log_bytes[:cut])


def test_synthetic_log_parses_and_replays_by_the_rule() -> None:
    records = [(1, EV_IPL, b"a"), (4, EV_IPL, b"b"), (4, EV_NO_ACTION, b"c"), (0, EV_IPL, b"d")]
    raw = spec_id_event() + b"".join(event2(m, t, d) for m, t, d in records)
    log = parse_event_log(raw + b"\xff" * 100)
    assert [(e.mr_index, e.event_type, e.data) for e in log.events] == records
    assert log.events[1].rtmr_index == 3 and log.events[3].rtmr_index is None
    by_hand = [(m, t, hashlib.sha384(d).digest()) for m, t, d in records]
    assert list(replay_rtmrs(log)) == replay_by_hand(by_hand)


def test_two_banks_parse_and_only_sha384_is_replayed() -> None:
    algs = ((TPM_ALG_SHA256, 32), (SHA384, 48))
    digests = ((TPM_ALG_SHA256, bytes(32)), (SHA384, b"\x01" * 48))
    log = parse_event_log(spec_id_event(algs) + event2(1, EV_IPL, b"x", digests))
    assert dict(log.events[0].digests) == dict(digests)
    assert replay_rtmrs(log)[0] == hashlib.sha384(bytes(48) + b"\x01" * 48).digest()


def test_log_without_a_sha384_bank_parses_but_does_not_replay() -> None:
    algs = ((TPM_ALG_SHA256, 32),)
    log = parse_event_log(
        spec_id_event(algs) + event2(1, EV_IPL, b"x", ((TPM_ALG_SHA256, bytes(32)),))
    )
    with pytest.raises(CcelFormatError, match="SHA-384"):
        replay_rtmrs(log)


def test_record_missing_its_sha384_digest_does_not_replay() -> None:
    algs = ((TPM_ALG_SHA256, 32), (SHA384, 48))
    raw = spec_id_event(algs) + event2(1, EV_IPL, b"x", ((TPM_ALG_SHA256, bytes(32)),))
    log = parse_event_log(raw)
    with pytest.raises(CcelFormatError) as e:
        replay_rtmrs(log)
    assert e.value.field == "events[0].digests"


HEADER = spec_id_event()
GOOD = event2(1, EV_IPL, b"data")


@pytest.mark.parametrize(
    ("raw", "field", "offset"),
    [
        (b"", "spec_id_event.mr_index", 0),
        (HEADER[:20], "spec_id_event.digest", 8),
        (spec_id_event(event_type=4), "spec_id_event.event_type", 4),
        (spec_id_event(signature=b"Spec ID Event02\0"), "spec_id_event.signature", 32),
        (spec_id_event(version=(1, 2)), "spec_id_event.spec_version", 52),
        (spec_id_event(()), "spec_id_event.number_of_algorithms", 56),
        (spec_id_event(((SHA384, 32),)), "spec_id_event.algorithms[0]", 60),
        (spec_id_event(((SHA384, 48), (SHA384, 48))), "spec_id_event.algorithms[1]", 64),
        (spec_id_event(((0x1234, 0),)), "spec_id_event.algorithms[0]", 60),
        (spec_id_event(extra=b"\0"), "spec_id_event.event_size", 65),
        (spec_id_event(vendor_info=b"v")[:-1], "spec_id_event.event_data", 32),
        (HEADER + GOOD[:7], "events[0].event_type", len(HEADER) + 4),
        (HEADER + event2(5, EV_IPL, b""), "events[0].mr_index", len(HEADER)),
        (HEADER + event2(1, EV_IPL, b"", count=2), "events[0].digest_count", len(HEADER) + 8),
        (HEADER + event2(1, EV_IPL, b"", ()), "events[0].digest_count", len(HEADER) + 8),
        (
            HEADER + event2(1, EV_IPL, b"", ((TPM_ALG_SHA256, bytes(32)),)),
            "events[0].digests[0].algorithm",
            len(HEADER) + 12,
        ),
        (HEADER + GOOD[:40], "events[0].digests[0].digest", len(HEADER) + 14),
        (HEADER + event2(1, EV_IPL, b"data", size=5), "events[0].event_data", len(HEADER) + 66),
        (HEADER + GOOD + event2(1, EV_IPL, b"", size=2**32 - 1), "events[1].event_data", 0),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_malformed_log_is_refused_naming_field_and_offset(
    raw: bytes, field: str, offset: int
) -> None:
    with pytest.raises(CcelFormatError) as e:
        parse_event_log(raw)
    assert e.value.field == field
    if offset:
        assert e.value.offset == offset
    assert f"{e.value.offset:#x}" in str(e.value)


def test_digest_count_beyond_the_declared_algorithms_is_refused(
    log_bytes: bytes, log: EventLog
) -> None:
    raw = bytearray(log_bytes)
    count_at = log.events[0].offset + 8
    raw[count_at : count_at + 4] = struct.pack("<I", 2)
    with pytest.raises(CcelFormatError, match="declares 1 algorithm") as e:
        parse_event_log(bytes(raw))
    assert (e.value.field, e.value.offset) == ("events[0].digest_count", count_at)


def test_event_size_past_the_end_is_refused(log_bytes: bytes, log: EventLog) -> None:
    raw = bytearray(log_bytes)
    size_at = log.events[-1].offset + 12 + 50
    raw[size_at : size_at + 4] = struct.pack("<I", len(raw))
    with pytest.raises(CcelFormatError, match="truncated") as e:
        parse_event_log(bytes(raw))
    assert e.value.field == f"events[{len(log.events) - 1}].event_data"


def test_event_type_names() -> None:
    assert event_type_name(0x80000003) == "EV_EFI_BOOT_SERVICES_APPLICATION"
    assert event_type_name(6) == "EV_EVENT_TAG" == EventType.EV_EVENT_TAG.name
    assert event_type_name(0x1234) == "EV_UNKNOWN(0x00001234)"


# --- Reading from sysfs ---


def test_read_ccel_reads_table_and_log_from_an_acpi_dir(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "CCEL").write_bytes(b"table")
    (tmp_path / "data" / "CCEL").write_bytes(b"log")
    assert read_ccel(tmp_path) == (b"table", b"log")


def test_read_ccel_is_none_without_a_ccel(tmp_path: Path) -> None:
    assert read_ccel(tmp_path / "missing") is None
    assert read_ccel(tmp_path) is None


def test_read_ccel_table_without_log_is_a_device_error(tmp_path: Path) -> None:
    (tmp_path / "CCEL").write_bytes(b"table")
    with pytest.raises(DeviceError, match="data/CCEL"):
        read_ccel(tmp_path)


def test_read_ccel_round_trips_the_real_files(
    tmp_path: Path, table_bytes: bytes, log_bytes: bytes, quoted_rtmrs: tuple[bytes, ...]
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "CCEL").write_bytes(table_bytes)
    (tmp_path / "data" / "CCEL").write_bytes(log_bytes)
    found = read_ccel(tmp_path)
    assert found is not None
    assert parse_ccel_table(found[0]).is_tdx
    assert replay_rtmrs(parse_event_log(found[1])) == quoted_rtmrs
