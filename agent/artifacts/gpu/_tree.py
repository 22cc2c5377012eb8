"""The BLAKE3 tree schedule, shared by the CPU reference and the GPU driver.

BLAKE3 cuts a message into 1 KiB chunks (chunk ``i`` has counter ``i``), hashes
each chunk into an 8-word chaining value (CV), then combines CVs pairwise into
parents, level by level: at each level nodes ``2k`` and ``2k + 1`` become one
parent and an odd last node is carried up unchanged. That is exactly the
specification's left-balanced tree (a left subtree always holds a power of two
chunks). The last combination, of the final two nodes, is the root and gets
the ROOT flag; a message of one chunk (1 KiB or less, the empty one included)
is its own root.

A message may be given as several pieces (a safetensors header on the host,
then tensors on the GPU). :func:`plan` says which chunks lie wholly inside one
piece (hashed in place, a run of consecutive chunks per piece) and which
straddle pieces (gathered into a staging chunk first). Both sides follow the
same plan, so the reference tests the schedule the GPU runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

CHUNK_LEN: Final = 1024
BLOCK_LEN: Final = 64
OUT_LEN: Final = 32

CHUNK_START: Final = 1 << 0
CHUNK_END: Final = 1 << 1
PARENT: Final = 1 << 2
ROOT: Final = 1 << 3

IV: Final[tuple[int, ...]] = (
    0x6A09E667,
    0xBB67AE85,
    0x3C6EF372,
    0xA54FF53A,
    0x510E527F,
    0x9B05688C,
    0x1F83D9AB,
    0x5BE0CD19,
)

MSG_PERMUTATION: Final = (2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8)

#: Node counts at or below which the remaining levels are combined on the host:
#: a few kernel launches for a few hundred parents cost more than they save.
HOST_NODES: Final = 64


def chunk_count(length: int) -> int:
    """Chunks of a ``length``-byte message; the empty message has one (empty) chunk."""
    return max(1, -(-length // CHUNK_LEN))


def chunk_length(length: int, index: int) -> int:
    """Bytes in chunk ``index`` of a ``length``-byte message."""
    return min(CHUNK_LEN, length - index * CHUNK_LEN)


def level_sizes(chunks: int) -> list[int]:
    """Node counts of every level, from the chunks up to the two root children.

    ``[5, 3, 2]`` for 5 chunks: the root combines the 2 nodes of the last
    level. One chunk has no levels above it: ``[1]``.
    """
    sizes = [chunks]
    while sizes[-1] > 2:
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


def device_levels(chunks: int, host_nodes: int = HOST_NODES) -> int:
    """How many parent levels the GPU combines before the host takes over."""
    levels = 0
    nodes = chunks
    while nodes > host_nodes:
        nodes = (nodes + 1) // 2
        levels += 1
    return levels


@dataclass(frozen=True)
class Run:
    """Consecutive whole chunks inside one piece: ``count`` chunks from ``first_chunk``.

    They start at byte ``offset`` of piece ``piece``; the last may be the
    message's final, partial chunk.
    """

    piece: int
    offset: int
    first_chunk: int
    count: int


@dataclass(frozen=True)
class Straddle:
    """One chunk made of slices of several pieces: ``(piece, offset, length)`` each."""

    chunk: int
    slices: tuple[tuple[int, int, int], ...]


@dataclass(frozen=True)
class Plan:
    """Where every chunk of a multi-piece message comes from (runs and straddles cover all)."""

    length: int
    chunks: int
    runs: tuple[Run, ...]
    straddles: tuple[Straddle, ...]


def plan(lengths: Sequence[int]) -> Plan:
    """The chunk layout of the message that is the concatenation of pieces of ``lengths``."""
    if any(n < 0 for n in lengths):
        raise ValueError("piece lengths must not be negative")
    total = sum(lengths)
    chunks = chunk_count(total)
    runs: list[Run] = []
    straddles: list[Straddle] = []
    starts = []
    position = 0
    for n in lengths:
        starts.append(position)
        position += n
    chunk = 0
    piece = 0
    while chunk < chunks and total:
        begin = chunk * CHUNK_LEN
        end = begin + chunk_length(total, chunk)
        while starts[piece] + lengths[piece] <= begin:
            piece += 1
        piece_end = starts[piece] + lengths[piece]
        if end <= piece_end:
            # Every chunk that ends inside this piece is hashed in place.
            last = min(chunks, (piece_end - begin) // CHUNK_LEN + chunk)
            if piece_end == total:
                last = chunks
            count = max(1, last - chunk)
            runs.append(Run(piece, begin - starts[piece], chunk, count))
            chunk += count
            continue
        slices = []
        at = begin
        p = piece
        while at < end:
            take = min(end, starts[p] + lengths[p]) - at
            if take > 0:
                slices.append((p, at - starts[p], take))
                at += take
            p += 1
        straddles.append(Straddle(chunk, tuple(slices)))
        chunk += 1
    return Plan(total, chunks, tuple(runs), tuple(straddles))
