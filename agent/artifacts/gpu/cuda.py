"""BLAKE3 on an NVIDIA GPU, through CuPy, over buffers already in GPU memory.

    from attestd.agent.artifacts.gpu import cuda

    cuda.blake3(tensor)                           # a torch tensor or CuPy array, no copy
    cuda.blake3_pieces([(header, 0, len(header)), (weights, 0, weights.nbytes)])
    cuda.blake3_file("/srv/models/model.safetensors")   # streamed through pinned memory

Every digest equals ``blake3.blake3(message).digest()`` (32 bytes), where the
message is the buffer's bytes in memory order, or the pieces' byte ranges
concatenated. Device buffers are taken through ``__cuda_array_interface__``,
DLPack or a torch tensor's ``data_ptr()`` without a copy; they must be
C-contiguous (a strided view is refused with :class:`GpuInputError`, not
copied: call ``.contiguous()`` and hash the copy). Host pieces (``bytes``, any
buffer) are copied to the GPU, which is meant for a safetensors header of a
few KiB.

The schedule is ``_tree``'s: one thread per 1 KiB chunk computes its chaining
value in place (a chunk that straddles two pieces is first gathered into a
1 KiB staging slot), then one kernel launch per tree level combines parents
until at most ``HOST_NODES`` nodes remain, which the host combines into the
root with the Python reference. Without CuPy, a CUDA device or a working
driver every call raises :class:`GpuUnavailableError`; nothing falls back to
the CPU.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final

from attestd.agent.artifacts.gpu import _tree, reference
from attestd.agent.artifacts.gpu.errors import GpuInputError, GpuUnavailableError

#: A piece of a message: (buffer, byte offset, byte length).
Piece = tuple[object, int, int]

KERNEL_SOURCE: Final = Path(__file__).with_name("blake3.cu")
THREADS: Final = 128
#: Bytes per segment when streaming a host file: a multiple of the chunk size.
FILE_SEGMENT: Final = 256 * 1024 * 1024

_DLPACK_CUDA: Final = 2
_H2D: Final = 1
_D2H: Final = 2
_D2D: Final = 3
_lock = threading.Lock()


def available() -> bool:
    """Whether GPU hashing can run here (CuPy, a CUDA device, a working driver)."""
    try:
        _kernels()
    except GpuUnavailableError:
        return False
    return True


def require() -> str:
    """Check that GPU hashing can run (kernel built); returns :func:`describe`'s text.

    Raises:
        GpuUnavailableError: what is missing (CuPy, a device, the driver, the kernel).
    """
    _kernels()
    return describe()


def describe() -> str:
    """The device hashing would run on, e.g. ``'NVIDIA H100 80GB HBM3 (device 0)'``."""
    cp = _cupy()
    device = cp.cuda.Device()
    name = cp.cuda.runtime.getDeviceProperties(device.id)["name"]
    if isinstance(name, bytes):
        name = name.decode()
    return f"{name} (device {device.id})"


def blake3(buffer: object) -> bytes:
    """BLAKE3 of one whole buffer (device or host)."""
    return blake3_pieces([(buffer, 0, -1)])


def blake3_pieces(pieces: Sequence[Piece]) -> bytes:
    """BLAKE3 of the concatenated byte ranges; a length of -1 means "to the end"."""
    kernels = _kernels()
    cp = kernels.cupy
    buffers = [_buffer(cp, obj, offset, length) for obj, offset, length in pieces]
    # Producers (torch, other streams) must be done writing before we read.
    cp.cuda.Device().synchronize()
    layout = _tree.plan([b.length for b in buffers])
    if layout.chunks == 1:
        whole = b"".join(_fetch(cp, b, 0, b.length) for b in buffers)
        return reference.root_bytes(reference.chunk_output(whole, 0, root=True))
    keep: list[Any] = []  # device copies of host ranges, alive until the result is back

    def place(run: _tree.Run) -> int:
        piece = buffers[run.piece]
        end = min(piece.length, run.offset + run.count * _tree.CHUNK_LEN)
        return _device_range(cp, piece, run.offset, end - run.offset, keep)

    staging = cp.empty(max(1, len(layout.straddles)) * _tree.CHUNK_LEN, dtype=cp.uint8)
    keep.append(staging)
    for slot, straddle in enumerate(layout.straddles):
        at = staging.data.ptr + slot * _tree.CHUNK_LEN
        for index, offset, length in straddle.slices:
            _copy_into(cp, at, buffers[index], offset, length)
            at += length
    rows = run_rows(layout, place, int(staging.data.ptr))
    runs = cp.asarray(_numpy().array(rows, dtype=_numpy().uint64).reshape(-1))
    cvs = cp.empty(layout.chunks * 8, dtype=cp.uint32)
    np = _numpy()
    kernels.chunk_cvs(
        (_blocks(layout.chunks),),
        (THREADS,),
        (runs, np.uint32(len(rows)), np.uint64(layout.length), np.uint64(layout.chunks), cvs),
    )
    # _finish copies the result back, so the kernels are done with `keep` and `buffers`.
    return _finish(kernels, cvs, layout.chunks)


def run_rows(
    layout: _tree.Plan, place: Callable[[_tree.Run], int], staging: int
) -> list[tuple[int, int, int, int]]:
    """The kernel's run table: ``(pointer, first_chunk, count, alignment)`` by first chunk.

    ``place`` gives the device address of a run's first byte; straddling chunk
    ``k`` (in plan order) has been gathered at ``staging + k * 1024``.
    """
    rows = []
    for run in layout.runs:
        pointer = place(run)
        rows.append((pointer, run.first_chunk, run.count, _alignment(pointer)))
    for slot, straddle in enumerate(layout.straddles):
        pointer = staging + slot * _tree.CHUNK_LEN
        rows.append((pointer, straddle.chunk, 1, _alignment(pointer)))
    rows.sort(key=lambda row: row[1])
    return rows


def blake3_file(path: str | os.PathLike[str], *, segment: int = FILE_SEGMENT) -> bytes:
    """BLAKE3 of a host file, read into pinned memory and copied while the GPU hashes.

    Two pinned segments alternate: while the GPU copies and hashes one, the
    host reads the next. A file that shrinks while being read is an error.
    """
    if segment <= 0 or segment % _tree.CHUNK_LEN:
        raise GpuInputError(f"segment must be a positive multiple of 1024, not {segment}")
    kernels = _kernels()
    cp = kernels.cupy
    np = _numpy()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        chunks = _tree.chunk_count(size)
        if chunks == 1:
            data = os.pread(fd, _tree.CHUNK_LEN + 1, 0)
            if len(data) != size:
                raise GpuInputError(f"'{path}' changed size while being measured")
            return reference.root_bytes(reference.chunk_output(data, 0, root=True))
        segment = min(segment, chunks * _tree.CHUNK_LEN)
        cvs = cp.empty(chunks * 8, dtype=cp.uint32)
        copy_stream = cp.cuda.Stream(non_blocking=True)
        hash_stream = cp.cuda.Stream(non_blocking=True)
        slots = []
        for _ in range(2):
            pinned = cp.cuda.alloc_pinned_memory(segment)
            host = memoryview(np.frombuffer(pinned, dtype=np.uint8, count=segment))
            slots.append((pinned, host, cp.empty(segment, dtype=cp.uint8), cp.cuda.Event()))
        for index, start in enumerate(range(0, size, segment)):
            pinned, host, device, hashed = slots[index % 2]
            hashed.synchronize()  # the GPU is done with this slot's copy and kernel
            length = min(segment, size - start)
            _read_exactly(fd, host[:length], start, path)
            cp.cuda.runtime.memcpyAsync(device.data.ptr, pinned.ptr, length, _H2D, copy_stream.ptr)
            copied = cp.cuda.Event()
            copied.record(copy_stream)
            hash_stream.wait_event(copied)
            count = -(-length // _tree.CHUNK_LEN)
            with hash_stream:
                kernels.segment_cvs(
                    (_blocks(count),),
                    (THREADS,),
                    (
                        device,
                        np.uint64(start // _tree.CHUNK_LEN),
                        np.uint64(count),
                        np.uint64(size),
                        cvs,
                    ),
                )
            hashed.record(hash_stream)
        with hash_stream:
            digest = _finish(kernels, cvs, chunks)
        hash_stream.synchronize()
        if os.fstat(fd).st_size != size:
            raise GpuInputError(f"'{path}' changed size while being measured")
        return digest
    finally:
        os.close(fd)


# -- the device ------------------------------------------------------------------


@dataclass(frozen=True)
class _Kernels:
    cupy: Any
    chunk_cvs: Any
    segment_cvs: Any
    parents: Any


def _cupy() -> Any:
    try:
        cp: ModuleType = importlib.import_module("cupy")
    except ImportError as exc:
        raise GpuUnavailableError(
            "cupy",
            f"CuPy is not installed ({exc}); install attestd[gpu] (cupy-cuda12x) "
            "on a machine with an NVIDIA GPU",
        ) from None
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError: no driver, or a driver too old
        raise GpuUnavailableError(
            "driver", f"the CUDA driver cannot be used ({exc}); is the NVIDIA driver loaded?"
        ) from None
    if count == 0:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        hint = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
        raise GpuUnavailableError("device", f"no CUDA device is visible{hint}")
    return cp


def _kernels() -> _Kernels:
    cp = _cupy()
    with _lock:
        return _compiled(cp, cp.cuda.Device().id)


@functools.cache
def _compiled(cp: Any, device: int) -> _Kernels:
    try:
        module = cp.RawModule(code=KERNEL_SOURCE.read_text(), options=("-std=c++17",))
        return _Kernels(
            cp,
            module.get_function("b3_chunk_cvs"),
            module.get_function("b3_segment_cvs"),
            module.get_function("b3_parents"),
        )
    except Exception as exc:  # NVRTC or driver error: no usable kernel
        raise GpuUnavailableError(
            "kernel", f"the BLAKE3 kernel cannot be built on device {device}: {exc}"
        ) from None


def _numpy() -> Any:
    return importlib.import_module("numpy")  # a dependency of CuPy


def _blocks(count: int) -> int:
    return -(-count // THREADS)


def _finish(kernels: _Kernels, cvs: Any, nodes: int) -> bytes:
    """Combine the tree's lower levels on the GPU and the last few on the host."""
    cp = kernels.cupy
    np = _numpy()
    for _ in range(_tree.device_levels(nodes)):
        above = (nodes + 1) // 2
        out = cp.empty(above * 8, dtype=cp.uint32)
        kernels.parents((_blocks(above),), (THREADS,), (cvs, np.uint64(nodes), out))
        cvs, nodes = out, above
    raw = cvs.get().astype("<u4").tobytes()
    return reference.combine([reference.cv_words(raw[i * 32 : i * 32 + 32]) for i in range(nodes)])


# -- buffers ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Buffer:
    """A byte range of a buffer: on the device (``device``) or in host memory."""

    owner: object
    pointer: int
    length: int
    device: bool


def _buffer(cp: Any, obj: object, offset: int, length: int) -> _Buffer:
    pointer, size, on_device, owner = _address(cp, obj)
    if length == -1:
        length = size - offset
    if offset < 0 or length < 0 or offset + length > size:
        raise GpuInputError(
            f"piece [{offset}, {offset + length}) lies outside a buffer of {size} bytes"
        )
    return _Buffer(owner, pointer + offset, length, on_device)


def _address(cp: Any, obj: object) -> tuple[int, int, bool, object]:
    """(pointer, byte size, on the device, object to keep alive) of a contiguous buffer."""
    kind = type(obj).__name__
    if hasattr(obj, "data_ptr") and hasattr(obj, "element_size"):  # a torch tensor
        tensor: Any = obj
        if not tensor.is_contiguous():
            raise GpuInputError(f"a {kind} that is not contiguous; hash tensor.contiguous()")
        size = tensor.numel() * tensor.element_size()
        if tensor.is_cuda:
            _check_device(cp, tensor.device.index, kind)
        return tensor.data_ptr(), size, bool(tensor.is_cuda), tensor
    interface = getattr(obj, "__cuda_array_interface__", None)
    if isinstance(interface, dict):
        return _from_interface(cp, obj, interface)
    dlpack_device = getattr(obj, "__dlpack_device__", None)
    if dlpack_device is not None and dlpack_device()[0] == _DLPACK_CUDA:
        array = cp.from_dlpack(obj)
        if not array.flags.c_contiguous:
            raise GpuInputError(f"a {kind} that is not C-contiguous; make it contiguous first")
        _check_device(cp, array.device.id, kind)
        return int(array.data.ptr), int(array.nbytes), True, array
    try:
        view = memoryview(obj)  # type: ignore[arg-type]
    except TypeError:
        raise GpuInputError(
            f"cannot hash a {kind}: not a CUDA array (DLPack or __cuda_array_interface__), "
            "a torch tensor or a host buffer"
        ) from None
    if not view.c_contiguous:
        raise GpuInputError(f"a {kind} that is not C-contiguous; make it contiguous first")
    view = view.cast("B")
    if not view.nbytes:
        return 0, 0, False, view
    return _host_pointer(view), view.nbytes, False, view


def _from_interface(
    cp: Any, obj: object, interface: dict[str, Any]
) -> tuple[int, int, bool, object]:
    pointer = int(interface["data"][0])
    shape = tuple(int(n) for n in interface["shape"])
    itemsize = int(interface["typestr"][2:])
    strides = interface.get("strides")
    count = 1
    for n in shape:
        count *= n
    if strides is not None and count > 1:
        expected = []
        step = itemsize
        for n in reversed(shape):
            expected.append(step)
            step *= n
        if tuple(strides) != tuple(reversed(expected)) and not _trivial(shape, strides, expected):
            raise GpuInputError(
                f"a {type(obj).__name__} that is not C-contiguous; make it contiguous first"
            )
    if count and pointer:
        attributes = cp.cuda.runtime.pointerGetAttributes(pointer)
        _check_device(cp, attributes.device, type(obj).__name__)
    return pointer, count * itemsize, True, obj


def _trivial(shape: tuple[int, ...], strides: Sequence[int], expected: list[int]) -> bool:
    """Strides differ only along dimensions of size 1, which never step."""
    wanted = tuple(reversed(expected))
    return all(n == 1 or s == w for n, s, w in zip(shape, strides, wanted, strict=True))


def _check_device(cp: Any, index: int | None, kind: str) -> None:
    current = cp.cuda.Device().id
    if index is not None and index != current:
        raise GpuInputError(
            f"a {kind} on CUDA device {index}, but hashing runs on device {current}; "
            f"use `with cupy.cuda.Device({index}):`"
        )


def _host_pointer(view: memoryview) -> int:
    """The address of a host buffer (read-only ones included) without copying it."""
    np = _numpy()
    array = np.frombuffer(view, dtype=np.uint8)
    return int(array.ctypes.data)


def _fetch(cp: Any, buffer: _Buffer, offset: int, length: int) -> bytes:
    """A few bytes of a buffer, on the host."""
    if not length:
        return b""
    if not buffer.device:
        return ctypes.string_at(buffer.pointer + offset, length)
    out = ctypes.create_string_buffer(length)
    cp.cuda.runtime.memcpy(ctypes.addressof(out), buffer.pointer + offset, length, _D2H)
    return out.raw


def _device_range(cp: Any, buffer: _Buffer, offset: int, length: int, keep: list[Any]) -> int:
    """A device pointer to ``length`` bytes of ``buffer``: in place, or a copy of host bytes."""
    if buffer.device:
        return buffer.pointer + offset
    copy = cp.empty(length, dtype=cp.uint8)
    cp.cuda.runtime.memcpy(copy.data.ptr, buffer.pointer + offset, length, _H2D)
    keep.append(copy)
    return int(copy.data.ptr)


def _copy_into(cp: Any, target: int, buffer: _Buffer, offset: int, length: int) -> None:
    kind = _D2D if buffer.device else _H2D
    cp.cuda.runtime.memcpy(target, buffer.pointer + offset, length, kind)


def _alignment(pointer: int) -> int:
    return 16 if pointer % 16 == 0 else 4 if pointer % 4 == 0 else 1


def _read_exactly(fd: int, view: memoryview, offset: int, path: object) -> None:
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if got == 0:
            raise GpuInputError(f"'{path}' shrank while being measured")
        done += got
