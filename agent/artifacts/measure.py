"""Digests of files and directories, the directory one as model_signing signs it.

    m = measure(Path("/srv/models/llama-3-8b"))
    m.kind, m.digest["sha256"], m.file_count, m.size_bytes
    [(f.path, f.sha256, f.size_bytes) for f in m.files]  # the per-file manifest

A regular file's digest is the SHA-256 of its bytes (what ``sha256sum``
prints). A directory's digest is the subject digest that the OpenSSF model
signing library (``model_signing`` 1.1.1, default configuration: SHA-256, one
manifest entry per file, symbolic links refused, git paths ignored) puts in its
signature payload for the same directory; see :func:`manifest_digest`.

Inside a directory every entry is opened relative to its parent's descriptor,
each component with ``O_NOFOLLOW``, and checked with ``fstat``; so an entry
swapped for a symbolic link between listing and hashing is refused, not
followed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from attestd.agent.artifacts.errors import (
    ArtifactError,
    ArtifactNotFoundError,
    UnsupportedArtifactError,
)

# Top-level entries model_signing ignores by default (hashing.Config: ".git/",
# ".gitattributes", ".github/", ".gitignore"), whatever their type. Only at the
# top: a nested "sub/.git" is hashed, as model_signing does.
IGNORED_NAMES: Final = frozenset({".git", ".gitattributes", ".github", ".gitignore"})

CHUNK_SIZE: Final = 8 * 1024 * 1024
_MIN_BUFFER: Final = 64 * 1024
_DEFAULT_MAX_WORKERS: Final = 16

# O_NONBLOCK: opening a FIFO that replaced a file must not hang the agent.
_OPEN_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_OPEN_DIR_FLAGS: Final = _OPEN_FLAGS | os.O_DIRECTORY


@dataclass(frozen=True)
class FileDigest:
    """One manifest entry: a regular file of a measured artifact."""

    path: str
    """POSIX path relative to the measured directory (the file's name for a file)."""
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class Measurement:
    """What :func:`measure` found.

    ``files`` is the per-file manifest, in model_signing's order (by path
    components); for a file it has one entry named after the file.
    """

    name: str
    kind: Literal["file", "directory"]
    digest: Mapping[str, str]
    size_bytes: int
    file_count: int
    files: tuple[FileDigest, ...] = field(default=(), repr=False)


def manifest_digest(files: Iterable[FileDigest]) -> str:
    """model_signing's subject digest of a directory whose files are ``files``.

    SHA-256 over the concatenated raw 32-byte SHA-256 digests of the files,
    ordered by relative path compared component by component (how
    ``pathlib.PurePosixPath`` orders, so ``a/b`` sorts before ``a.b``). Names
    and sizes are not part of it. No files gives SHA-256 of the empty string.
    """
    hasher = hashlib.sha256()
    for entry in sorted(files, key=_order):
        hasher.update(bytes.fromhex(entry.sha256))
    return hasher.hexdigest()


def measure(path: Path, *, max_workers: int | None = None) -> Measurement:
    """Measure a regular file or a directory of regular files.

    ``path`` should come from :meth:`ArtifactRoots.resolve`; ``name`` in the
    result is the real path of what was opened, read back from its descriptor.
    Files of a directory are hashed in a pool of ``max_workers`` threads.

    Raises:
        ArtifactNotFoundError: ``path`` does not exist.
        UnsupportedArtifactError: ``path`` is a symbolic link or special file,
            or the directory holds one outside the ignored git paths.
        ArtifactError: anything else unreadable.
    """
    path = Path(path)
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise ArtifactNotFoundError(f"'{path}' does not exist") from None
    except OSError as exc:
        raise ArtifactError(f"'{path}' cannot be examined: {exc.strerror}") from None
    if stat.S_ISREG(st.st_mode):
        fd = _open(path, _OPEN_FLAGS, st, display=str(path))
        try:
            name = _name_of(fd, path)
            digest, size = _sha256_fd(fd, display=str(path))
        finally:
            os.close(fd)
        entry = FileDigest(path=path.name, sha256=digest, size_bytes=size)
        return Measurement(name, "file", {"sha256": digest}, size, 1, (entry,))
    if stat.S_ISDIR(st.st_mode):
        top_fd = _open(path, _OPEN_DIR_FLAGS, st, display=str(path))
        try:
            name = _name_of(top_fd, path)
            files = _hash_all(top_fd, _list_files(top_fd), max_workers)
        finally:
            os.close(top_fd)
        return Measurement(
            name,
            "directory",
            {"sha256": manifest_digest(files)},
            sum(f.size_bytes for f in files),
            len(files),
            files,
        )
    raise UnsupportedArtifactError(f"'{path}' is {_describe(st.st_mode)}")


def _order(entry: FileDigest) -> tuple[str, ...]:
    return tuple(entry.path.split("/"))


def _describe(mode: int) -> str:
    kinds = {
        stat.S_IFLNK: "a symbolic link",
        stat.S_IFSOCK: "a socket",
        stat.S_IFIFO: "a FIFO",
        stat.S_IFCHR: "a character device",
        stat.S_IFBLK: "a block device",
    }
    what = kinds.get(stat.S_IFMT(mode), "a special file")
    return f"{what}; only regular files and directories of them are measured"


def _open(path: Path, flags: int, expected: os.stat_result, *, display: str) -> int:
    """Open the top-level path and check it is the object ``lstat`` saw."""
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _open_error(exc, display) from None
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (expected.st_dev, expected.st_ino):
        os.close(fd)
        raise ArtifactError(f"'{display}' was replaced while being measured")
    return fd


def _open_error(exc: OSError, display: str) -> ArtifactError:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
        return UnsupportedArtifactError(
            f"'{display}' became a symbolic link or changed type while being measured"
        )
    if exc.errno == errno.ENOENT:
        return ArtifactError(f"'{display}' disappeared while being measured")
    return ArtifactError(f"'{display}' cannot be opened: {exc.strerror}")


def _name_of(fd: int, fallback: Path) -> str:
    """The kernel's name for what ``fd`` is, so the name is what was hashed."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return os.path.realpath(fallback)


def _open_beneath(top_fd: int, parts: tuple[str, ...], *, directory: bool) -> int:
    """Open ``parts`` below ``top_fd`` one component at a time, never following links."""
    fd = top_fd
    try:
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            flags = _OPEN_FLAGS if last and not directory else _OPEN_DIR_FLAGS
            try:
                child = os.open(part, flags, dir_fd=fd)
            except OSError as exc:
                raise _open_error(exc, "/".join(parts[: index + 1])) from None
            if fd != top_fd:
                os.close(fd)
            fd = child
    except BaseException:
        if fd != top_fd:
            os.close(fd)
        raise
    return fd


def _list_files(top_fd: int) -> list[tuple[str, ...]]:
    """Relative paths (as components) of every regular file, refusing anything else."""
    files: list[tuple[str, ...]] = []
    pending: list[tuple[str, ...]] = [()]
    while pending:
        prefix = pending.pop()
        dir_fd = _open_beneath(top_fd, prefix, directory=True) if prefix else top_fd
        try:
            # The descriptor stays open while entries are examined: on file
            # systems without d_type, DirEntry falls back to fstatat on it.
            with os.scandir(dir_fd) as it:
                for entry in it:
                    if prefix or entry.name not in IGNORED_NAMES:
                        _classify(entry, prefix, files, pending)
        except OSError as exc:
            where = "/".join(prefix) or "."
            raise ArtifactError(f"'{where}' cannot be listed: {exc.strerror}") from None
        finally:
            if dir_fd != top_fd:
                os.close(dir_fd)
    return files


def _classify(
    entry: os.DirEntry[str],
    prefix: tuple[str, ...],
    files: list[tuple[str, ...]],
    directories: list[tuple[str, ...]],
) -> None:
    parts = (*prefix, entry.name)
    if entry.is_dir(follow_symlinks=False):
        directories.append(parts)
    elif entry.is_file(follow_symlinks=False):
        files.append(parts)
    else:
        mode = entry.stat(follow_symlinks=False).st_mode
        raise UnsupportedArtifactError(
            f"'{'/'.join(parts)}' inside the measured directory is {_describe(mode)}"
        )


def _hash_all(
    top_fd: int, files: list[tuple[str, ...]], max_workers: int | None
) -> tuple[FileDigest, ...]:
    workers = max_workers or min(_DEFAULT_MAX_WORKERS, os.cpu_count() or 1)
    if workers <= 1 or len(files) <= 1:
        digests = [_hash_beneath(top_fd, parts) for parts in files]
    else:
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="attestd-hash")
        futures: list[Future[FileDigest]] = []
        try:
            futures = [pool.submit(_hash_beneath, top_fd, parts) for parts in files]
            digests = [future.result() for future in futures]
        finally:
            # On a refusal, stop hashing the rest; the descriptor closes after.
            pool.shutdown(wait=True, cancel_futures=True)
    return tuple(sorted(digests, key=_order))


def _hash_beneath(top_fd: int, parts: tuple[str, ...]) -> FileDigest:
    fd = _open_beneath(top_fd, parts, directory=False)
    try:
        digest, size = _sha256_fd(fd, display="/".join(parts))
    finally:
        os.close(fd)
    return FileDigest(path="/".join(parts), sha256=digest, size_bytes=size)


def _sha256_fd(fd: int, *, display: str) -> tuple[str, int]:
    """SHA-256 hex and length of everything readable from ``fd`` (a regular file)."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise UnsupportedArtifactError(f"'{display}' is {_describe(st.st_mode)}")
    # Large reads let hashlib drop the GIL for most of the work; small files
    # get small buffers so a tree of many tiny files does not churn 8 MiB each.
    buffer = bytearray(min(CHUNK_SIZE, max(_MIN_BUFFER, st.st_size + 1)))
    view = memoryview(buffer)
    hasher = hashlib.sha256()
    size = 0
    while True:
        try:
            count = os.readv(fd, [buffer])
        except OSError as exc:
            raise ArtifactError(f"'{display}' cannot be read: {exc.strerror}") from None
        if count == 0:
            break
        hasher.update(view[:count])
        size += count
    return hasher.hexdigest(), size
