"""blake3.cu itself, without a GPU: built as C++ for the CPU, and to PTX by nvcc.

Compiled without ``__CUDACC__`` the kernels' per-node functions run on the
CPU through ``b3_chunk_cvs_host`` / ``b3_parents_host``; the driver's run table
(``cuda.run_rows``), staging of straddling chunks and device/host level split
are replayed around them, so the GPU's arithmetic and indexing are checked
against ``blake3`` here. Only the CuPy calls and the launch geometry are left
for the GPU machine (tests/agent/artifacts/gpu/test_gpu.py).
"""

from __future__ import annotations

import ctypes
import itertools
import random
import shutil
import subprocess
from pathlib import Path

import blake3
import pytest

from attestd.agent.artifacts.gpu import _tree, cuda, reference

_U64P = ctypes.POINTER(ctypes.c_uint64)
_U32P = ctypes.POINTER(ctypes.c_uint32)


@pytest.fixture(scope="module")
def kernels(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler: cannot build blake3.cu for the CPU")
    library = tmp_path_factory.mktemp("blake3cu") / "blake3cu.so"
    subprocess.run(
        [
            compiler,
            "-x",
            "c++",
            "-O2",
            "-shared",
            "-fPIC",
            "-Wall",
            "-Werror",
            "-o",
            str(library),
            str(cuda.KERNEL_SOURCE),
        ],
        check=True,
        timeout=60,
    )
    lib = ctypes.CDLL(str(library))
    lib.b3_chunk_cvs_host.argtypes = [
        _U64P,
        ctypes.c_uint32,
        ctypes.c_uint64,
        ctypes.c_uint64,
        _U32P,
    ]
    lib.b3_parents_host.argtypes = [_U32P, ctypes.c_uint64, _U32P]
    return lib


def _emulated(lib: ctypes.CDLL, pieces: list[tuple[bytes, int, int]]) -> bytes:
    """cuda.blake3_pieces with host memory standing in for the device."""
    layout = _tree.plan([n for _, _, n in pieces])
    if layout.chunks == 1:
        return reference.digest_pieces(pieces)
    # Buffers placed at odd addresses too, so every alignment path runs.
    holders = [ctypes.create_string_buffer(len(buf) + 16) for buf, _, _ in pieces]
    shifts = [random.Random(i).randint(0, 15) for i in range(len(pieces))]
    for holder, shift, (buf, _, _) in zip(holders, shifts, pieces, strict=True):
        ctypes.memmove(ctypes.addressof(holder) + shift, buf, len(buf))
    staging = ctypes.create_string_buffer(max(1, len(layout.straddles)) * 1024 + 16)
    staging_at = ctypes.addressof(staging) + (-ctypes.addressof(staging) % 16)
    for slot, straddle in enumerate(layout.straddles):
        data = b"".join(
            pieces[p][0][pieces[p][1] + o : pieces[p][1] + o + n] for p, o, n in straddle.slices
        )
        ctypes.memmove(staging_at + slot * 1024, data, len(data))

    def place(run: _tree.Run) -> int:
        index = run.piece
        return ctypes.addressof(holders[index]) + shifts[index] + pieces[index][1] + run.offset

    rows = cuda.run_rows(layout, place, staging_at)
    table = (ctypes.c_uint64 * (4 * len(rows)))(*[v for row in rows for v in row])
    cvs = (ctypes.c_uint32 * (8 * layout.chunks))()
    lib.b3_chunk_cvs_host(table, len(rows), layout.length, layout.chunks, cvs)
    nodes = layout.chunks
    for _ in range(_tree.device_levels(nodes, host_nodes=2)):
        above = (ctypes.c_uint32 * (8 * ((nodes + 1) // 2)))()
        lib.b3_parents_host(cvs, nodes, above)
        cvs, nodes = above, (nodes + 1) // 2
    raw = bytes(cvs)
    return reference.combine([reference.cv_words(raw[i * 32 : i * 32 + 32]) for i in range(nodes)])


_DATA = random.Random(7).randbytes((1 << 20) + 4096)


def test_kernel_source_equals_blake3_around_every_power_of_two(kernels: ctypes.CDLL) -> None:
    for power in range(21):
        for length in (2**power - 1, 2**power, 2**power + 1):
            data = _DATA[:length]
            got = _emulated(kernels, [(data, 0, length)])
            assert got == blake3.blake3(data).digest(), length


def test_kernel_source_equals_blake3_for_every_length_up_to_3_chunks(kernels: ctypes.CDLL) -> None:
    for length in range(0, 3 * 1024 + 2):
        data = _DATA[:length]
        assert _emulated(kernels, [(data, 0, length)]) == blake3.blake3(data).digest(), length


@pytest.mark.parametrize("seed", range(20))
def test_kernel_source_hashes_pieces_as_one_message(kernels: ctypes.CDLL, seed: int) -> None:
    rng = random.Random(seed)
    data = _DATA[: rng.randint(1, 300_000)]
    cuts = sorted(rng.randint(0, len(data)) for _ in range(rng.randint(0, 12)))
    bounds = [0, *cuts, len(data)]
    pieces = []
    for start, end in itertools.pairwise(bounds):
        pad = rng.randint(0, 9)
        pieces.append((b"\xaa" * pad + data[start:end], pad, end - start))
    assert _emulated(kernels, pieces) == blake3.blake3(data).digest()


def test_kernel_compiles_to_ptx_with_nvcc(tmp_path: Path) -> None:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found: the CUDA toolkit is not installed here")
    out = tmp_path / "blake3.ptx"
    subprocess.run(
        [nvcc, "--ptx", "-arch=sm_90", "-std=c++17", "-o", str(out), str(cuda.KERNEL_SOURCE)],
        check=True,
        timeout=60,
    )
    ptx = out.read_text()
    for name in ("b3_chunk_cvs", "b3_segment_cvs", "b3_parents"):
        assert f".entry {name}(" in ptx
