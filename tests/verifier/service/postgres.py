"""A throwaway PostgreSQL cluster from Debian's ``postgresql`` package, on a Unix socket.

    with throwaway_cluster() as cluster:
        url = fresh_database(cluster)          # postgresql://postgres@/t..?host=/tmp/...

``initdb``/``pg_ctl`` are found by glob (``/usr/lib/postgresql/*/bin``, newest
version). TCP is off (``listen_addresses=''``); the socket lives in a temporary
directory. ``initdb`` refuses to run as root, so as root the cluster belongs to
``nobody`` (through ``runuser``). Used by the tests' fixture and ``make demo-fleet``.
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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PostgresCluster", "PostgresMissingError", "fresh_database", "throwaway_cluster"]


class PostgresMissingError(RuntimeError):
    """Debian's postgresql package is not installed."""


@dataclass(frozen=True)
class PostgresCluster:
    socket_dir: Path
    bin_dir: Path

    def url(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise PostgresMissingError(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb; "
            "apt-get install postgresql)"
        )
    return Path(found[-1]).parent


def _as_cluster_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "nobody", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def throwaway_cluster() -> Iterator[PostgresCluster]:
    """Start a cluster, yield it, stop it and delete its files (PostgresMissingError)."""
    bin_dir = _bin_dir()
    # Short path: a Unix socket path must fit in 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="attestd-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "nobody")
    root.chmod(0o700)
    try:
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
        # fsync off: a throwaway cluster needs no durability, and the tests run faster.
        options = f"-c listen_addresses='' -c unix_socket_directories={root} -c fsync=off"
        start = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w"]
        started = subprocess.run(
            _as_cluster_user([*start, "-o", options, "start"]),
            capture_output=True,
            timeout=120,
            check=False,
        )
        if started.returncode != 0:
            log = (root / "log").read_text() if (root / "log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {started.stderr.decode()}\n{log}")
        # The connecting user must reach the socket in nobody's directory: traversal only.
        root.chmod(0o711)
        try:
            yield PostgresCluster(root, bin_dir)
        finally:
            stop = [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
            subprocess.run(_as_cluster_user(stop), capture_output=True, timeout=60, check=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)


_numbers = itertools.count()


def fresh_database(cluster: PostgresCluster) -> str:
    """The URL of a new, empty database on ``cluster``."""
    import psycopg

    name = f"t{os.getpid()}_{next(_numbers)}_{int(time.time() * 1000) % 100000}"
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')  # name built above, not outside input
    return cluster.url(name)
