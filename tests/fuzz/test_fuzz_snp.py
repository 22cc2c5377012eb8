"""Whatever bytes arrive, the SNP parsers answer with a value or a QuoteFormatError, nothing else.

A seeded loop pushes 100,000 inputs through each parser (bit flips, byte
writes, truncations, extensions, random bytes, structured field values), and a
small hypothesis test adds shrinking for whatever the loop cannot reach.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from attestd.tee.errors import QuoteFormatError
from attestd.tee.snp.abi import (
    REPORT_SIZE,
    AttestationReport,
    build_cert_table,
    encode_signature,
    parse_cert_table,
    parse_report,
)

ROUNDS = 100_000


def _base_report() -> bytes:
    """A valid version 5 report with every field non-trivial (no vectors, no keys needed)."""
    rng = random.Random(1)

    def b(n: int) -> bytes:
        return rng.randbytes(n)

    return AttestationReport(
        version=5,
        guest_svn=3,
        policy=0x30000,
        family_id=b(16),
        image_id=b(16),
        vmpl=0,
        signature_algo=1,
        current_tcb=0xD516000000000004,
        platform_info=0x25,
        signer_info=0,
        report_data=b(64),
        measurement=b(48),
        host_data=b(32),
        id_key_digest=b(48),
        author_key_digest=b(48),
        report_id=b(32),
        report_id_ma=b"\xff" * 32,
        reported_tcb=0xD516000000000004,
        cpuid_fam_id=0x19,
        cpuid_mod_id=0x11,
        cpuid_step=1,
        chip_id=b(64),
        committed_tcb=0xD516000000000004,
        current_build=21,
        current_minor=55,
        current_major=1,
        committed_build=21,
        committed_minor=55,
        committed_major=1,
        launch_tcb=0xD516000000000004,
        launch_mit_vector=1,
        current_mit_vector=3,
        signature=encode_signature(rng.getrandbits(384), rng.getrandbits(384)),
    ).to_bytes()


BASE_REPORT = _base_report()
BASE_TABLE = build_cert_table(
    {
        "vcek": bytes(range(200)),
        "ask": b"ask" * 40,
        "ark": b"ark" * 40,
        "ecae0c0f-9502-43b1-afa2-0ae2e0d565b6": b"x",
    }
)


def report_property(data: bytes) -> bool:
    """A report that rebuilds to exactly ``data``, or QuoteFormatError; True if it parsed."""
    try:
        report = parse_report(data)
    except QuoteFormatError:
        return False
    assert report.to_bytes() == data
    return True


def table_property(data: bytes) -> bool:
    """Certificates that survive a rebuild, or QuoteFormatError; True if it parsed."""
    try:
        table = parse_cert_table(data)
    except QuoteFormatError:
        return False
    assert all(isinstance(k, str) and isinstance(v, bytes) for k, v in table.items())
    if table:
        assert parse_cert_table(build_cert_table(table)) == table
    return True


def mutate(rng: random.Random, base: bytes, fields: tuple[tuple[int, str], ...]) -> bytes:
    """One input: mostly small damage to ``base``, sometimes big, sometimes pure noise."""
    choice = rng.randrange(10)
    data = bytearray(base)
    if choice <= 3:  # flip a few bits
        for _ in range(rng.randint(1, 4)):
            bit = rng.randrange(len(data) * 8)
            data[bit // 8] ^= 1 << (bit % 8)
    elif choice == 4:  # overwrite a few bytes
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif choice == 5:  # a structured field gets an extreme value
        offset, code = rng.choice(fields)
        size = struct.calcsize(code)
        extremes = [0, 1, 2, 3, 5, 6, 7, 0xFF, (1 << (8 * size)) - 1]
        value = rng.choice([*extremes, rng.getrandbits(8 * size)])
        struct.pack_into(code, data, offset, value)
    elif choice == 6:  # truncate
        del data[rng.randrange(len(data) + 1) :]
    elif choice == 7:  # extend
        data += rng.choice([bytes(rng.randrange(1, 64)), rng.randbytes(rng.randrange(1, 64))])
    elif choice == 8:  # random bytes of a plausible size
        sizes = [0, 1, 23, 24, 48, REPORT_SIZE, rng.randrange(2 * len(base))]
        return rng.randbytes(rng.choice(sizes))
    else:  # splice two regions
        a, b = sorted(rng.randrange(len(data)) for _ in range(2))
        c = rng.randrange(len(data))
        data[c : c + (b - a)] = base[a:b]
    return bytes(data)


# (offset, struct code) of the fields whose values steer the parsers.
REPORT_FIELDS = (
    (0x00, "<I"),
    (0x08, "<Q"),
    (0x34, "<I"),
    (0x48, "<I"),
    (0x188, "<B"),
    (0x1F8, "<Q"),
)
TABLE_FIELDS = ((0, "<Q"), (16, "<I"), (20, "<I"), (40, "<I"), (44, "<I"), (68, "<I"), (96, "<Q"))


def run(prop: Callable[[bytes], bool], base: bytes, fields: tuple[tuple[int, str], ...]) -> int:
    """How many of ROUNDS mutations of ``base`` parsed; every one keeps the property."""
    assert prop(base)
    rng = random.Random(0x5E5)
    return sum(prop(mutate(rng, base, fields)) for _ in range(ROUNDS))


def test_100k_mutated_reports() -> None:
    parsed = run(report_property, BASE_REPORT, REPORT_FIELDS)
    assert ROUNDS // 10 < parsed < ROUNDS  # both outcomes are exercised


def test_100k_mutated_cert_tables() -> None:
    parsed = run(table_property, BASE_TABLE, TABLE_FIELDS)
    assert ROUNDS // 10 < parsed < ROUNDS


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2 * REPORT_SIZE), st.binary(max_size=512))
def test_arbitrary_bytes(report: bytes, table: bytes) -> None:
    report_property(report)
    table_property(table)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, REPORT_SIZE - 1), st.integers(0, 255)), max_size=6))
def test_written_bytes(changes: list[tuple[int, int]]) -> None:
    data = bytearray(BASE_REPORT)
    for position, value in changes:
        data[position] = value
    report_property(bytes(data))
