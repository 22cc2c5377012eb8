"""Reading the files attestd is told to read, and replacing the files it keeps.

    from attestd._files import read_regular_file, write_atomic

    pem = read_regular_file(path, 64 * 1024, "trust.simulated_root")   # bytes, or FileRefusedError
    write_atomic(state_dir / "registers.json", data, mode=0o600)       # old or new file, never half

Every file named by configuration or on the command line goes through
:func:`read_regular_file`: it must be a regular file no larger than a bound the
caller states. A FIFO, a character device or a directory is refused *without
blocking* (the file is opened ``O_NONBLOCK``), so a policy that names a FIFO
cannot hang the verifier, and ``/dev/zero`` cannot exhaust its memory. Callers
turn :class:`FileRefusedError` into their own error type (``config_invalid``,
``policy_invalid``, ...), keeping its :attr:`~FileRefusedError.detail`.

Symbolic links are followed on purpose: operators (and Kubernetes ConfigMaps)
point configuration at files through links, and the file reached is what is
checked.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from attestd.errors import AttestdError

#: A bound for small text files: configuration, policies, layouts, PEM roots and keys.
MAX_CONFIG_BYTES = 1 << 20


class FileRefusedError(AttestdError):
    """A file named by configuration or the command line could not be read as one.

    ``path`` and ``what`` (the role the file plays, such as "policy file") say
    which; ``detail`` is the cause alone, for callers that word their own message.
    """

    reason = "file_unreadable"

    def __init__(self, path: Path | str, what: str, detail: str) -> None:
        super().__init__(f"cannot read {path} ({what}): {detail}")
        self.path = str(path)
        self.what = what
        self.detail = detail


class FileMissingError(FileRefusedError):
    """The file does not exist."""

    reason = "file_missing"


class NotRegularFileError(FileRefusedError):
    """The path is a directory, FIFO, socket or device, never read (a FIFO would block)."""

    reason = "file_not_regular"


class FileTooLargeError(FileRefusedError):
    """The file is larger than the caller's bound."""

    reason = "file_too_large"


def _kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def read_regular_file(path: Path | str, max_bytes: int, what: str) -> bytes:
    """The bytes of the regular file at ``path``, at most ``max_bytes`` of them.

    Raises :class:`FileMissingError`, :class:`NotRegularFileError`,
    :class:`FileTooLargeError`, or :class:`FileRefusedError` for any other
    ``OSError`` (its ``strerror`` is the detail).
    """
    # O_NONBLOCK: opening a FIFO for reading otherwise waits for a writer, forever.
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as err:
        raise FileMissingError(path, what, err.strerror or "No such file or directory") from err
    except OSError as err:
        raise FileRefusedError(path, what, err.strerror or str(err)) from err
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(path, what, f"{_kind(st.st_mode)}, not a regular file")
        if st.st_size > max_bytes:
            raise FileTooLargeError(path, what, f"larger than {max_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        # Read to EOF but never past the bound: the file may grow after fstat.
        while size <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:
            raise FileTooLargeError(path, what, f"larger than {max_bytes} bytes")
        return b"".join(chunks)
    except OSError as err:
        raise FileRefusedError(path, what, err.strerror or str(err)) from err
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file, whole.

    The data goes to a uniquely named temporary file in the same directory (so
    the rename cannot cross file systems and concurrent writers never share
    one), which is fsynced, renamed over ``path``, and the directory fsynced so
    the rename itself survives a crash. The file gets exactly ``mode``, whatever
    the umask. ``OSError`` propagates, and the temporary file is removed.
    """
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Make the latest create, rename or unlink in ``directory`` durable."""
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
