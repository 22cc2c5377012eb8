"""GPU BLAKE3 equals the blake3 package: in-GPU buffers to 4 GiB, pieces, torch, files.

Every test here needs CuPy and a CUDA device and is skipped without them; run
them on the GPU machine: ``pip install -e '.[dev,gpu]' && pytest tests/agent/artifacts/gpu``.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

import blake3
import pytest

from attestd.agent.artifacts.gpu import (
    GpuInputError,
    GpuUnavailableError,
    canonical_header,
    cuda,
    measure_loaded_tensors,
)

try:
    cuda.describe()
    cuda.blake3(b"")  # builds the kernel
except GpuUnavailableError as exc:
    pytest.skip(f"no CUDA device/CuPy: run on the GPU machine ({exc})", allow_module_level=True)

import cupy
import numpy

GiB = 1 << 30


def _expected(data: Any) -> bytes:
    return blake3.blake3(memoryview(data), max_threads=blake3.blake3.AUTO).digest()


@pytest.fixture(scope="module")
def big() -> tuple[Any, Any]:
    """4 GiB + 1 random bytes on the device, and the same bytes on the host."""
    device = cupy.random.default_rng(1).integers(0, 256, size=4 * GiB + 1, dtype=cupy.uint8)
    return device, device.get()


def test_every_length_up_to_8_chunks(big: tuple[Any, Any]) -> None:
    device, host = big
    for length in range(0, 8193):
        assert cuda.blake3(device[:length]) == _expected(host[:length]), length


def test_lengths_around_every_power_of_two_up_to_4_gib(big: tuple[Any, Any]) -> None:
    device, host = big
    for power in range(33):
        for length in (2**power - 1, 2**power, 2**power + 1):
            got = cuda.blake3_pieces([(device, 0, length)])
            assert got == _expected(host[:length]), length


@pytest.mark.parametrize("seed", range(10))
def test_host_and_device_pieces_at_any_offset_hash_as_one_message(
    big: tuple[Any, Any], seed: int
) -> None:
    device, host = big
    rng = random.Random(seed)
    length = rng.choice([rng.randint(1, 5000), rng.randint(1, 50 << 20)])
    start = rng.randint(0, 64)
    cuts = sorted(rng.randint(start, start + length) for _ in range(rng.randint(0, 20)))
    pieces: list[cuda.Piece] = []
    for a, b in itertools.pairwise([start, *cuts, start + length]):
        on_host = rng.random() < 0.3
        pieces.append((host if on_host else device, a, b - a))
    assert cuda.blake3_pieces(pieces) == _expected(host[start : start + length])


def test_unaligned_device_buffers(big: tuple[Any, Any]) -> None:
    device, host = big
    for offset in (1, 2, 4, 8, 12, 16):
        length = 3 << 20
        got = cuda.blake3_pieces([(device, offset, length)])
        assert got == _expected(host[offset : offset + length]), offset


def test_dlpack_only_objects_are_read_in_place(big: tuple[Any, Any]) -> None:
    device, host = big

    class OnlyDlpack:
        def __init__(self, array: Any) -> None:
            self._array = array

        def __dlpack__(self, **kwargs: Any) -> Any:
            return self._array.__dlpack__(**kwargs)

        def __dlpack_device__(self) -> Any:
            return self._array.__dlpack_device__()

    assert cuda.blake3(OnlyDlpack(device[: 5 << 20])) == _expected(host[: 5 << 20])


def test_non_contiguous_arrays_are_refused(big: tuple[Any, Any]) -> None:
    device, _ = big
    with pytest.raises(GpuInputError, match="not C-contiguous"):
        cuda.blake3(device[: 1 << 20][::2])
    matrix = device[: 1 << 20].reshape(1024, 1024)
    with pytest.raises(GpuInputError, match="not C-contiguous"):
        cuda.blake3(matrix.T)
    assert cuda.blake3(cupy.ascontiguousarray(matrix.T)) == _expected(matrix.T.get().tobytes())


def test_pieces_outside_a_buffer_are_refused(big: tuple[Any, Any]) -> None:
    device, _ = big
    with pytest.raises(GpuInputError, match="outside"):
        cuda.blake3_pieces([(device[:100], 50, 51)])


def test_host_file_through_the_gpu(tmp_path: Path, big: tuple[Any, Any]) -> None:
    _, host = big
    for length in (0, 1024, 1025, (3 << 20) + 7, 40 << 20):
        path = tmp_path / f"f{length}"
        path.write_bytes(host[:length].tobytes())
        got = cuda.blake3_file(path, segment=4 << 20)
        assert got == _expected(host[:length]), length


def test_torch_tensors_and_a_state_dict() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    gen = torch.Generator(device="cuda").manual_seed(3)
    tensors = {
        "b.weight": torch.randn(1000, 333, device="cuda", generator=gen, dtype=torch.bfloat16),
        "a.bias": torch.randn(333, device="cuda", generator=gen),
        "c.idx": torch.arange(17, device="cuda", dtype=torch.int64),
    }
    for tensor in tensors.values():
        assert cuda.blake3(tensor) == _expected(tensor.view(torch.uint8).cpu().numpy())
    with pytest.raises(GpuInputError, match="not contiguous"):
        cuda.blake3(tensors["b.weight"].t())
    header = canonical_header(tensors)
    body = b"".join(
        tensors[k].contiguous().view(torch.uint8).cpu().numpy().tobytes() for k in sorted(tensors)
    )
    digest = measure_loaded_tensors(tensors, agent=None, name="test")
    assert digest == blake3.blake3(header + body).hexdigest()


def test_numpy_host_buffers_hash_through_the_gpu() -> None:
    data = numpy.arange(5000, dtype=numpy.uint16)
    assert cuda.blake3(data) == _expected(data.tobytes())
