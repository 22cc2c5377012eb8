"""Digests of files and directories, the way model_signing signs them.

    m = measure(Path("/srv/models/llama-3-8b"))                 # sha256, one entry per file
    m.kind, m.digest["sha256"], m.file_count, m.size_bytes
    [(f.path, f.sha256, f.size_bytes) for f in m.files]        # the per-file manifest
    m = measure(path, config=HashingConfig(algorithm="blake3", serialization="shards"))
    m.manifest.to_json()                                        # model_signing's statement

A directory's digest is the subject digest model_signing 1.1.1 signs for the
same directory and the same :class:`HashingConfig` (default: SHA-256, one
manifest entry per file, symbolic links refused, git paths ignored); see
docs/hashing.md for exactly how it is computed. A regular file's digest is its
own digest under the configured algorithm (what ``sha256sum`` prints by
default), except under shard serialization, where it is the subject digest too.

Inside a directory every entry is opened relative to its parent's descriptor
with ``O_NOFOLLOW`` (unless symbolic links are allowed) and checked with
``fstat``, so an entry swapped for a link between listing and hashing is
refused, not followed. Directories are listed in the calling thread while a
pool of threads opens, reads and hashes: small files in batches, large files
and shards each as their own task over a memory mapping.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Final, Literal

from attestd.agent.artifacts import _engine
from attestd.agent.artifacts.cache import CacheKey, DigestCache
from attestd.agent.artifacts.config import GIT_PATHS, HashingConfig
from attestd.agent.artifacts.errors import (
    ArtifactError,
    ArtifactNotFoundError,
    UnsupportedArtifactError,
)
from attestd.agent.artifacts.manifest import Manifest, Resource, subject_digest

#: Top-level entries model_signing ignores by default, whatever their type.
#: Only at the top: a nested "sub/.git" is hashed, as model_signing does.
IGNORED_NAMES: Final = frozenset(GIT_PATHS)

_DEFAULT_MAX_WORKERS: Final = 16
_BATCH: Final = 64
_PROGRESS_EVERY_S: Final = 0.1

# O_NONBLOCK: opening a FIFO that replaced a file must not hang the agent.
_OPEN_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_OPEN_DIR_FLAGS: Final = _OPEN_FLAGS | os.O_DIRECTORY
_FOLLOW_FLAGS: Final = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK


@dataclass(frozen=True)
class FileDigest:
    """One SHA-256 manifest entry: a regular file of a measured artifact."""

    path: str
    """POSIX path relative to the measured directory (the file's name for a file)."""
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class Measurement:
    """What :func:`measure` found.

    ``files`` is the per-file SHA-256 manifest, in model_signing's order (by
    path components), filled under the default algorithm and file
    serialization; for a file it has one entry named after the file.
    ``manifest`` is model_signing's manifest for any configuration.
    """

    name: str
    kind: Literal["file", "directory"]
    digest: Mapping[str, str]
    size_bytes: int
    file_count: int
    files: tuple[FileDigest, ...] = field(default=(), repr=False)
    manifest: Manifest | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Progress:
    """How far :func:`measure` is; totals grow until ``listing_done``.

    ``bytes_total`` counts only while listing with a progress callback (one
    extra ``stat`` per file).
    """

    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    listing_done: bool
    elapsed_s: float


ProgressCallback = Callable[[Progress], None]


def manifest_digest(files: Iterable[FileDigest]) -> str:
    """model_signing's subject digest of a directory whose files are ``files``.

    SHA-256 over the concatenated raw 32-byte SHA-256 digests of the files,
    ordered by relative path compared component by component (how
    ``pathlib.PurePosixPath`` orders, so ``a/b`` sorts before ``a.b``). Names
    and sizes are not part of it. No files gives SHA-256 of the empty string.
    """
    ordered = sorted(files, key=lambda f: tuple(f.path.split("/")))
    return subject_digest(bytes.fromhex(f.sha256) for f in ordered)


def measure(
    path: Path,
    *,
    max_workers: int | None = None,
    config: HashingConfig | None = None,
    cache: DigestCache | None = None,
    progress: ProgressCallback | None = None,
) -> Measurement:
    """Measure a regular file or a directory.

    ``path`` should come from :meth:`ArtifactRoots.resolve`; ``name`` in the
    result is the real path of what was opened, read back from its descriptor.
    ``max_workers`` (or ``config.max_workers``) threads hash; by default one
    per CPU, at most 16. ``cache`` remembers digests by inode metadata and is
    saved at the end; ``progress`` is called from this thread every 0.1 s.

    Raises:
        ArtifactNotFoundError: ``path`` does not exist.
        UnsupportedArtifactError: ``path`` is a symbolic link (unless allowed)
            or special file, or the directory holds one outside ignored paths.
        ArtifactError: anything else unreadable.
    """
    config = config or HashingConfig()
    path = Path(path)
    try:
        st = os.stat(path) if config.allow_symlinks else os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise ArtifactNotFoundError(f"'{path}' does not exist") from None
    except OSError as exc:
        raise ArtifactError(f"'{path}' cannot be examined: {exc.strerror}") from None
    follow = config.allow_symlinks
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise UnsupportedArtifactError(f"'{path}' is {_describe(st.st_mode)}")
    directory = stat.S_ISDIR(st.st_mode)
    flags = (_FOLLOW_FLAGS if follow else _OPEN_FLAGS) | (os.O_DIRECTORY if directory else 0)
    workers = max_workers or config.max_workers or min(_DEFAULT_MAX_WORKERS, os.cpu_count() or 1)
    top_fd = _open(path, flags, st, display=str(path))
    job = _Job(config, cache, workers, progress)
    try:
        name = _name_of(top_fd, path)
        if directory:
            _walk(job, top_fd)
        else:
            job.files_total = 1
            job.bytes_total = st.st_size
            job.submit(_hash_file, job, os.dup(top_fd), (), str(path))
        job.finish()
    finally:
        os.close(top_fd)
    if cache is not None:
        cache.save()
    model_name = path.name or os.path.basename(name)
    return _measurement(job, name, model_name, "directory" if directory else "file")


# -- the result ------------------------------------------------------------------


@dataclass
class _FileWork:
    """One file being hashed: its shards and, as they arrive, their digests."""

    parts: tuple[str, ...]
    size: int
    shards: list[tuple[int, int]]
    digests: list[bytes]
    remaining: int
    key: CacheKey | None = None


#: A hashed file: path components, bytes hashed, and one digest per shard
#: (one for the whole file under file serialization, none for an empty shard file).
_Done = tuple[tuple[str, ...], int, tuple[bytes, ...]]


def _measurement(
    job: _Job, name: str, model_name: str, kind: Literal["file", "directory"]
) -> Measurement:
    config = job.config
    done = sorted(job.done, key=itemgetter(0))
    algorithm = config.resource_algorithm
    resources: list[Resource] = []
    files: list[FileDigest] = []
    per_file = config.algorithm == "sha256" and not config.sharded
    raw: list[bytes] = []
    for parts, size, digests in done:
        rel = "/".join(parts) or "."
        if config.sharded:
            starts = range(0, size, config.shard_size)
            for start, digest in zip(starts, digests, strict=True):
                end = min(start + config.shard_size, size)
                resources.append(Resource(f"{rel}:{start}:{end}", algorithm, digest.hex()))
        else:
            hexdigest = digests[0].hex()
            resources.append(Resource(rel, algorithm, hexdigest))
            if per_file:
                files.append(FileDigest("/".join(parts) or model_name, hexdigest, size))
        raw.extend(digests)
    manifest = Manifest(model_name, config.serialization_parameters(), tuple(resources))
    if kind == "file" and not config.sharded:
        subject = {config.digest_name: done[0][2][0].hex()}
    else:
        subject = {"sha256": subject_digest(raw)}
    size = sum(d[1] for d in done)
    return Measurement(name, kind, subject, size, len(done), tuple(files), manifest)


# -- scheduling ------------------------------------------------------------------


class _Job:
    """The state of one :func:`measure` call, shared by the walker and the workers."""

    def __init__(
        self,
        config: HashingConfig,
        cache: DigestCache | None,
        workers: int,
        progress: ProgressCallback | None,
    ) -> None:
        self.config = config
        self.cache = cache
        self.ignored = config.ignored
        self.since_ns = time.time_ns()
        self.progress = progress
        self.open_flags = _FOLLOW_FLAGS if config.allow_symlinks else _OPEN_FLAGS
        self.workers = workers
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="attestd-hash")
        self._cond = threading.Condition()
        self._pending = 0
        self._limit = 4 * workers
        self.error: BaseException | None = None
        self.done: list[_Done] = []
        self.files_total = 0
        self.bytes_total = 0
        self.files_done = 0
        self.bytes_done = 0
        self.listing_done = False
        self._started = time.monotonic()
        self._reported = self._started

    @property
    def failed(self) -> bool:
        return self.error is not None

    def submit(self, task: Callable[..., None], *args: object, throttle: bool = False) -> None:
        """Run ``task(*args)`` in the pool; the walker (``throttle``) waits for room."""
        with self._cond:
            while throttle and self._pending >= self._limit and self.error is None:
                self._cond.wait(_PROGRESS_EVERY_S)
                self._report_while_waiting()
            self._pending += 1
        self.pool.submit(self._run, task, args)

    def _report_while_waiting(self) -> None:
        """Report progress from inside a wait on ``_cond``, without holding it meanwhile."""
        if self.progress is None:
            return
        self._cond.release()
        try:
            self.report()
        finally:
            self._cond.acquire()

    def _run(self, task: Callable[..., None], args: tuple[object, ...]) -> None:
        try:
            task(*args)
        except BaseException as exc:
            with self._cond:
                if self.error is None:
                    self.error = exc
        finally:
            with self._cond:
                self._pending -= 1
                self._cond.notify_all()

    def fail(self, exc: BaseException) -> None:
        with self._cond:
            if self.error is None:
                self.error = exc

    def finish(self) -> None:
        """Wait for every task, report progress meanwhile, and raise the first error."""
        self.listing_done = True
        try:
            with self._cond:
                while self._pending:
                    self._cond.wait(_PROGRESS_EVERY_S if self.progress else None)
                    self._report_while_waiting()
        finally:
            self.pool.shutdown(wait=True)
        if self.error is not None:
            raise self.error
        self.report(force=True)

    def add_done(self, done: list[_Done], count: int) -> None:
        """Record a batch of small files hashed whole."""
        with self._cond:
            self.done.extend(done)
            self.files_done += len(done)
            self.bytes_done += count

    def add_bytes(self, count: int) -> None:
        with self._cond:
            self.bytes_done += count

    def complete(
        self,
        work: _FileWork,
        index: int | None,
        digest: bytes,
        count: int,
        *,
        remember: bool = True,
    ) -> None:
        """Record one shard's digest (``index`` None: a file without shards).

        The file is done with its last shard, and then remembered in the cache.
        """
        with self._cond:
            if index is not None:
                work.digests[index] = digest
                work.remaining -= 1
            self.bytes_done += count
            if work.remaining:
                return
            self.done.append((work.parts, work.size, tuple(work.digests)))
            self.files_done += 1
        if not remember or not work.shards:
            return
        if self.cache is not None and work.key is not None and work.key.size == work.size:
            self.cache.store(
                work.key,
                self.config.resource_algorithm,
                [d.hex() for d in work.digests],
                since_ns=self.since_ns,
            )

    def report(self, *, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if not force and now - self._reported < _PROGRESS_EVERY_S:
            return
        self._reported = now
        self.progress(
            Progress(
                self.files_done,
                self.files_total,
                self.bytes_done,
                self.bytes_total,
                self.listing_done,
                now - self._started,
            )
        )


# -- listing (the calling thread) ------------------------------------------------


def _walk(job: _Job, top_fd: int) -> None:
    """List the tree depth first, handing files to the pool as they are found.

    One descriptor is open per level of the current path, plus one per batch
    in flight.
    """
    stack: list[tuple[tuple[str, ...], int, Iterator[str]]] = []
    try:
        stack.append(((), top_fd, iter(_list_dir(job, top_fd, ()))))
        while stack and not job.failed:
            prefix, dir_fd, subdirs = stack[-1]
            child = next(subdirs, None)
            if child is None:
                stack.pop()
                if dir_fd != top_fd:
                    os.close(dir_fd)
                continue
            parts = (*prefix, child)
            child_fd = _open_child_dir(dir_fd, child, parts)
            stack.append((parts, child_fd, iter(())))  # closed by ``finally`` on error
            stack[-1] = (parts, child_fd, iter(_list_dir(job, child_fd, parts)))
    except BaseException as exc:
        job.fail(exc)
    finally:
        for _, dir_fd, _ in stack:
            if dir_fd != top_fd:
                os.close(dir_fd)


def _open_child_dir(dir_fd: int, name: str, parts: tuple[str, ...]) -> int:
    try:
        return os.open(name, _OPEN_DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise _open_error(exc, "/".join(parts)) from None


def _list_dir(job: _Job, dir_fd: int, prefix: tuple[str, ...]) -> list[str]:
    """Hand this directory's files to the pool; return its subdirectories."""
    files: list[str] = []
    subdirs: list[str] = []
    sizes = 0
    want_sizes = job.progress is not None
    try:
        # The descriptor stays open while entries are examined: on file
        # systems without d_type, DirEntry falls back to fstatat on it.
        with os.scandir(dir_fd) as it:
            for entry in it:
                parts = (*prefix, entry.name)
                if parts in job.ignored:
                    continue
                kind = _classify(entry, dir_fd, parts, job.config.allow_symlinks)
                if kind == "dir":
                    subdirs.append(entry.name)
                elif kind == "file":
                    files.append(entry.name)
                    if want_sizes:
                        sizes += entry.stat(follow_symlinks=True).st_size
    except OSError as exc:
        where = "/".join(prefix) or "."
        raise ArtifactError(f"'{where}' cannot be listed: {exc.strerror}") from None
    job.files_total += len(files)
    job.bytes_total += sizes
    batch = max(1, min(_BATCH, len(files) // (4 * job.workers)))
    for first in range(0, len(files), batch):
        if job.failed:
            break
        chunk = files[first : first + batch]
        job.submit(_hash_names, job, os.dup(dir_fd), prefix, chunk, throttle=True)
    job.report()
    return subdirs


def _classify(
    entry: os.DirEntry[str], dir_fd: int, parts: tuple[str, ...], allow_symlinks: bool
) -> Literal["file", "dir", "skip"]:
    if entry.is_dir(follow_symlinks=False):
        return "dir"
    if entry.is_file(follow_symlinks=False):
        return "file"
    where = "/".join(parts)
    if entry.is_symlink() and allow_symlinks:
        # model_signing hashes what a link to a file points at, skips a link
        # to a directory (it does not descend), and refuses anything else.
        try:
            target = os.stat(entry.name, dir_fd=dir_fd)
        except OSError:
            raise UnsupportedArtifactError(
                f"'{where}' inside the measured directory is a dangling symbolic link"
            ) from None
        if stat.S_ISDIR(target.st_mode):
            return "skip"
        if stat.S_ISREG(target.st_mode):
            return "file"
        raise UnsupportedArtifactError(
            f"'{where}' inside the measured directory links to {_describe(target.st_mode)}"
        )
    mode = entry.stat(follow_symlinks=False).st_mode
    raise UnsupportedArtifactError(f"'{where}' inside the measured directory is {_describe(mode)}")


# -- hashing (the pool) ----------------------------------------------------------


def _hash_names(job: _Job, dir_fd: int, prefix: tuple[str, ...], names: list[str]) -> None:
    """Hash a batch of files of one directory (large ones become tasks of their own)."""
    # The common case, a small file hashed whole, stays in this loop: open,
    # fstat, one pread, close, and no locking until the batch is done.
    quick = not job.config.sharded and job.cache is None
    algorithm = job.config.algorithm
    done: list[_Done] = []
    count = 0
    try:
        for name in names:
            if job.error is not None:
                return
            parts = (*prefix, name)
            if not quick:
                _hash_entry(job, dir_fd, parts)
                continue
            fd = _open_entry(job, dir_fd, parts)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode) or st.st_size > _engine.READ_LIMIT:
                    _hash_file(job, os.dup(fd), parts, "/".join(parts))
                    continue
                digest, size = _engine.hash_small(fd, algorithm, st.st_size, display=name)
            finally:
                os.close(fd)
            done.append((parts, size, (digest,)))
            count += size
    finally:
        os.close(dir_fd)
        job.add_done(done, count)


def _hash_entry(job: _Job, dir_fd: int, parts: tuple[str, ...]) -> None:
    _hash_file(job, _open_entry(job, dir_fd, parts), parts, "/".join(parts))


def _open_entry(job: _Job, dir_fd: int, parts: tuple[str, ...]) -> int:
    try:
        return os.open(parts[-1], job.open_flags, dir_fd=dir_fd)
    except OSError as exc:
        raise _open_error(exc, "/".join(parts)) from None


def _hash_file(job: _Job, fd: int, parts: tuple[str, ...], display: str) -> None:
    """Hash the regular file ``fd`` (owned: closed here or by the tasks it starts)."""
    owned = True
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsupportedArtifactError(f"'{display}' is {_describe(st.st_mode)}")
        config = job.config
        size = st.st_size
        if config.sharded:
            shards = [
                (s, min(s + config.shard_size, size)) for s in range(0, size, config.shard_size)
            ]
        else:
            shards = [(0, size)]
        work = _FileWork(parts, size, shards, [b""] * len(shards), len(shards))
        if not shards:  # an empty file has no shards, as in model_signing
            job.complete(work, None, b"", 0)
            return
        if job.cache is not None:
            work.key = CacheKey.of(st)
            if _from_cache(job, work):
                return
        if not config.sharded and size <= _engine.READ_LIMIT:
            digest, work.size = _engine.hash_small(fd, config.algorithm, size, display=display)
            job.complete(work, 0, digest, work.size)
        elif config.sharded and size <= _engine.READ_LIMIT:
            _hash_small_shards(job, fd, work, display)
        else:
            # Large: every shard (or the whole file) is a task of its own, so
            # the pool balances big files against batches of small ones.
            for index in range(len(shards)):
                last = index == len(shards) - 1
                task_fd = fd if last else os.dup(fd)
                owned = owned and not last
                job.submit(_hash_shard, job, task_fd, work, index, display)
    finally:
        if owned:
            os.close(fd)


def _from_cache(job: _Job, work: _FileWork) -> bool:
    assert job.cache is not None and work.key is not None
    found = job.cache.lookup(work.key, job.config.resource_algorithm)
    if found is None or len(found) != len(work.shards):
        return False
    try:
        digests = [bytes.fromhex(d) for d in found]
    except ValueError:
        return False
    for index, digest in enumerate(digests):
        start, end = work.shards[index]
        job.complete(work, index, digest, end - start, remember=False)
    return True


def _hash_small_shards(job: _Job, fd: int, work: _FileWork, display: str) -> None:
    data = _engine.pread_exactly(fd, 0, work.size, display=display)
    for index, (start, end) in enumerate(work.shards):
        hasher = _engine.new_hasher(job.config.algorithm)
        hasher.update(data[start:end])
        job.complete(work, index, hasher.digest(), end - start)


def _hash_shard(job: _Job, fd: int, work: _FileWork, index: int, display: str) -> None:
    try:
        if job.failed:
            return
        start, end = work.shards[index]
        algorithm = job.config.algorithm
        use_mmap = job.config.use_mmap
        if algorithm == "blake3" and not job.config.sharded and use_mmap:
            digest = _engine.hash_file_blake3(fd, work.size, display=display)
            job.complete(work, index, digest, end - start)
            return
        digest = _engine.hash_range(
            fd, algorithm, start, end, display=display, on_bytes=job.add_bytes, use_mmap=use_mmap
        )
        job.complete(work, index, digest, 0)
    finally:
        os.close(fd)


# -- opening and naming ----------------------------------------------------------


def _describe(mode: int) -> str:
    kinds = {
        stat.S_IFLNK: "a symbolic link",
        stat.S_IFSOCK: "a socket",
        stat.S_IFIFO: "a FIFO",
        stat.S_IFCHR: "a character device",
        stat.S_IFBLK: "a block device",
        stat.S_IFDIR: "a directory",
    }
    what = kinds.get(stat.S_IFMT(mode), "a special file")
    return f"{what}; only regular files and directories of them are measured"


def _open(path: Path, flags: int, expected: os.stat_result, *, display: str) -> int:
    """Open the top-level path and check it is the object ``stat`` saw."""
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
