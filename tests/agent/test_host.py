"""The host claims evidence carries: what is read once, and what is read each time."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime

import psutil

from attestd.agent.host import current_boot_id, host_claims


def test_host_claims_match_what_the_system_reports() -> None:
    claims = host_claims()
    assert claims["memoryBytes"] == psutil.virtual_memory().total
    assert claims["cpuCount"] == (os.cpu_count() or 0)
    assert claims["bootId"] == current_boot_id()
    assert claims["hostname"] == platform.uname().node
    assert claims["python"] == platform.python_version()
    boot = datetime.fromisoformat(str(claims["bootTime"]).replace("Z", "+00:00"))
    # The kernel's btime follows the wall clock; a second of slack for a reading made later.
    assert abs(boot.timestamp() - psutil.boot_time()) <= 1
    assert boot.tzinfo == UTC


def test_each_call_is_a_fresh_dict_with_the_same_boot() -> None:
    first, second = host_claims(), host_claims()
    assert first is not second
    first["hostname"] = "changed by a caller"
    assert host_claims()["hostname"] == platform.uname().node
    assert (first["bootTime"], first["bootId"]) == (second["bootTime"], second["bootId"])
