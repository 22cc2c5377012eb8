"""Whatever bytes arrive, the parser answers with a Quote or a QuoteFormatError,
and verification with a Quote or a TEE error."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attestd.tee.errors import QuoteFormatError, QuoteVerificationError
from attestd.tee.tdx.abi import parse_quote
from attestd.tee.tdx.verify import VerifyOptions, intel_sgx_root_ca, verify_quote

from .conftest import VECTORS_NOW, RealQuote

FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Offsets of the v4 length and type fields, where a mutation matters most.
LENGTH_FIELDS = ((0, "<H"), (2, "<H"), (4, "<I"), (0x278, "<I"), (0x2FC, "<H"), (0x2FE, "<I"))


@pytest.fixture(scope="module")
def base(real_quotes: list[RealQuote]) -> bytes:
    return next(q for q in real_quotes if q.name == "dcapqvl_quote_v4.bin").quote


def parses_or_rejects(data: bytes) -> None:
    """The property: a Quote that round-trips, or QuoteFormatError, never anything else."""
    try:
        quote = parse_quote(data)
    except QuoteFormatError:
        return
    rebuilt = quote.to_bytes()
    assert data[: len(rebuilt)] == rebuilt
    assert not data[len(rebuilt) :].strip(b"\0")


@FUZZ
@given(st.binary(max_size=6000))
def test_random_bytes(data: bytes) -> None:
    parses_or_rejects(data)


@FUZZ
@given(cut=st.integers(min_value=0), padding=st.integers(min_value=0, max_value=64))
def test_truncated_and_padded(base: bytes, cut: int, padding: int) -> None:
    parses_or_rejects(base[: cut % (len(base) + 1)] + bytes(padding))


@FUZZ
@given(st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=8))
def test_mutated_bytes(base: bytes, changes: list[tuple[int, int]]) -> None:
    data = bytearray(base)
    for position, value in changes:
        data[position % len(data)] = value
    parses_or_rejects(bytes(data))


@FUZZ
@given(field=st.sampled_from(LENGTH_FIELDS), value=st.integers(min_value=0, max_value=2**32 - 1))
def test_mutated_length_and_type_fields(base: bytes, field: tuple[int, str], value: int) -> None:
    offset, fmt = field
    data = bytearray(base)
    struct.pack_into(fmt, data, offset, value % (1 << (8 * struct.calcsize(fmt))))
    parses_or_rejects(bytes(data))


@FUZZ
@given(st.binary(min_size=1, max_size=200), st.integers(min_value=0))
def test_spliced_bytes(base: bytes, chunk: bytes, position: int) -> None:
    at = position % len(base)
    parses_or_rejects(base[:at] + chunk + base[at:])


@FUZZ
@given(st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=4))
def test_verification_of_mutated_quotes_fails_only_with_tee_errors(
    base: bytes, changes: list[tuple[int, int]]
) -> None:
    data = bytearray(base)
    for position, value in changes:
        data[position % len(data)] = value
    options = VerifyOptions([intel_sgx_root_ca()], VECTORS_NOW)
    with contextlib.suppress(QuoteFormatError, QuoteVerificationError):
        verify_quote(bytes(data), options)
