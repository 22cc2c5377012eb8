"""Report and certificate-table layouts: real bytes rebuild exactly; damage names itself."""

from __future__ import annotations

import dataclasses
import struct
import uuid

import pytest

from attestd.tee.errors import QuoteFormatError
from attestd.tee.snp.abi import (
    CERT_GUIDS,
    GENOA,
    MILAN,
    REPORT_SIZE,
    TURIN,
    AttestationReport,
    CertChain,
    CertKind,
    GuestPolicy,
    PlatformInfo,
    TcbVersion,
    build_cert_table,
    encode_signature,
    parse_cert_table,
    parse_report,
)

from .conftest import RealReport


def u32(raw: bytes, offset: int) -> int:
    value: int = struct.unpack_from("<I", raw, offset)[0]
    return value


def u64(raw: bytes, offset: int) -> int:
    value: int = struct.unpack_from("<Q", raw, offset)[0]
    return value


def patched(raw: bytes, offset: int, value: bytes) -> bytes:
    return raw[:offset] + value + raw[offset + len(value) :]


def format_error(raw: bytes) -> QuoteFormatError:
    with pytest.raises(QuoteFormatError) as e:
        parse_report(raw)
    return e.value


def test_real_report_fields_sit_at_the_spec_offsets(real: RealReport) -> None:
    raw = real.raw
    report = parse_report(raw)
    assert report.to_bytes() == raw
    assert report.version == 2 == u32(raw, 0)
    assert report.policy == u64(raw, 0x08) == 0xB0000
    assert report.vmpl == u32(raw, 0x30)
    assert report.signature_algo == 1
    assert report.report_data == raw[0x50:0x90]
    assert report.measurement == raw[0x90:0xC0]
    assert report.host_data == raw[0xC0:0xE0]
    assert report.id_key_digest == raw[0xE0:0x110]
    assert report.report_id == raw[0x140:0x160]
    assert report.report_id_ma == raw[0x160:0x180]
    assert report.reported_tcb == u64(raw, 0x180)
    assert report.chip_id == raw[0x1A0:0x1E0]
    assert report.committed_tcb == u64(raw, 0x1E0)
    assert (report.current_major, report.current_minor, report.current_build) == (1, 49, 3)
    assert report.launch_tcb == u64(raw, 0x1F0)
    assert report.signature_r == int.from_bytes(raw[0x2A0:0x2E8], "little")
    assert report.signature_s == int.from_bytes(raw[0x2E8:0x330], "little")
    assert report.signed_region == raw[:0x2A0]


def test_real_report_decodes_policy_signer_and_milan_tcb(real: RealReport) -> None:
    report = parse_report(real.raw)
    assert report.guest_policy.smt and report.guest_policy.debug
    assert not report.guest_policy.migrate_ma and not report.guest_policy.single_socket
    assert report.guest_policy.encode() == report.policy
    assert (report.signing_key, report.mask_chip_key, report.author_key_en) == (0, False, False)
    assert report.tcb(MILAN) == TcbVersion(bootloader=2, tee=0, snp=5, microcode=68)
    assert report.product is None  # version 2 carries no CPUID


def test_tcb_layouts_differ_between_milan_genoa_and_turin() -> None:
    raw = int.from_bytes(bytes([1, 2, 3, 4, 5, 6, 7, 8]), "little")
    assert TcbVersion.decode(raw, MILAN) == TcbVersion(bootloader=1, tee=2, snp=7, microcode=8)
    assert TcbVersion.decode(raw, GENOA) == TcbVersion.decode(raw, MILAN)
    assert TcbVersion.decode(raw, TURIN) == TcbVersion(2, 3, 4, 8, fmc=1)
    turin = TcbVersion(bootloader=2, tee=3, snp=4, microcode=8, fmc=1)
    assert turin.encode(TURIN).to_bytes(8, "little") == bytes([1, 2, 3, 4, 0, 0, 0, 8])
    milan = TcbVersion(bootloader=1, tee=2, snp=7, microcode=8)
    assert milan.encode(MILAN).to_bytes(8, "little") == bytes([1, 2, 0, 0, 0, 0, 7, 8])
    with pytest.raises(ValueError, match="FMC"):
        turin.encode(MILAN)
    with pytest.raises(ValueError, match="unknown"):
        TcbVersion.decode(raw, "Naples")


def test_policy_and_platform_bits() -> None:
    every = GuestPolicy(1, 2, *(True,) * 9)
    assert every.encode() == (1 << 26) - 1 - 0xFFFF + 0x0201
    assert GuestPolicy.decode(every.encode()) == every
    info = PlatformInfo(0b111111 | 1 << 7)
    assert info.smt_enabled and info.tsme_enabled and info.ecc_enabled and info.rapl_disabled
    assert info.ciphertext_hiding_enabled and info.alias_check_complete
    assert not PlatformInfo(0).smt_enabled


def test_version_3_names_its_product_and_version_5_its_mitigation_vectors(
    real: RealReport,
) -> None:
    base = parse_report(real.raw)
    for (family, model), product in {
        (0x19, 0x01): MILAN,
        (0x19, 0x11): GENOA,
        (0x19, 0xA0): GENOA,
        (0x1A, 0x02): TURIN,
        (0x17, 0x01): None,
    }.items():
        v3 = dataclasses.replace(base, version=3, cpuid_fam_id=family, cpuid_mod_id=model)
        raw = v3.to_bytes()
        assert raw[0x188:0x18A] == bytes([family, model])
        assert parse_report(raw).product == product
    v5 = dataclasses.replace(base, version=5, launch_mit_vector=3, current_mit_vector=7)
    raw = v5.to_bytes()
    assert (u64(raw, 0x1F8), u64(raw, 0x200)) == (3, 7)
    assert parse_report(raw) == v5


def test_fields_a_version_lacks_must_be_zero(real: RealReport) -> None:
    assert format_error(patched(real.raw, 0x188, b"\x19")).field == "cpuid_fam_id"
    v4 = patched(real.raw, 0, b"\x04")
    parse_report(v4)
    error = format_error(patched(v4, 0x200, b"\x01"))
    assert (error.field, error.offset) == ("launch_mit_vector", 0x200)


@pytest.mark.parametrize(
    ("offset", "value", "field"),
    [
        (0x00, b"\x01", "version"),
        (0x00, b"\x06", "version"),
        (0x0A, b"\x01", "policy"),  # bit 17 cleared
        (0x0B, b"\x04", "policy"),  # bit 26 set
        (0x34, b"\x02", "signature_algo"),
        (0x48, b"\x20", "signer_info"),  # bit 5
        (0x48, b"\x08", "signer_info"),  # signing key 2 is reserved
        (0x4C, b"\x01", "_reserved_4c"),
        (0x1EB, b"\x01", "_reserved_1eb"),
        (0x1EF, b"\x01", "_reserved_1ef"),
        (0x29F, b"\x01", "_reserved_208"),
        (0x330, b"\x01", "signature"),  # after r and s
        (0x49F, b"\x01", "signature"),
    ],
)
def test_malformed_fields_name_field_and_offset(
    real: RealReport, offset: int, value: bytes, field: str
) -> None:
    error = format_error(patched(real.raw, offset, value))
    assert error.field == field
    if field.startswith("_") or field == "signature":
        assert error.offset == offset
    assert error.reason == "quote_malformed"


@pytest.mark.parametrize("size", [0, 1, 0x2A0, REPORT_SIZE - 1, REPORT_SIZE + 1, 4096])
def test_wrong_sizes_are_refused(real: RealReport, size: int) -> None:
    raw = (real.raw + bytes(4096))[:size]
    assert format_error(raw).field in ("report", "trailing_data")


def test_builder_checks_widths(real: RealReport) -> None:
    report = parse_report(real.raw)
    with pytest.raises(ValueError, match="report_data"):
        dataclasses.replace(report, report_data=bytes(63))
    with pytest.raises(ValueError, match="guest_svn"):
        dataclasses.replace(report, guest_svn=1 << 32)
    assert encode_signature(report.signature_r, report.signature_s) == report.signature
    assert isinstance(report, AttestationReport)


# -- certificate table ---------------------------------------------------------


def test_cert_table_guids_are_amds_in_rfc4122_byte_order() -> None:
    table = build_cert_table({CertKind.VCEK: b"v" * 10, CertKind.ASK: b"a", CertKind.ARK: b"r"})
    assert table[:16] == bytes.fromhex("63da758de6644564adc5f4b93be8accd")
    assert struct.unpack_from("<II", table, 16) == (4 * 24, 10)
    assert table[3 * 24 : 4 * 24] == bytes(24)
    assert CERT_GUIDS[CertKind.ARK] == uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae")
    assert CERT_GUIDS[CertKind.VLEK] == uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1")
    assert CERT_GUIDS[CertKind.ASK] == uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782")


def test_cert_table_round_trips_with_unknown_guids_and_page_padding() -> None:
    other = "ecae0c0f-9502-43b1-afa2-0ae2e0d565b6"
    entries = {"vcek": b"\x30\x82vcek", "ask": b"ask", "ark": b"ark", other: b"extra"}
    table = build_cert_table(entries)
    assert parse_cert_table(table) == entries
    assert parse_cert_table(table + bytes(4096 - len(table))) == entries
    assert parse_cert_table(b"") == {}
    assert parse_cert_table(bytes(24)) == {}


def cert_table_error(data: bytes) -> QuoteFormatError:
    with pytest.raises(QuoteFormatError) as e:
        parse_cert_table(data)
    return e.value


def test_cert_table_damage_names_itself() -> None:
    table = build_cert_table({"vcek": b"x" * 8, "ask": b"y" * 8})
    assert cert_table_error(table[:30]).field == "cert_table.entry"  # no terminator
    assert cert_table_error(bytes(23)).field == "cert_table.entry"
    inside = patched(table, 16, struct.pack("<I", 24))
    assert (cert_table_error(inside).field, cert_table_error(inside).offset) == (
        "cert_table.offset",
        16,
    )
    past = patched(table, 20, struct.pack("<I", 1000))
    assert cert_table_error(past).field == "cert_table.length"
    twice = patched(table, 24, table[:16])
    assert cert_table_error(twice).field == "cert_table.guid"
    with pytest.raises(ValueError, match="all-zero GUID"):
        build_cert_table({str(uuid.UUID(int=0)): b"x"})


# -- the certificate chain's order -------------------------------------------------


def test_cert_chain_from_a_table_is_signer_ask_ark_whatever_the_table_order() -> None:
    table = {"ark": b"R", "ask": b"S", "vcek": b"V"}
    chain = CertChain.from_table(table)
    assert chain == CertChain(signer=b"V", ask=b"S", ark=b"R")
    assert chain.ordered() == (b"V", b"S", b"R")
    assert CertChain.from_raw_table(build_cert_table(table)).ordered() == (b"V", b"S", b"R")


def test_cert_chain_prefers_the_vcek_and_takes_a_vlek_otherwise() -> None:
    assert CertChain.from_table({"vlek": b"L", "vcek": b"V"}).signer == b"V"
    assert CertChain.from_table({"vlek": b"L", "ask": b"S"}).ordered() == (b"L", b"S")


def test_cert_chain_leaves_out_what_is_absent_and_reads_back_by_position() -> None:
    assert CertChain.from_raw_table(None).ordered() == ()
    assert CertChain.from_raw_table(b"").ordered() == ()
    assert CertChain.from_ordered([b"V", b"S", b"R"]) == CertChain(b"V", b"S", b"R")
    assert CertChain.from_ordered([b"V"]) == CertChain(signer=b"V")
    assert CertChain.from_ordered([]) == CertChain()


def test_cert_chain_without_a_signer_carries_nothing_so_an_ask_is_never_read_as_a_vcek() -> None:
    chain = CertChain.from_table({"ask": b"S", "ark": b"R"})
    assert chain.ordered() == ()
    assert CertChain.from_ordered(chain.ordered()).signer is None
    assert CertChain(signer=b"V", ark=b"R").ordered() == (b"V",)
