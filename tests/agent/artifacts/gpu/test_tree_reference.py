"""The pure-Python reference of the GPU's tree schedule equals the blake3 package."""

from __future__ import annotations

import itertools
import random

import blake3
import pytest

from attestd.agent.artifacts.gpu import _tree, reference

_RNG = random.Random(20260)
_DATA = _RNG.randbytes((1 << 22) + 1024)


def _expected(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


def test_every_length_up_to_8_chunks_equals_blake3() -> None:
    cache: dict[object, reference.Words] = {}
    for length in range(0, 8193):
        data = _DATA[:length]
        assert reference.digest(data, chunk_cache=cache) == _expected(data), length


def test_lengths_around_every_power_of_two_up_to_4_mib_equal_blake3() -> None:
    cache: dict[object, reference.Words] = {}
    for power in range(23):
        for length in (2**power - 1, 2**power, 2**power + 1):
            data = _DATA[:length]
            assert reference.digest(data, chunk_cache=cache) == _expected(data), length


def _split(rng: random.Random, data: bytes, count: int) -> list[tuple[bytes, int, int]]:
    """``data`` cut into ``count`` pieces, each inside a larger buffer at a random offset."""
    cuts = sorted(rng.randint(0, len(data)) for _ in range(count - 1))
    pieces = []
    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        before = rng.randbytes(rng.randint(0, 70))
        buffer = before + data[start:end] + rng.randbytes(rng.randint(0, 70))
        pieces.append((buffer, len(before), end - start))
    return pieces


@pytest.mark.parametrize("seed", range(12))
def test_random_pieces_hash_as_one_message(seed: int) -> None:
    rng = random.Random(seed)
    cache: dict[object, reference.Words] = {}
    for _ in range(10):
        data = _DATA[: rng.choice([rng.randint(0, 3000), rng.randint(0, 40_000)])]
        pieces = _split(rng, data, rng.randint(1, 9))
        assert reference.digest_pieces(pieces, chunk_cache=cache) == _expected(data)


def test_pieces_cut_exactly_on_chunk_boundaries_and_empty_pieces() -> None:
    data = _DATA[: 5 * 1024 + 17]
    cuts = [0, 0, 1024, 1024, 3072, 5120, 5120, len(data)]
    pieces = [(data, a, b - a) for a, b in itertools.pairwise(cuts)]
    assert reference.digest_pieces(pieces) == _expected(data)
    assert not _tree.plan([b - a for a, b in itertools.pairwise(cuts)]).straddles


@pytest.mark.parametrize("seed", range(50))
def test_plan_covers_every_chunk_exactly_once(seed: int) -> None:
    rng = random.Random(seed)
    lengths = [rng.choice([0, rng.randint(1, 100), rng.randint(1, 5000)]) for _ in range(8)]
    layout = _tree.plan(lengths)
    covered = [c for r in layout.runs for c in range(r.first_chunk, r.first_chunk + r.count)]
    covered += [s.chunk for s in layout.straddles]
    if sum(lengths):
        assert sorted(covered) == list(range(layout.chunks))
    for straddle in layout.straddles:
        assert len(straddle.slices) >= 2
        size = sum(n for _, _, n in straddle.slices)
        assert size == _tree.chunk_length(layout.length, straddle.chunk)


def test_level_schedule_is_the_left_balanced_tree() -> None:
    assert _tree.level_sizes(1) == [1]
    assert _tree.level_sizes(5) == [5, 3, 2]
    assert _tree.level_sizes(8) == [8, 4, 2]
    assert _tree.device_levels(64) == 0
    assert _tree.device_levels(65) == 1
    assert _tree.device_levels(4 * 1024 * 1024) == 16
