"""What a replica re-reads, and when: policy files within ``file_check_s``, and gRPC's I/O mode."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from attestd.verifier.metrics import VerifierMetrics
from attestd.verifier.service.poller import Poller, PollerSettings
from attestd.verifier.service.store import Store

CHECK_S = 0.3


@pytest.fixture
def poller(tmp_path: Path) -> Iterator[Poller]:
    store = Store.open(f"sqlite:///{tmp_path / 'fleet.db'}", now=time.time())
    settings = PollerSettings(replica_id="r1", lease_s=10.0, file_check_s=CHECK_S)
    yield Poller(store, settings, ec.generate_private_key(ec.SECP256R1()), VerifierMetrics())
    store.close()


def test_a_policy_edit_is_picked_up_within_file_check_s_and_not_before(
    poller: Poller, tmp_path: Path
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[trust]\nroot = "intel"\n')
    first, digest = poller._policy(str(path))
    path.write_text('[trust]\nroot = "intel"\n[freshness]\nmax_age_seconds = 60\n')
    assert poller._policy(str(path)) == (first, digest)  # the stat is trusted for CHECK_S
    time.sleep(CHECK_S + 0.05)
    edited, new_digest = poller._policy(str(path))
    assert new_digest != digest and edited.freshness.max_age_seconds == 60
    time.sleep(CHECK_S + 0.05)
    assert poller._policy(str(path))[1] == new_digest  # unchanged: not read again


def _experiments(code: str, **env: str) -> str:
    """GRPC_EXPERIMENTS as a fresh interpreter sees it after ``code``."""
    environment = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"} | env
    script = f"{code}\nimport os\nprint(os.environ.get('GRPC_EXPERIMENTS', '<unset>'))"
    done = subprocess.run(
        [sys.executable, "-c", script], env=environment, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_the_daemon_keeps_grpc_client_io_on_the_pulling_thread() -> None:
    setup = "from attestd.verifier.service import main\nmain._inline_client_io()"
    assert _experiments(setup) == "-event_engine_client"


def test_an_operators_grpc_experiments_win() -> None:
    setup = "from attestd.verifier.service import main\nmain._inline_client_io()"
    assert _experiments(setup, GRPC_EXPERIMENTS="event_engine_client") == "event_engine_client"


def test_a_process_that_imported_grpc_first_keeps_its_choice() -> None:
    setup = "import grpc\nfrom attestd.verifier.service import main\nmain._inline_client_io()"
    assert _experiments(setup) == "<unset>"
