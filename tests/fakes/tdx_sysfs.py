"""A fake tdx_guest sysfs measurements directory (Linux 6.16+) whose RTMR files extend on write.

The tree is real (``<root>/measurements/rtmr{0..3}:sha384``, ``mrtd:sha384``),
so the client finds it with ``is_dir``; reads and writes go through this
:class:`~attestd.tee.tsm.KernelFilesystem`, which does what the kernel does: a
read gives the register's 48 raw bytes, a 48-byte write extends it
(RTMR = SHA-384(RTMR || data)), anything else is EINVAL, and the static
registers are read-only.

    sysfs = FakeTdxSysfs(tmp_path / "sys/devices/virtual/misc/tdx_guest")
    sysfs.errors["write:rtmr3:sha384"] = errno.EACCES
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

RTMR_SIZE = 48


class FakeTdxSysfs:
    """Measurement registers under ``root/measurements``, starting from ``initial`` values."""

    def __init__(
        self, root: Path, initial: tuple[bytes, bytes, bytes, bytes] | None = None
    ) -> None:
        self.root = root
        self.measurements = root / "measurements"
        self.measurements.mkdir(parents=True)
        values = initial or tuple(hashlib.sha384(b"rtmr%d" % i).digest() for i in range(4))
        for index, value in enumerate(values):
            (self.measurements / f"rtmr{index}:sha384").write_bytes(value)
        (self.measurements / "mrtd:sha384").write_bytes(hashlib.sha384(b"mrtd").digest())
        self.errors: dict[str, int] = {}
        self.extensions: list[tuple[str, bytes]] = []

    def value(self, index: int) -> bytes:
        return (self.measurements / f"rtmr{index}:sha384").read_bytes()

    # -- KernelFilesystem -------------------------------------------------------

    def is_dir(self, path: Path) -> bool:
        return path.is_dir()

    def mkdir(self, path: Path) -> None:
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), str(path))

    def rmdir(self, path: Path) -> None:
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), str(path))

    def read(self, path: Path) -> bytes:
        self._maybe_fail(f"read:{path.name}", path)
        return path.read_bytes()  # FileNotFoundError for a register the kernel lacks

    def write(self, path: Path, data: bytes) -> None:
        self._maybe_fail(f"write:{path.name}", path)
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
        if not path.name.startswith("rtmr"):
            raise PermissionError(errno.EACCES, "read-only measurement register", str(path))
        if len(data) != RTMR_SIZE:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), str(path))
        path.write_bytes(hashlib.sha384(path.read_bytes() + data).digest())
        self.extensions.append((path.name, data))

    def _maybe_fail(self, key: str, path: Path) -> None:
        code = self.errors.get(key)
        if code is not None:
            raise OSError(code, os.strerror(code), str(path))
