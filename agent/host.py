"""Claims about the host the agent runs on, for the evidence's ``host`` field.

These are the host's own statements (psutil, uname), not hardware-measured:
the verifier shows them to people but bases no decision on them.
"""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path

import psutil


def host_claims() -> dict[str, object]:
    uname = platform.uname()
    return {
        "hostname": uname.node,
        "kernel": uname.release,
        "os": uname.system,
        "machine": uname.machine,
        "bootTime": datetime.fromtimestamp(psutil.boot_time(), UTC)
        .isoformat()
        .replace("+00:00", "Z"),
        "bootId": current_boot_id(),
        "cpuCount": os.cpu_count() or 0,
        "memoryBytes": psutil.virtual_memory().total,
        "python": platform.python_version(),
    }


def current_boot_id() -> str:
    """The kernel's random id of this boot ("" where the kernel offers none)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""
