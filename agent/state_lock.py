"""One agent per state directory: an exclusive kernel lock held for the agent's life.

    lock = StateLock.acquire(Path("/var/lib/attestd"))
    ...                      # open the backend and the runtime log
    lock.release()

Two agents on one state directory would interleave one runtime log with
duplicate sequence numbers and leave it unreadable for every later agent. The
lock is ``flock`` on ``agent.lock`` in the directory: the kernel drops it when
the holder's last descriptor closes, so a SIGKILLed agent never leaves a stale
lock behind (a PID file alone would). The holder's PID is written into the file
after locking, only so that a refused agent can name it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from attestd.agent.errors import StateDirError, StateDirLockedError

LOCK_NAME = "agent.lock"


@dataclass(frozen=True)
class StateLock:
    """The held lock: an open descriptor on the lock file, closed by :meth:`release`."""

    path: Path
    fd: int

    @classmethod
    def acquire(cls, state_dir: Path) -> StateLock:
        """Create ``state_dir`` if needed (0700) and lock it, or say why not."""
        _make_state_dir(state_dir)
        path = state_dir / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as err:
            raise StateDirError(f"cannot open the lock file {path}: {err.strerror}") from err
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StateDirError(f"the lock file {path} is not a regular file")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                    raise StateDirError(f"cannot lock {path}: {err.strerror}") from err
                holder = _read_pid(fd)
                who = f"pid {holder}" if holder is not None else "a process of unknown pid"
                raise StateDirLockedError(
                    f"the state directory {state_dir} is in use by another attestd ({who}); "
                    "two agents on one state directory would corrupt its runtime log",
                    holder,
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)  # also drops the lock, if it was taken
            raise
        return cls(path, fd)

    def release(self) -> None:
        """Drop the lock. The file stays: removing it would race a starting agent."""
        os.close(self.fd)


def _make_state_dir(state_dir: Path) -> None:
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise StateDirError(
            f"the state directory {state_dir} exists and is not a directory"
        ) from None
    except OSError as err:
        raise StateDirError(
            f"cannot create the state directory {state_dir}: {err.strerror}"
        ) from err
    if not state_dir.is_dir():
        raise StateDirError(f"the state directory {state_dir} is not a directory")


def _read_pid(fd: int) -> int | None:
    """The PID the holder wrote, if it has written one yet."""
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None
