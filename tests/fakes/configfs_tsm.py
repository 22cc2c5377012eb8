"""A fake configfs-tsm report directory that behaves like the kernel's (drivers/virt/coco/tsm.c).

A plain directory cannot compute ``outblob``, so the fake is the
:class:`~attestd.tee.tsm.KernelFilesystem` the client's file operations go
through. It keeps a real tree in a temporary directory (``provider``,
``generation``, ``outblob`` and ``auxblob`` files a test can look at) and adds
the kernel's behaviour: ``mkdir`` makes an entry, every write to ``inblob`` or
``privlevel`` advances ``generation``, and reading ``outblob`` asks the
provider for a report over the current ``inblob``.

Switches stand for what goes wrong on real machines::

    tsm = FakeConfigfsTsm(tmp_path / "report", provider="tdx_guest", make_report=...)
    tsm.concurrent_writes = 1            # another writer slips in once (ALWAYS: every time)
    tsm.errors["write:inblob"] = errno.EBUSY
    tsm.errors["mkdir"] = errno.EACCES
    tsm.no_provider = True               # no TEE driver registered: ENXIO
    tsm.live_entries()                   # entries not removed: must be [] after any request
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ALWAYS = 1 << 30
INBLOB_MAX = 64  # TSM_INBLOB_MAX
PRIVLEVEL_MAX = 3

#: (inblob, privlevel) -> (outblob, auxblob or None)
ReportMaker = Callable[[bytes, int], tuple[bytes, bytes | None]]


@dataclass
class _EntryState:
    generation: int = 0
    inblob: bytes | None = None
    privlevel: int = 0
    report_generation: int = -1  # the generation the cached outblob was made at


class FakeConfigfsTsm:
    """configfs-tsm's report directory at ``root``, with one provider."""

    def __init__(
        self,
        root: Path,
        *,
        provider: str,
        make_report: ReportMaker,
        privlevel_floor: int = 0,
        create_root: bool = True,
    ) -> None:
        self.root = root
        self.provider = provider
        self.make_report = make_report
        self.privlevel_floor = privlevel_floor
        # Only SNP offers privlevel and auxblob; TDX's entries lack the files.
        self.offers_privlevel = provider == "sev_guest"
        self.offers_auxblob = provider == "sev_guest"
        self.concurrent_writes = 0
        self.errors: dict[str, int] = {}
        self.no_provider = False
        self.created: list[Path] = []
        self.removed: list[Path] = []
        self.inblobs: list[bytes] = []
        self._entries: dict[Path, _EntryState] = {}
        if create_root:
            root.mkdir(parents=True, exist_ok=True)

    def live_entries(self) -> list[str]:
        return sorted(p.name for p in self._entries)

    # -- KernelFilesystem -------------------------------------------------------

    def is_dir(self, path: Path) -> bool:
        return path.is_dir()

    def mkdir(self, path: Path) -> None:
        self._maybe_fail("mkdir", path)
        if path.parent != self.root or not self.root.is_dir():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
        path.mkdir()  # raises FileExistsError as configfs would
        self._entries[path] = _EntryState()
        self.created.append(path)
        self._sync(path)

    def rmdir(self, path: Path) -> None:
        self._maybe_fail("rmdir", path)
        if path not in self._entries:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
        del self._entries[path]
        shutil.rmtree(path)
        self.removed.append(path)

    def read(self, path: Path) -> bytes:
        name = path.name
        self._maybe_fail(f"read:{name}", path)
        state = self._entry(path)
        if name == "provider":
            self._need_provider(path)
            return f"{self.provider}\n".encode()
        if name == "generation":
            return f"{state.generation}\n".encode()
        if name == "privlevel_floor" and self.offers_privlevel:
            return f"{self.privlevel_floor}\n".encode()
        if name == "outblob" or (name == "auxblob" and self.offers_auxblob):
            self._need_provider(path)
            outblob, auxblob = self._report(path.parent, state)
            return outblob if name == "outblob" else (auxblob or b"")
        if name in ("inblob", "privlevel"):
            raise PermissionError(errno.EACCES, "write-only attribute", str(path))
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))

    def write(self, path: Path, data: bytes) -> None:
        name = path.name
        self._maybe_fail(f"write:{name}", path)
        state = self._entry(path)
        if name == "inblob":
            if len(data) > INBLOB_MAX:
                raise OSError(errno.EFBIG, os.strerror(errno.EFBIG), str(path))
            state.inblob = data
            self.inblobs.append(data)
        elif name == "privlevel" and self.offers_privlevel:
            try:
                level = int(data.decode("ascii").strip(), 0)
            except ValueError:
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), str(path)) from None
            if not self.privlevel_floor <= level <= PRIVLEVEL_MAX:
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), str(path))
            state.privlevel = level
        elif name in ("provider", "generation", "outblob", "auxblob", "privlevel_floor"):
            raise PermissionError(errno.EACCES, "read-only attribute", str(path))
        else:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
        state.generation += 1
        self._sync(path.parent)

    # -- the kernel's behaviour ---------------------------------------------------

    def _report(self, entry: Path, state: _EntryState) -> tuple[bytes, bytes | None]:
        if self.concurrent_writes > 0:
            # Another process writes its own inblob into our entry before our read.
            self.concurrent_writes -= 1
            state.inblob = b"\xee" * INBLOB_MAX
            state.generation += 1
        if state.inblob is None:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), str(entry / "outblob"))
        outblob, auxblob = self.make_report(state.inblob, state.privlevel)
        (entry / "outblob").write_bytes(outblob)
        if self.offers_auxblob:
            (entry / "auxblob").write_bytes(auxblob or b"")
        state.report_generation = state.generation
        self._sync(entry)
        return outblob, auxblob

    def _entry(self, path: Path) -> _EntryState:
        state = self._entries.get(path.parent)
        if state is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
        return state

    def _need_provider(self, path: Path) -> None:
        if self.no_provider:
            raise OSError(errno.ENXIO, os.strerror(errno.ENXIO), str(path))

    def _maybe_fail(self, key: str, path: Path) -> None:
        code = self.errors.get(key)
        if code is not None:
            raise OSError(code, os.strerror(code), str(path))

    def _sync(self, entry: Path) -> None:
        """Mirror the entry's state into the real tree, for tests that look at it."""
        state = self._entries[entry]
        (entry / "provider").write_text(f"{self.provider}\n")
        (entry / "generation").write_text(f"{state.generation}\n")
