"""A real PostgreSQL server for the verifier service's tests, and a store on each backend.

The cluster (``postgres.throwaway_cluster``) is started once per session; each
test gets a fresh database. Without Debian's ``postgresql`` package the
PostgreSQL cases skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from attestd.verifier.service.store import Store
from tests.conftest import in_ci
from tests.verifier.service.fleet import VerifierProcess, service_pki
from tests.verifier.service.postgres import (
    PostgresCluster,
    PostgresMissingError,
    fresh_database,
    throwaway_cluster,
)

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    try:
        with throwaway_cluster() as cluster:
            yield cluster
    except PostgresMissingError as err:
        if in_ci(os.environ):
            pytest.fail(f"{err}; CI is set, so this fails instead of skipping")
        pytest.skip(str(err))


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database on each backend: a SQLite file, or a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fleet.db'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return fresh_database(cluster)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = Store.open(database_url, now=time.time())
    yield opened
    opened.close()


@pytest.fixture
def verifier(tmp_path: Path, database_url: str) -> Iterator[VerifierProcess]:
    """One attestd-verifier process on ``database_url``, stopped cleanly after the test."""
    process = VerifierProcess(tmp_path / "verifier", database_url, service_pki(tmp_path / "pki"))
    process.start()
    yield process
    if process.process is not None:
        assert process.stop() == 0, process.log_path.read_text()
