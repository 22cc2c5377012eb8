"""A real PostgreSQL server for the verifier service's tests, and a store on each backend.

The cluster is Debian's ``postgresql`` package (``initdb``/``pg_ctl`` found by
glob), started once per session on a Unix socket in a temporary directory
with TCP off. Each test gets a fresh database. ``initdb`` refuses to run as
root, so as root the cluster belongs to ``nobody``. Without the binaries the
PostgreSQL cases skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from attestd.verifier.service.store import Store
from tests.conftest import in_ci

BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class PostgresCluster:
    socket_dir: Path
    bin_dir: Path

    def url(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _as_cluster_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "nobody", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    bin_dir = _bin_dir()
    if bin_dir is None:
        message = "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb)"
        if in_ci(os.environ):
            pytest.fail(f"{message}; CI is set, so this fails instead of skipping")
        pytest.skip(message)
    # Short path: a Unix socket path must fit in 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="attestd-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "nobody")
    root.chmod(0o700)
    subprocess.run(
        _as_cluster_user(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ]
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    options = f"-c listen_addresses='' -c unix_socket_directories={root} -c fsync=off"
    started = subprocess.run(
        _as_cluster_user(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(root / "log"),
                "-w",
                "-o",
                options,
                "start",
            ]
        ),
        capture_output=True,
        timeout=120,
        check=False,
    )
    if started.returncode != 0:
        log = (root / "log").read_text() if (root / "log").exists() else ""
        pytest.fail(f"pg_ctl start failed: {started.stderr.decode()}\n{log}")
    # Root must reach the socket inside nobody's 0700 directory: open it to traversal only.
    root.chmod(0o711)
    try:
        yield PostgresCluster(root, bin_dir)
    finally:
        subprocess.run(
            _as_cluster_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)


_database_numbers = itertools.count()


def fresh_postgres_url(cluster: PostgresCluster) -> str:
    """A new, empty database on ``cluster``."""
    import psycopg

    name = f"t{os.getpid()}_{next(_database_numbers)}_{int(time.time() * 1000) % 100000}"
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')  # name built above, not outside input
    return cluster.url(name)


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database on each backend: a SQLite file, or a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fleet.db'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return fresh_postgres_url(cluster)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = Store.open(database_url, now=time.time())
    yield opened
    opened.close()
