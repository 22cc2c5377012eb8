"""Whatever bytes arrive, the TDX parsers answer with a value or with their own format error.

Each test feeds 100,000 inputs to one parser: real vectors mutated by a seeded
random.Random (bit flips, byte sets, truncations, extensions, splices,
insertions, deletions and edits of the length, count and type fields), and
pure random bytes. The seed is fixed, so a failure is reproducible; the
message carries the failing input in hex. ``fuzz/fuzz_parsers.py`` runs the
same targets for longer, coverage-guided where atheris is installed.
"""

from __future__ import annotations

import random
import struct
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from attestd.tee.errors import CcelFormatError, QuoteFormatError
from attestd.tee.tdx.abi import parse_quote
from attestd.tee.tdx.ccel import parse_ccel_table, parse_event_log, replay_rtmrs

# Mutated certificates may carry serial number 0, which cryptography warns about
# on load; that is the input being hostile, not attestd misbehaving.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Parsed a serial number:cryptography.utils.CryptographyDeprecationWarning"
)

INPUTS = 100_000
SEED = 0x7D8

INTERESTING_U8 = (0, 1, 2, 3, 4, 5, 0x7F, 0x80, 0xFE, 0xFF)
INTERESTING_U32 = (
    *INTERESTING_U8,
    0x0C,
    0x30,
    0x100,
    0x7FFF,
    0x8000,
    0xFFFF,
    0x10000,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFE,
    0xFFFFFFFF,
)
_WIDTHS = ((1, "<B"), (2, "<H"), (4, "<I"))


@dataclass(frozen=True)
class Target:
    """One parser under fuzzing: its seed inputs, where their fields are, and its property."""

    name: str
    corpus: tuple[bytes, ...]
    fields: tuple[tuple[int, ...], ...]  # per corpus entry: offsets of length/count/type fields
    check: Callable[[bytes], None]  # raises only the parser's own format error
    allowed: type[Exception]
    fix: Callable[[bytearray], None] | None = None  # e.g. repair a checksum, half the time


class Mutator:
    """Seeded mutations of a corpus; each call returns one input."""

    def __init__(self, target: Target, seed: int) -> None:
        self.target = target
        self.rng = random.Random(seed)

    def __call__(self) -> bytes:
        rng = self.rng
        if rng.random() < 0.08:
            return rng.randbytes(rng.randrange(600))
        i = rng.randrange(len(self.target.corpus))
        data = bytearray(self.target.corpus[i])
        for _ in range(1 if rng.random() < 0.7 else rng.randrange(2, 6)):
            self._mutate_once(data, self.target.fields[i])
        if self.target.fix is not None and rng.random() < 0.5:
            self.target.fix(data)
        return bytes(data)

    def _mutate_once(self, data: bytearray, fields: tuple[int, ...]) -> None:
        rng = self.rng
        op = rng.randrange(10)
        n = len(data)
        if op <= 1 and fields:  # length, count and type fields get a third of the effort
            self._edit_field(data, rng.choice(fields))
        elif op == 2 and n:  # bit flips
            for _ in range(rng.randrange(1, 5)):
                data[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif op == 3 and n:  # byte sets
            for _ in range(rng.randrange(1, 5)):
                data[rng.randrange(n)] = rng.choice((*INTERESTING_U8, rng.randrange(256)))
        elif op == 4:  # truncation
            del data[rng.randrange(n + 1) :]
        elif op == 5:  # extension: fill, zeros or random bytes
            size = rng.randrange(1, 64)
            data += rng.choice((b"\xff" * size, bytes(size), rng.randbytes(size)))
        elif op == 6:  # splice: a piece of another corpus entry
            other = rng.choice(self.target.corpus)
            start = rng.randrange(len(other) + 1)
            piece = other[start : start + rng.randrange(1, 256)]
            at = rng.randrange(n + 1)
            data[at : at + (len(piece) if rng.random() < 0.5 else 0)] = piece
        elif op == 7 and n:  # deletion of a chunk
            at = rng.randrange(n)
            del data[at : at + rng.randrange(1, 16)]
        elif op == 8:  # insertion of random bytes
            at = rng.randrange(n + 1)
            data[at:at] = rng.randbytes(rng.randrange(1, 16))
        else:  # a field anywhere, as if it were a length
            self._edit_field(data, rng.randrange(n + 1))

    def _edit_field(self, data: bytearray, at: int) -> None:
        rng = self.rng
        width, fmt = rng.choice(_WIDTHS)
        if at + width > len(data):
            return
        old = int.from_bytes(data[at : at + width], "little")
        mask = (1 << (8 * width)) - 1
        value = rng.choice(
            (
                rng.choice(INTERESTING_U32) & mask,
                (old + rng.randrange(-4, 5)) & mask,
                (old * 2) & mask,
                rng.randrange(mask + 1),
                len(data) & mask,
            )
        )
        data[at : at + width] = struct.pack(fmt, value)


# --- The three targets ---


def _quote_fields(quote: bytes) -> tuple[int, ...]:
    # v4 layout: header fields, v5 body descriptor, signature length, cert data type and
    # size, QE auth data size, inner cert type and size.
    auth = 0x482
    auth_size = int.from_bytes(quote[auth : auth + 2], "little") if len(quote) > auth + 2 else 0
    return (
        0,
        2,
        4,
        8,
        10,
        0x30,
        0x32,
        0x278,
        0x2FC,
        0x2FE,
        auth,
        auth + 2 + auth_size,
        auth + 4 + auth_size,
    )


def _check_quote(data: bytes) -> None:
    quote = parse_quote(data)
    rebuilt = quote.to_bytes()
    assert data[: len(rebuilt)] == rebuilt and not data[len(rebuilt) :].strip(b"\0")


def quote_target(vectors: Path) -> Target:
    tdx = vectors / "tdx"
    names = ("dcapqvl_quote_v4.bin", "spr_e4_quote_v4.bin", "cos113_quote_v4_padded.bin")
    raws = [(tdx / name).read_bytes() for name in names]
    # The quotes themselves (without padding or trailing text), and the padded one as read.
    corpus = [raw[: 0x27C + int.from_bytes(raw[0x278:0x27C], "little")] for raw in raws]
    corpus.append(raws[2][:6000])
    return Target(
        "parse_quote",
        tuple(corpus),
        tuple(_quote_fields(q) for q in corpus),
        _check_quote,
        QuoteFormatError,
    )


def _record_fields(log: bytes) -> tuple[int, ...]:
    """Offsets of the header's and each record's fields, walked by the TCG layout."""
    fields = [4, 28, 56, 60, 62, 64]
    at = 32 + int.from_bytes(log[28:32], "little")
    while at + 12 <= len(log) and log[at] not in (0x00, 0xFF):
        count = int.from_bytes(log[at + 8 : at + 12], "little")
        size_at = at + 12 + count * 50  # SHA-384 only: 2-byte id and 48-byte digest
        fields += [at, at + 4, at + 8, at + 12, size_at]
        at = size_at + 4 + int.from_bytes(log[size_at : size_at + 4], "little")
    return tuple(fields)


def _check_log(data: bytes) -> None:
    log = parse_event_log(data)
    try:
        rtmrs = replay_rtmrs(log)
    except CcelFormatError:
        return
    assert len(rtmrs) == 4 and all(len(r) == 48 for r in rtmrs)


def ccel_log_target(vectors: Path) -> Target:
    raw = (vectors / "tdx" / "cos113_ccel_data.bin").read_bytes()
    log = parse_event_log(raw)
    header_end = log.events[0].offset
    starts = [e.offset for e in log.events] + [len(raw.rstrip(b"\xff"))]
    # Small bases keep each parse cheap: the header with a few leading records, with a
    # few trailing records, and with single records of each size class; fill or none.
    pieces = [
        raw[:header_end],
        raw[: starts[3]],
        raw[: starts[6]],
        raw[:header_end] + raw[starts[-4] : starts[-1]],
        raw[:header_end] + raw[starts[11] : starts[12]] + raw[starts[20] : starts[22]],
    ]
    corpus = [*pieces, pieces[1] + b"\xff" * 32, pieces[3] + bytes(16)]
    return Target(
        "parse_event_log",
        tuple(corpus),
        tuple(_record_fields(c) for c in corpus),
        _check_log,
        CcelFormatError,
    )


def _fix_checksum(table: bytearray) -> None:
    if len(table) > 9:
        table[9] = 0
        table[9] = -sum(table) % 256


def _check_table(data: bytes) -> None:
    table = parse_ccel_table(data)
    assert sum(data) % 256 == 0 and table.revision == 1 and len(data) == 56


def ccel_table_target(vectors: Path) -> Target:
    table = (vectors / "tdx" / "cos113_ccel_table.bin").read_bytes()
    return Target(
        "parse_ccel_table",
        (table,),
        ((4, 8, 9, 36, 37, 38, 40, 48),),
        _check_table,
        CcelFormatError,
        _fix_checksum,
    )


TARGETS: dict[str, Callable[[Path], Target]] = {
    "quote": quote_target,
    "ccel_log": ccel_log_target,
    "ccel_table": ccel_table_target,
}


@dataclass
class Outcome:
    inputs: int = 0
    accepted: int = 0
    seconds: float = 0.0
    failures: list[tuple[bytes, str]] = field(default_factory=list)  # (input, traceback)

    def report(self) -> str:
        return "\n\n".join(f"input {data.hex()}\n{tb}" for data, tb in self.failures)


def run(target: Target, inputs: int, seed: int, *, keep: int = 3) -> Outcome:
    """Feed ``inputs`` inputs; collect (up to ``keep``) escapes other than the allowed error."""
    mutate = Mutator(target, seed)
    outcome = Outcome()
    start = time.perf_counter()
    for _ in range(inputs):
        data = mutate()
        outcome.inputs += 1
        try:
            target.check(data)
        except target.allowed:
            continue
        except Exception:  # the property under test: nothing else gets out
            if len(outcome.failures) < keep:
                outcome.failures.append((data, traceback.format_exc()))
            continue
        outcome.accepted += 1
    outcome.seconds = time.perf_counter() - start
    return outcome


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_corpus_entries_parse(vectors_dir: Path, name: str) -> None:
    """The seeds are valid inputs (the extra padded quote aside), so mutations start deep."""
    target = TARGETS[name](vectors_dir)
    for data in target.corpus:
        target.check(data)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_100k_inputs_raise_nothing_but_format_errors(
    vectors_dir: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = TARGETS[name](vectors_dir)
    outcome = run(target, INPUTS, SEED)
    with capsys.disabled():
        print(
            f"\n{target.name}: {outcome.inputs} inputs in {outcome.seconds:.2f}s, "
            f"{outcome.accepted} accepted"
        )
    assert outcome.inputs >= INPUTS
    # Some mutants must survive, or the mutator only ever tests the first check.
    assert outcome.accepted > INPUTS // 1000
    assert not outcome.failures, outcome.report()
