"""What the TDX and SEV-SNP guest clients share of Linux: the ioctl call and its numbers.

    >>> from attestd.tee._linux import DeviceIoctl, iowr, linux_ioctl
    >>> REQUEST = iowr("T", 1, 1088)                # _IOWR('T', 1, struct tdx_report_req)
    >>> linux_ioctl(Path("/dev/tdx_guest"), REQUEST, buffer)

Each client re-exports :class:`DeviceIoctl` and :func:`linux_ioctl`, and each
``linuxabi`` re-exports :func:`iowr`, so they stay importable where they were.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Protocol

# asm-generic/ioctl.h, as x86 uses it: dir(2) | size(14) | type(8) | nr(8).
_IOC_WRITE = 1
_IOC_READ = 2


def iowr(kind: str, nr: int, size: int) -> int:
    """``_IOWR(kind, nr, size)``: a read-write ioctl request number."""
    return ((_IOC_READ | _IOC_WRITE) << 30) | (size << 16) | (ord(kind) << 8) | nr


class DeviceIoctl(Protocol):
    """Issue ``request`` on ``device`` with ``buffer`` as the in/out argument.

    Raises ``OSError`` with the kernel's errno; tests put a fake device here.
    """

    def __call__(self, device: Path, request: int, buffer: bytearray) -> None: ...


def linux_ioctl(device: Path, request: int, buffer: bytearray) -> None:
    """:class:`DeviceIoctl` on the real device: open, ioctl (buffer mutated in place), close."""
    fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, request, buffer, True)
    finally:
        os.close(fd)
