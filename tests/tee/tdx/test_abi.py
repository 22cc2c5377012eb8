"""TDX quote parsing and building, checked against dcap-qvl and real hardware quotes."""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from collections.abc import Callable

import dcap_qvl
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from attestd.tee.errors import QuoteFormatError
from attestd.tee.tdx import abi
from attestd.tee.tdx.abi import Quote, TdReport10, TdReport15, parse_quote

from .conftest import RealQuote

HEADER_FIELDS = (
    "version",
    "attestation_key_type",
    "tee_type",
    "qe_svn",
    "pce_svn",
    "qe_vendor_id",
    "user_data",
)
BODY_FIELDS = (
    "tee_tcb_svn",
    "mr_seam",
    "mr_signer_seam",
    "seam_attributes",
    "td_attributes",
    "xfam",
    "mr_td",
    "mr_config_id",
    "mr_owner",
    "mr_owner_config",
    "report_data",
)

# Offsets inside a v4 quote, from the Intel layout, independent of the parser.
SIG_LEN = 0x278
SIG = 0x27C
ATT_KEY = SIG + 64
CERT_TYPE = ATT_KEY + 64
CERT_SIZE = CERT_TYPE + 2
QE_REPORT = CERT_SIZE + 4
QE_SIG = QE_REPORT + 384
AUTH_SIZE = QE_SIG + 64
AUTH = AUTH_SIZE + 2


def assert_matches_dcap_qvl(ours: Quote, raw: bytes) -> None:
    theirs = dcap_qvl.parse_quote(raw)
    for name in HEADER_FIELDS:
        assert getattr(ours.header, name) == getattr(theirs.header, name), name
    report = theirs.report
    for name in BODY_FIELDS:
        assert getattr(ours.body, name) == getattr(report, name), name
    assert ours.body.rtmrs == (report.rt_mr0, report.rt_mr1, report.rt_mr2, report.rt_mr3)
    if isinstance(ours.body, TdReport15):
        assert ours.body.tee_tcb_svn2 == report.tee_tcb_svn2
        assert ours.body.mr_service_td == report.mr_service_td
    else:
        assert not hasattr(report, "mr_service_td")
    their_pem = theirs.cert_chain_pem_bytes()
    assert ours.certification_data.pck_chain_pem.rstrip(b"\0") == their_pem.rstrip(b"\0")


def test_every_field_matches_dcap_qvl(real_quote: RealQuote) -> None:
    quote = parse_quote(real_quote.quote)
    assert_matches_dcap_qvl(quote, real_quote.raw)
    assert quote.header.qe_vendor_id == abi.INTEL_QE_VENDOR_ID
    assert all(len(m) == 48 for m in quote.body.rtmrs)


def test_signature_data_fields_sit_where_the_layout_says(real_quote: RealQuote) -> None:
    raw = real_quote.quote
    quote = parse_quote(raw)
    sig = quote.signature_data
    cert = quote.certification_data
    assert sig.signature == raw[SIG:ATT_KEY]
    assert sig.attestation_key == raw[ATT_KEY:CERT_TYPE]
    assert cert.qe_report.to_bytes() == raw[QE_REPORT:QE_SIG]
    assert cert.qe_report.report_data == raw[QE_SIG - 64 : QE_SIG]
    assert cert.qe_report_signature == raw[QE_SIG:AUTH_SIZE]
    assert cert.qe_auth_data == raw[AUTH : AUTH + len(cert.qe_auth_data)]
    assert raw.endswith(cert.pck_chain_pem)
    assert quote.signed_region == raw[:SIG_LEN]
    # The published fact that ties these fields together.
    binding = hashlib.sha256(sig.attestation_key + cert.qe_auth_data).digest()
    assert cert.qe_report.report_data == binding + bytes(32)


def test_pck_chain_is_leaf_platform_ca_intel_root(real_quote: RealQuote) -> None:
    chain = parse_quote(real_quote.quote).pck_chain()
    names = [c.subject.rfc4514_string() for c in chain]
    assert "CN=Intel SGX PCK Certificate" in names[0]
    assert "CN=Intel SGX PCK Platform CA" in names[1]
    assert "CN=Intel SGX Root CA" in names[2]
    pem = dcap_qvl.parse_quote(real_quote.quote).cert_chain_pem_bytes()
    assert b"".join(c.public_bytes(Encoding.PEM) for c in chain) == pem


def test_round_trip_is_byte_exact(real_quote: RealQuote) -> None:
    quote = parse_quote(real_quote.quote)
    assert quote.to_bytes() == real_quote.quote
    assert parse_quote(quote.to_bytes()) == quote


def test_zero_padding_is_tolerated_and_dropped(real_quotes: list[RealQuote]) -> None:
    padded = next(q for q in real_quotes if q.name == "cos113_quote_v4_padded.bin")
    assert len(padded.raw) == 8000 > padded.length
    assert parse_quote(padded.raw).to_bytes() == padded.quote
    assert parse_quote(padded.quote + bytes(100)) == parse_quote(padded.quote)


def test_trailing_text_after_a_quote_is_rejected(real_quotes: list[RealQuote]) -> None:
    # go-tdx-guest appends text to this quote; only zero padding may follow a quote.
    spr = next(q for q in real_quotes if q.name == "spr_e4_quote_v4.bin")
    with pytest.raises(QuoteFormatError) as e:
        parse_quote(spr.raw)
    assert (e.value.field, e.value.offset) == ("trailing_data", spr.length)
    assert parse_quote(spr.quote).to_bytes() == spr.quote


def test_td_attributes_debug_bit(real_quote: RealQuote) -> None:
    body = parse_quote(real_quote.quote).body
    assert body.debug is False
    debug = dataclasses.replace(body, td_attributes=b"\x01" + body.td_attributes[1:])
    assert debug.debug is True


def _as_v5(quote: Quote, body_type: int) -> Quote:
    header = dataclasses.replace(quote.header, version=5)
    body: TdReport10 = quote.body
    if body_type == abi.BODY_TYPE_TD_REPORT15:
        fields = {f.name: getattr(quote.body, f.name) for f in dataclasses.fields(quote.body)}
        body = TdReport15(
            **fields, tee_tcb_svn2=bytes(range(16)), mr_service_td=hashlib.sha384(b"s").digest()
        )
    return Quote(header, body, quote.signature_data)


@pytest.mark.parametrize("body_type", [abi.BODY_TYPE_TD_REPORT10, abi.BODY_TYPE_TD_REPORT15])
def test_v5_quotes_round_trip_and_match_dcap_qvl(real_quote: RealQuote, body_type: int) -> None:
    v5 = _as_v5(parse_quote(real_quote.quote), body_type)
    raw = v5.to_bytes()
    size = 584 if body_type == abi.BODY_TYPE_TD_REPORT10 else 648
    assert raw[48:54] == struct.pack("<HI", body_type, size)
    assert v5.signed_region == raw[: 54 + size]
    parsed = parse_quote(raw)
    assert parsed == v5
    assert type(parsed.body) is (TdReport10 if size == 584 else TdReport15)
    assert parsed.to_bytes() == raw
    assert_matches_dcap_qvl(parsed, raw)


def test_builders_reject_wrong_sizes(real_quote: RealQuote) -> None:
    quote = parse_quote(real_quote.quote)
    with pytest.raises(ValueError, match="mr_td"):
        dataclasses.replace(quote.body, mr_td=bytes(47))
    with pytest.raises(ValueError, match="rtmrs"):
        dataclasses.replace(quote.body, rtmrs=quote.body.rtmrs[:3])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="signature"):
        dataclasses.replace(quote.signature_data, signature=bytes(63))
    with pytest.raises(ValueError, match="version 4"):
        Quote(quote.header, _as_v5(quote, abi.BODY_TYPE_TD_REPORT15).body, quote.signature_data)


def _set(offset: int, fmt: str, value: int) -> Callable[[bytes], bytes]:
    def mutate(raw: bytes) -> bytes:
        b = bytearray(raw)
        struct.pack_into(fmt, b, offset, value)
        return bytes(b)

    return mutate


def _cut(length: int) -> Callable[[bytes], bytes]:
    return lambda raw: raw[:length]


def _auth_size(raw: bytes) -> int:
    size: int = struct.unpack_from("<H", raw, AUTH_SIZE)[0]
    return size


def _pem_offset(raw: bytes) -> int:
    return AUTH + _auth_size(raw) + 6


def _replace_pem(new: bytes) -> Callable[[bytes], bytes]:
    """Swap the PEM chain, keeping every enclosing length consistent."""

    def mutate(raw: bytes) -> bytes:
        quote = parse_quote(raw)
        cert = dataclasses.replace(quote.certification_data, pck_chain_pem=new)
        sig = dataclasses.replace(quote.signature_data, certification_data=cert)
        return dataclasses.replace(quote, signature_data=sig).to_bytes()

    return mutate


BAD_PEM = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"

MALFORMATIONS: dict[str, tuple[Callable[[bytes], bytes], str, Callable[[bytes], int] | int]] = {
    "empty": (_cut(0), "header", 0),
    "truncated header": (_cut(47), "header", 0),
    "version 3": (_set(0, "<H", 3), "header.version", 0),
    "version 6": (_set(0, "<H", 6), "header.version", 0),
    "attestation key type 3 (P-384)": (_set(2, "<H", 3), "header.attestation_key_type", 2),
    "TEE type SGX": (_set(4, "<I", 0), "header.tee_type", 4),
    "truncated in MRTD": (_cut(200), "body.mr_td", 184),
    "truncated in RTMR3": (_cut(48 + 520 - 1), "body.rtmr3", 48 + 472),
    "no signature data length": (_cut(SIG_LEN + 2), "signature_data_length", SIG_LEN),
    "signature data longer than the input": (
        lambda raw: _set(SIG_LEN, "<I", len(raw))(raw),
        "signature_data",
        SIG,
    ),
    "signature data shorter than its content": (
        lambda raw: _set(SIG_LEN, "<I", len(raw) - SIG - 1)(raw),
        "signature_data.certification_data",
        CERT_TYPE + 6,
    ),
    "certification data type 5 at the top": (
        _set(CERT_TYPE, "<H", 5),
        "signature_data.certification_data.type",
        CERT_TYPE,
    ),
    "certification data size too small": (
        lambda raw: _set(CERT_SIZE, "<I", len(raw) - QE_REPORT - 1)(raw),
        "signature_data.certification_data.pck_chain_pem",
        lambda raw: _pem_offset(raw),
    ),
    "certification data size too large": (
        lambda raw: _set(CERT_SIZE, "<I", len(raw) - QE_REPORT + 1)(raw),
        "signature_data.certification_data",
        QE_REPORT,
    ),
    "QE auth data beyond its container": (
        _set(AUTH_SIZE, "<H", 0xFFFF),
        "signature_data.certification_data.qe_auth_data",
        AUTH,
    ),
    "inner certification data type 3": (
        lambda raw: _set(AUTH + _auth_size(raw), "<H", 3)(raw),
        "signature_data.certification_data.inner_type",
        lambda raw: AUTH + _auth_size(raw),
    ),
    "inner size beyond its container": (
        lambda raw: _set(AUTH + _auth_size(raw) + 2, "<I", 10_000)(raw),
        "signature_data.certification_data.pck_chain_pem",
        lambda raw: _pem_offset(raw),
    ),
    "truncated in the PEM chain": (
        lambda raw: raw[: len(raw) - 10],
        "signature_data",
        SIG,
    ),
    "non-zero byte after zero padding": (
        lambda raw: raw + bytes(5) + b"\x01",
        "trailing_data",
        lambda raw: len(raw) + 5,
    ),
    "PEM with an invalid certificate": (
        _replace_pem(BAD_PEM),
        "signature_data.certification_data.pck_chain_pem",
        lambda raw: _pem_offset(raw),
    ),
    "PEM with text around it": (
        lambda raw: _replace_pem(b"junk\n" + parse_quote(raw).certification_data.pck_chain_pem)(
            raw
        ),
        "signature_data.certification_data.pck_chain_pem",
        lambda raw: _pem_offset(raw),
    ),
    "empty PEM": (
        _replace_pem(b""),
        "signature_data.certification_data.pck_chain_pem",
        lambda raw: _pem_offset(raw),
    ),
}


@pytest.mark.parametrize("case", MALFORMATIONS)
def test_malformed_quotes_name_field_and_offset(real_quote: RealQuote, case: str) -> None:
    mutate, field, offset = MALFORMATIONS[case]
    raw = real_quote.quote
    with pytest.raises(QuoteFormatError) as e:
        parse_quote(mutate(raw))
    assert e.value.field == field
    assert e.value.offset == (offset if isinstance(offset, int) else offset(raw))
    assert field in str(e.value)


@pytest.mark.parametrize(
    ("body_type", "size", "field", "offset"),
    [(1, 384, "body_type", 48), (4, 1000, "body_type", 48), (3, 584, "body_size", 50)],
)
def test_malformed_v5_body_descriptor(
    real_quote: RealQuote, body_type: int, size: int, field: str, offset: int
) -> None:
    raw = bytearray(_as_v5(parse_quote(real_quote.quote), 2).to_bytes())
    struct.pack_into("<HI", raw, 48, body_type, size)
    with pytest.raises(QuoteFormatError) as e:
        parse_quote(bytes(raw))
    assert (e.value.field, e.value.offset) == (field, offset)
