"""BLAKE3 in plain Python, following the GPU's schedule: the CPU reference.

    from attestd.agent.artifacts.gpu import reference

    reference.digest(b"abc")                            # == blake3.blake3(b"abc").digest()
    reference.digest_pieces([(header, 0, len(header)), (body, 0, len(body))])

It is slow (pure Python, tens of microseconds per 64-byte block) and exists to
prove the schedule in ``_tree`` (chunks, runs, straddling chunks, level-by-level
parents, root) equal to the ``blake3`` package, and to finish the last levels
of the GPU's tree on the host. ``chunk_cache`` remembers chunk CVs by
(counter, bytes), so tests over many prefixes of one buffer hash each full
chunk once.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

from attestd.agent.artifacts.gpu._tree import (
    BLOCK_LEN,
    CHUNK_END,
    CHUNK_LEN,
    CHUNK_START,
    IV,
    MSG_PERMUTATION,
    PARENT,
    ROOT,
    chunk_length,
    plan,
)

Words = tuple[int, ...]
Piece = tuple[bytes | bytearray | memoryview, int, int]

_MASK: Final = 0xFFFFFFFF
_BLOCK_WORDS: Final = struct.Struct("<16I")
_CV_WORDS: Final = struct.Struct("<8I")


def _schedules() -> tuple[tuple[int, ...], ...]:
    order = tuple(range(16))
    rounds = []
    for _ in range(7):
        rounds.append(order)
        order = tuple(order[i] for i in MSG_PERMUTATION)
    return tuple(rounds)


_SCHEDULES: Final = _schedules()


def compress(cv: Words, block: Words, counter: int, block_len: int, flags: int) -> Words:
    """The BLAKE3 compression function: all 16 output words (the CV is the first 8)."""
    M = _MASK  # the G function unrolled with local names, for speed
    s0, s1, s2, s3, s4, s5, s6, s7 = cv
    s8, s9, s10, s11 = IV[0], IV[1], IV[2], IV[3]
    s12, s13, s14, s15 = counter & M, (counter >> 32) & M, block_len, flags
    for order in _SCHEDULES:
        m = [block[i] for i in order]
        s0 = (s0 + s4 + m[0]) & M
        s12 ^= s0
        s12 = (s12 >> 16) | (s12 << 16) & M
        s8 = (s8 + s12) & M
        s4 ^= s8
        s4 = (s4 >> 12) | (s4 << 20) & M
        s0 = (s0 + s4 + m[1]) & M
        s12 ^= s0
        s12 = (s12 >> 8) | (s12 << 24) & M
        s8 = (s8 + s12) & M
        s4 ^= s8
        s4 = (s4 >> 7) | (s4 << 25) & M
        s1 = (s1 + s5 + m[2]) & M
        s13 ^= s1
        s13 = (s13 >> 16) | (s13 << 16) & M
        s9 = (s9 + s13) & M
        s5 ^= s9
        s5 = (s5 >> 12) | (s5 << 20) & M
        s1 = (s1 + s5 + m[3]) & M
        s13 ^= s1
        s13 = (s13 >> 8) | (s13 << 24) & M
        s9 = (s9 + s13) & M
        s5 ^= s9
        s5 = (s5 >> 7) | (s5 << 25) & M
        s2 = (s2 + s6 + m[4]) & M
        s14 ^= s2
        s14 = (s14 >> 16) | (s14 << 16) & M
        s10 = (s10 + s14) & M
        s6 ^= s10
        s6 = (s6 >> 12) | (s6 << 20) & M
        s2 = (s2 + s6 + m[5]) & M
        s14 ^= s2
        s14 = (s14 >> 8) | (s14 << 24) & M
        s10 = (s10 + s14) & M
        s6 ^= s10
        s6 = (s6 >> 7) | (s6 << 25) & M
        s3 = (s3 + s7 + m[6]) & M
        s15 ^= s3
        s15 = (s15 >> 16) | (s15 << 16) & M
        s11 = (s11 + s15) & M
        s7 ^= s11
        s7 = (s7 >> 12) | (s7 << 20) & M
        s3 = (s3 + s7 + m[7]) & M
        s15 ^= s3
        s15 = (s15 >> 8) | (s15 << 24) & M
        s11 = (s11 + s15) & M
        s7 ^= s11
        s7 = (s7 >> 7) | (s7 << 25) & M
        s0 = (s0 + s5 + m[8]) & M
        s15 ^= s0
        s15 = (s15 >> 16) | (s15 << 16) & M
        s10 = (s10 + s15) & M
        s5 ^= s10
        s5 = (s5 >> 12) | (s5 << 20) & M
        s0 = (s0 + s5 + m[9]) & M
        s15 ^= s0
        s15 = (s15 >> 8) | (s15 << 24) & M
        s10 = (s10 + s15) & M
        s5 ^= s10
        s5 = (s5 >> 7) | (s5 << 25) & M
        s1 = (s1 + s6 + m[10]) & M
        s12 ^= s1
        s12 = (s12 >> 16) | (s12 << 16) & M
        s11 = (s11 + s12) & M
        s6 ^= s11
        s6 = (s6 >> 12) | (s6 << 20) & M
        s1 = (s1 + s6 + m[11]) & M
        s12 ^= s1
        s12 = (s12 >> 8) | (s12 << 24) & M
        s11 = (s11 + s12) & M
        s6 ^= s11
        s6 = (s6 >> 7) | (s6 << 25) & M
        s2 = (s2 + s7 + m[12]) & M
        s13 ^= s2
        s13 = (s13 >> 16) | (s13 << 16) & M
        s8 = (s8 + s13) & M
        s7 ^= s8
        s7 = (s7 >> 12) | (s7 << 20) & M
        s2 = (s2 + s7 + m[13]) & M
        s13 ^= s2
        s13 = (s13 >> 8) | (s13 << 24) & M
        s8 = (s8 + s13) & M
        s7 ^= s8
        s7 = (s7 >> 7) | (s7 << 25) & M
        s3 = (s3 + s4 + m[14]) & M
        s14 ^= s3
        s14 = (s14 >> 16) | (s14 << 16) & M
        s9 = (s9 + s14) & M
        s4 ^= s9
        s4 = (s4 >> 12) | (s4 << 20) & M
        s3 = (s3 + s4 + m[15]) & M
        s14 ^= s3
        s14 = (s14 >> 8) | (s14 << 24) & M
        s9 = (s9 + s14) & M
        s4 ^= s9
        s4 = (s4 >> 7) | (s4 << 25) & M
    return (
        s0 ^ s8,
        s1 ^ s9,
        s2 ^ s10,
        s3 ^ s11,
        s4 ^ s12,
        s5 ^ s13,
        s6 ^ s14,
        s7 ^ s15,
        s8 ^ cv[0],
        s9 ^ cv[1],
        s10 ^ cv[2],
        s11 ^ cv[3],
        s12 ^ cv[4],
        s13 ^ cv[5],
        s14 ^ cv[6],
        s15 ^ cv[7],
    )


def _block_words(data: bytes, start: int) -> tuple[Words, int]:
    block = data[start : start + BLOCK_LEN]
    return _BLOCK_WORDS.unpack(block.ljust(BLOCK_LEN, b"\0")), len(block)


def chunk_output(chunk: bytes, counter: int, *, root: bool = False) -> Words:
    """The last compression of ``chunk`` (at most 1 KiB); its first 8 words are the CV."""
    cv: Words = IV
    blocks = max(1, -(-len(chunk) // BLOCK_LEN))
    out: Words = IV
    for index in range(blocks):
        words, block_len = _block_words(chunk, index * BLOCK_LEN)
        flags = CHUNK_START if index == 0 else 0
        if index == blocks - 1:
            flags |= CHUNK_END | (ROOT if root else 0)
        out = compress(cv, words, 0 if root else counter, block_len, flags)
        cv = out[:8]
    return out


def chunk_cv(chunk: bytes, counter: int) -> Words:
    """The chaining value of a non-root chunk."""
    return chunk_output(chunk, counter)[:8]


def parent(left: Words, right: Words, *, root: bool = False) -> Words:
    """The output of a parent node (CV: the first 8 words)."""
    return compress(IV, left + right, 0, BLOCK_LEN, PARENT | (ROOT if root else 0))


def combine(cvs: Sequence[Words]) -> bytes:
    """The root digest over two or more chunk (or subtree) CVs, level by level.

    Each level pairs nodes ``2k`` and ``2k + 1`` and carries an odd last node
    up; the final pair is the root. This is how the GPU combines too, and how
    the driver finishes a tree whose lower levels the GPU combined.
    """
    level = list(cvs)
    if len(level) < 2:
        raise ValueError("a tree needs at least two nodes to combine")
    while len(level) > 2:
        above = [parent(level[i], level[i + 1])[:8] for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            above.append(level[-1])
        level = above
    return root_bytes(parent(level[0], level[1], root=True))


def root_bytes(out: Words) -> bytes:
    """The 32-byte digest from a root compression's output."""
    return _CV_WORDS.pack(*out[:8])


def cv_words(raw: bytes) -> Words:
    """A CV from its 32 little-endian bytes (how the GPU stores CVs)."""
    return _CV_WORDS.unpack(raw)


def digest(
    data: bytes | bytearray | memoryview, *, chunk_cache: dict[object, Words] | None = None
) -> bytes:
    """BLAKE3 (32 bytes) of ``data``."""
    view = bytes(data)
    return digest_pieces([(view, 0, len(view))], chunk_cache=chunk_cache)


def digest_pieces(
    pieces: Sequence[Piece], *, chunk_cache: dict[object, Words] | None = None
) -> bytes:
    """BLAKE3 of the concatenation of ``(buffer, offset, length)`` pieces, by the GPU's plan."""
    layout = plan([length for _, _, length in pieces])
    if layout.chunks == 1:
        whole = b"".join(bytes(buf[off : off + n]) for buf, off, n in pieces)
        return root_bytes(chunk_output(whole, 0, root=True))
    cvs: list[Words | None] = [None] * layout.chunks
    for run in layout.runs:
        buf, off, _ = pieces[run.piece]
        for k in range(run.count):
            index = run.first_chunk + k
            start = off + run.offset + k * CHUNK_LEN
            data = bytes(buf[start : start + chunk_length(layout.length, index)])
            cvs[index] = _cached_chunk_cv(data, index, chunk_cache)
    for straddle in layout.straddles:
        data = b"".join(
            bytes(pieces[p][0][pieces[p][1] + o : pieces[p][1] + o + n])
            for p, o, n in straddle.slices
        )
        cvs[straddle.chunk] = _cached_chunk_cv(data, straddle.chunk, chunk_cache)
    assert all(cv is not None for cv in cvs), "the plan must cover every chunk"
    return combine([cv for cv in cvs if cv is not None])


def _cached_chunk_cv(data: bytes, counter: int, cache: dict[object, Words] | None) -> Words:
    if cache is None or len(data) < CHUNK_LEN:
        return chunk_cv(data, counter)
    key = (counter, data)
    found = cache.get(key)
    if found is None:
        found = cache[key] = chunk_cv(data, counter)
    return found
