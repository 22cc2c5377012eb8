"""Claims about the host the agent runs on, for the evidence's ``host`` field.

These are the host's own statements (psutil, uname), not hardware-measured:
the verifier shows them to people but bases no decision on them::

    claims = host_claims()          # a fresh dict per call; cheap enough per batch
    claims["bootId"]                # the kernel's random id of this boot

What cannot change while this process runs is read once: the boot (its id
and time: a reboot ends the process) and ``platform.uname()``, which Python
itself reads once per process. What can change on a running host (memory
and CPU hot-plug) is read on every call, by syscalls rather than by parsing
``/proc``.
"""

from __future__ import annotations

import functools
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

import psutil


def host_claims() -> dict[str, object]:
    uname = platform.uname()  # cached by Python for the process's life
    boot_time, boot_id = _boot()
    return {
        "hostname": uname.node,
        "kernel": uname.release,
        "os": uname.system,
        "machine": uname.machine,
        "bootTime": boot_time,
        "bootId": boot_id,
        "cpuCount": os.cpu_count() or 0,
        "memoryBytes": _memory_bytes(),
        "python": platform.python_version(),
    }


@functools.cache
def _boot() -> tuple[str, str]:
    """This boot's time (RFC 3339) and id, read once: a process never outlives its boot.

    The kernel derives ``btime`` from the wall clock minus the time since boot,
    so a clock step would move a fresh reading; the boot itself did not move,
    and evidence keeps reporting the value read first.
    """
    started = datetime.fromtimestamp(psutil.boot_time(), UTC).isoformat().replace("+00:00", "Z")
    return started, current_boot_id()


def _memory_bytes() -> int:
    """Total usable memory, as psutil's ``virtual_memory().total`` (MemTotal) reports it.

    Both are the kernel's ``totalram_pages`` in bytes; sysinfo(2) through sysconf
    costs a microsecond where parsing /proc/meminfo costs sixty, and memory
    hot-plug or a balloon can change it, so it is read each time.
    """
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):  # a libc without these names
        return int(psutil.virtual_memory().total)


def current_boot_id() -> str:
    """The kernel's random id of this boot ("" where the kernel offers none)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""
