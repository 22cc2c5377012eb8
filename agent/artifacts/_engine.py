"""Hashing bytes of an open file as fast as the hardware allows.

Small ranges are read with one ``pread``; larger ones are memory-mapped and fed
to the hasher in large slices (hashlib and blake3 release the GIL on large
updates, so other threads keep reading and hashing meanwhile). Whole files
under BLAKE3 go to blake3's own thread pool through ``update_mmap``.

A file truncated while it is mapped raises SIGBUS, which ends the process: the
price of mmap, paid by model_signing's BLAKE3 path too (see docs/hashing.md).
"""

from __future__ import annotations

import hashlib
import mmap
import os
from collections.abc import Callable
from typing import Final, Protocol

import blake3

from attestd.agent.artifacts.errors import ArtifactError

#: Ranges up to this size are read into memory, larger ones are mapped.
READ_LIMIT: Final = 1024 * 1024
#: Slice of a mapping per hasher update: large enough to keep the GIL released
#: for long, small enough for timely progress reports.
SLICE: Final = 64 * 1024 * 1024
_PROC_FD: Final = "/proc/self/fd"
_HAVE_PROC_FD = os.path.isdir(_PROC_FD)


class _Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> object: ...
    def digest(self) -> bytes: ...


def new_hasher(algorithm: str, *, threads: bool = False) -> _Hasher:
    """A fresh hasher: ``sha256``, ``blake2`` (BLAKE2b-512) or ``blake3``."""
    if algorithm == "sha256":
        return hashlib.sha256()
    if algorithm == "blake2":
        return hashlib.blake2b()
    if algorithm == "blake3":
        if threads:
            return blake3.blake3(max_threads=blake3.blake3.AUTO)
        return blake3.blake3()
    raise ValueError(f"unknown algorithm {algorithm!r}")


def hash_small(fd: int, algorithm: str, size: int, *, display: str) -> tuple[bytes, int]:
    """Digest and length of a whole small file, in as few reads as possible.

    Reads one byte more than ``size`` so one short read proves the end; a file
    that grew since ``fstat`` is read to its new end.
    """
    hasher = new_hasher(algorithm)
    total = 0
    want = size + 1
    while True:
        try:
            data = os.pread(fd, want, total)
        except OSError as exc:
            raise ArtifactError(f"'{display}' cannot be read: {exc.strerror}") from None
        hasher.update(data)
        total += len(data)
        if len(data) < want:
            return hasher.digest(), total
        want = READ_LIMIT


def hash_range(
    fd: int,
    algorithm: str,
    start: int,
    end: int,
    *,
    display: str,
    on_bytes: Callable[[int], None] | None = None,
    use_mmap: bool = True,
) -> bytes:
    """Digest of bytes ``[start, end)`` of ``fd``, which must all exist.

    Without ``use_mmap`` large ranges are read in slices into one buffer: a
    little slower, but a file truncated meanwhile is an error, not SIGBUS.
    """
    length = end - start
    if not use_mmap and length > READ_LIMIT:
        return _hash_range_read(fd, algorithm, start, end, display=display, on_bytes=on_bytes)
    if length <= READ_LIMIT:
        data = pread_exactly(fd, start, length, display=display)
        hasher = new_hasher(algorithm)
        hasher.update(data)
        if on_bytes is not None:
            on_bytes(length)
        return hasher.digest()
    offset = start - start % mmap.ALLOCATIONGRANULARITY
    try:
        mapping = mmap.mmap(fd, end - offset, access=mmap.ACCESS_READ, offset=offset)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"'{display}' cannot be mapped: {exc}") from None
    hasher = new_hasher(algorithm, threads=True)
    try:
        with memoryview(mapping) as view:
            position = start - offset
            stop = end - offset
            _advise(mapping, position, min(SLICE, stop - position))
            while position < stop:
                step = min(SLICE, stop - position)
                # Ask for the next slice while this one is hashed: on a cold
                # page cache the disk reads ahead during the hashing.
                _advise(mapping, position + step, min(SLICE, stop - position - step))
                hasher.update(view[position : position + step])
                position += step
                if on_bytes is not None:
                    on_bytes(step)
    finally:
        mapping.close()
    return hasher.digest()


def _hash_range_read(
    fd: int,
    algorithm: str,
    start: int,
    end: int,
    *,
    display: str,
    on_bytes: Callable[[int], None] | None,
) -> bytes:
    hasher = new_hasher(algorithm, threads=True)
    buffer = bytearray(min(SLICE, end - start))
    view = memoryview(buffer)
    position = start
    while position < end:
        want = min(len(buffer), end - position)
        try:
            got = os.preadv(fd, [view[:want]], position)
        except OSError as exc:
            raise ArtifactError(f"'{display}' cannot be read: {exc.strerror}") from None
        if got == 0:
            raise ArtifactError(f"'{display}' shrank while it was being measured")
        hasher.update(view[:got])
        position += got
        if on_bytes is not None:
            on_bytes(got)
    return hasher.digest()


def hash_file_blake3(fd: int, size: int, *, display: str) -> bytes:
    """BLAKE3 of a whole large file with blake3's own threads over a mapping."""
    if _HAVE_PROC_FD:
        hasher = new_hasher("blake3", threads=True)
        try:
            # The magic link reopens exactly the inode behind ``fd``, so no
            # path can be swapped in between.
            hasher.update_mmap(f"{_PROC_FD}/{fd}")  # type: ignore[attr-defined]
        except OSError as exc:
            raise ArtifactError(f"'{display}' cannot be read: {exc.strerror}") from None
        return hasher.digest()
    return hash_range(fd, "blake3", 0, size, display=display)


def _advise(mapping: mmap.mmap, start: int, length: int) -> None:
    if length > 0:
        aligned = start - start % mmap.PAGESIZE
        mapping.madvise(mmap.MADV_WILLNEED, aligned, length + start - aligned)


def pread_exactly(fd: int, start: int, length: int, *, display: str) -> bytes:
    chunks = []
    got = 0
    while got < length:
        try:
            data = os.pread(fd, length - got, start + got)
        except OSError as exc:
            raise ArtifactError(f"'{display}' cannot be read: {exc.strerror}") from None
        if not data:
            raise ArtifactError(f"'{display}' shrank while being measured")
        chunks.append(data)
        got += len(data)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
