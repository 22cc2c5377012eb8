"""Whatever bytes arrive, the parser answers with a Quote or a QuoteFormatError that
names the field and offset at fault, and verification with a Quote or a TEE error.

The fuzz properties say more than "no traceback": each run counts its rejections
and must have seen some, damage at a checked field must be refused by that
field's name, and damage to the signed region must never verify.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attestd.tee.errors import QuoteFormatError, QuoteVerificationError
from attestd.tee.tdx.abi import parse_quote
from attestd.tee.tdx.verify import VerifyOptions, intel_sgx_root_ca, verify_quote

from .conftest import VECTORS_NOW, RealQuote

FUZZ = settings(max_examples=300, deadline=None)

# Offsets in a v4 quote: the 48-byte header, the TD report body, then the signature data.
HEADER_END = 0x30
BODY_END = 0x278  # also where signature_data_length sits (u32)
SIGNATURE_DATA = 0x27C
CERT_DATA_TYPE = 0x2FC  # after the 64-byte signature and the 64-byte attestation key

# Offsets of the v4 length and type fields, where a mutation matters most.
LENGTH_FIELDS = ((0, "<H"), (2, "<H"), (4, "<I"), (0x278, "<I"), (0x2FC, "<H"), (0x2FE, "<I"))


@pytest.fixture(scope="module")
def base(real_quotes: list[RealQuote]) -> bytes:
    return next(q for q in real_quotes if q.name == "dcapqvl_quote_v4.bin").quote


def parses_or_rejects(data: bytes) -> QuoteFormatError | None:
    """The property: a Quote that round-trips (None), or the QuoteFormatError, nothing else."""
    try:
        quote = parse_quote(data)
    except QuoteFormatError as err:
        assert err.field, "a rejection names the field at fault"
        assert 0 <= err.offset <= len(data), "and an offset inside the input"
        return err
    rebuilt = quote.to_bytes()
    assert data[: len(rebuilt)] == rebuilt
    assert not data[len(rebuilt) :].strip(b"\0")
    return None


def counted(run: Callable[[Callable[[bytes], None]], None]) -> Counter[str]:
    """Run a hypothesis property that feeds inputs to ``check``; count what the parser said."""
    outcomes: Counter[str] = Counter()

    def check(data: bytes) -> None:
        outcomes["rejected" if parses_or_rejects(data) is not None else "parsed"] += 1

    run(check)
    return outcomes


def _plausible_header(data: bytes) -> bool:
    if len(data) < HEADER_END:
        return False
    version, key_type, tee_type = struct.unpack_from("<HHI", data)
    return version in (4, 5) and key_type == 2 and tee_type == 0x81


# -- known damage is refused by name -----------------------------------------------------


def test_the_real_quote_parses_and_round_trips(base: bytes) -> None:
    assert parses_or_rejects(base) is None
    assert parses_or_rejects(base + bytes(16)) is None  # zero padding is allowed


@pytest.mark.parametrize(
    ("cut", "field", "offset"),
    [
        (0, "header", 0),
        (HEADER_END - 1, "header", 0),
        (HEADER_END, "body.tee_tcb_svn", HEADER_END),
        (0x64, "body.mr_seam", 0x40),
        (BODY_END - 1, "body.report_data", 0x238),
        (BODY_END, "signature_data_length", BODY_END),
        (SIGNATURE_DATA - 1, "signature_data_length", BODY_END),
        (SIGNATURE_DATA, "signature_data", SIGNATURE_DATA),
        (CERT_DATA_TYPE + 1, "signature_data", SIGNATURE_DATA),
    ],
)
def test_a_truncation_names_the_field_it_cuts(
    base: bytes, cut: int, field: str, offset: int
) -> None:
    with pytest.raises(QuoteFormatError, match="truncated") as caught:
        parse_quote(base[:cut])
    assert (caught.value.field, caught.value.offset) == (field, offset)
    assert caught.value.reason == "quote_malformed"


def test_every_truncation_is_refused_at_or_before_the_cut(base: bytes) -> None:
    for cut in range(len(base)):
        err = parses_or_rejects(base[:cut])
        assert err is not None, f"a quote cut at {cut:#x} parsed"
        assert err.offset <= cut, (cut, err.field, err.offset)


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "field"),
    [
        (0, "<H", 3, "header.version"),
        (0, "<H", 6, "header.version"),
        (2, "<H", 1, "header.attestation_key_type"),
        (4, "<I", 0, "header.tee_type"),
        (BODY_END, "<I", 10, "signature_data.signature"),  # too short for its signature
        (BODY_END, "<I", 0xFFFFFF, "signature_data"),  # longer than the input
        (CERT_DATA_TYPE, "<H", 1, "signature_data.certification_data.type"),
        (CERT_DATA_TYPE + 2, "<I", 0xFFFFFF, "signature_data.certification_data"),
    ],
)
def test_a_bad_value_in_a_checked_field_is_refused_by_name(
    base: bytes, offset: int, fmt: str, value: int, field: str
) -> None:
    data = bytearray(base)
    struct.pack_into(fmt, data, offset, value)
    with pytest.raises(QuoteFormatError) as caught:
        parse_quote(bytes(data))
    assert caught.value.field == field


def test_non_zero_bytes_after_the_quote_are_refused_where_they_start(base: bytes) -> None:
    with pytest.raises(QuoteFormatError) as caught:
        parse_quote(base + b"\0\0\x01")
    assert (caught.value.field, caught.value.offset) == ("trailing_data", len(base) + 2)


# -- fuzzing: parse or reject, and some do reject ----------------------------------------


def test_random_bytes() -> None:
    @FUZZ
    @given(st.binary(max_size=6000))
    def run(data: bytes) -> None:
        err = parses_or_rejects(data)
        outcomes["rejected" if err is not None else "parsed"] += 1
        if not _plausible_header(data):
            # Without a TDX header nothing past the header is even looked at.
            assert err is not None and err.field.startswith("header")

    outcomes: Counter[str] = Counter()
    run()
    assert outcomes["rejected"] > 0


def test_truncated_and_padded(base: bytes) -> None:
    def run(check: Callable[[bytes], None]) -> None:
        @FUZZ
        @given(cut=st.integers(min_value=0), padding=st.integers(min_value=0, max_value=64))
        def go(cut: int, padding: int) -> None:
            check(base[: cut % (len(base) + 1)] + bytes(padding))

        go()

    outcomes = counted(run)
    assert outcomes["rejected"] > 0


def test_mutated_bytes(base: bytes) -> None:
    def run(check: Callable[[bytes], None]) -> None:
        @FUZZ
        @given(
            st.lists(
                st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=8
            )
        )
        def go(changes: list[tuple[int, int]]) -> None:
            data = bytearray(base)
            for position, value in changes:
                data[position % len(data)] = value
            check(bytes(data))

        go()

    assert counted(run)["rejected"] > 0


def test_body_bytes_are_not_the_parsers_business(base: bytes) -> None:
    """The TD report body is measurements for the policy to judge: any value parses."""

    @FUZZ
    @given(st.integers(HEADER_END, BODY_END - 1), st.integers(0, 255))
    def run(position: int, value: int) -> None:
        data = bytearray(base)
        data[position] = value
        assert parses_or_rejects(bytes(data)) is None
        assert parse_quote(bytes(data)).body.to_bytes()[position - HEADER_END] == value

    run()


def test_mutated_length_and_type_fields(base: bytes) -> None:
    def run(check: Callable[[bytes], None]) -> None:
        @FUZZ
        @given(
            field=st.sampled_from(LENGTH_FIELDS),
            value=st.integers(min_value=0, max_value=2**32 - 1),
        )
        def go(field: tuple[int, str], value: int) -> None:
            offset, fmt = field
            data = bytearray(base)
            struct.pack_into(fmt, data, offset, value % (1 << (8 * struct.calcsize(fmt))))
            check(bytes(data))

        go()

    outcomes = counted(run)
    assert outcomes["rejected"] > 0


def test_spliced_bytes(base: bytes) -> None:
    def run(check: Callable[[bytes], None]) -> None:
        @FUZZ
        @given(st.binary(min_size=1, max_size=200), st.integers(min_value=0))
        def go(chunk: bytes, position: int) -> None:
            at = position % len(base)
            check(base[:at] + chunk + base[at:])

        go()

    assert counted(run)["rejected"] > 0


# -- verification ------------------------------------------------------------------------


def test_the_real_quote_verifies_under_intels_root(base: bytes) -> None:
    verify_quote(base, VerifyOptions([intel_sgx_root_ca()], VECTORS_NOW))


def test_verification_of_mutated_quotes_fails_only_with_tee_errors(base: bytes) -> None:
    options = VerifyOptions([intel_sgx_root_ca()], VECTORS_NOW)
    outcomes: Counter[str] = Counter()

    @FUZZ
    @given(
        st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=4)
    )
    def run(changes: list[tuple[int, int]]) -> None:
        data = bytearray(base)
        for position, value in changes:
            data[position % len(data)] = value
        signed_region_changed = data[:BODY_END] != base[:BODY_END]
        try:
            verify_quote(bytes(data), options)
        except (QuoteFormatError, QuoteVerificationError):
            outcomes["refused"] += 1
            return
        # The quote signature covers header and body: no change there may verify.
        assert not signed_region_changed, f"a quote changed at {changes} verified"
        outcomes["verified"] += 1

    run()
    assert outcomes["refused"] > 0
