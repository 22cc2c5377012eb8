"""`make demo-fleet`'s script end to end (on SQLite; the failover test covers PostgreSQL)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def test_the_fleet_demo_tampers_alerts_fails_over_and_ends_ok() -> None:
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "demo" / "fleet_demo.py"), "--sqlite"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    lines = completed.stdout.strip().splitlines()
    assert lines[-1] == "fleet demo: OK"
    assert "tdx-0: contraindicated (agent_not_serving)" in completed.stdout
    assert "webhook: signed body for tdx-0" in completed.stdout
    assert "every agent appraised by replica-b" in completed.stdout
