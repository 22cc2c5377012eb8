"""attestd/_files.py: named files are regular and bounded; replaced files are whole."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from attestd._files import (
    FileMissingError,
    FileRefusedError,
    FileTooLargeError,
    NotRegularFileError,
    read_regular_file,
    write_atomic,
)

T = TypeVar("T")


def within(seconds: float, call: Callable[[], T]) -> T:
    """``call()``'s result or exception, failing the test (not hanging it) if it blocks."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(("ok", call()))
        except BaseException as err:  # handed back to the test below
            outcome.append(("error", err))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still blocked after {seconds} s"
    kind, value = outcome[0]  # type: ignore[misc]
    if kind == "error":
        raise value  # type: ignore[misc]
    return value  # type: ignore[no-any-return]


def make_fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def test_a_regular_file_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_bytes(b"x" * 100)
    assert read_regular_file(path, 100, "policy file") == b"x" * 100


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = make_fifo(tmp_path / "root.pem")
    with pytest.raises(NotRegularFileError, match="a FIFO, not a regular file") as caught:
        within(10, lambda: read_regular_file(fifo, 1024, "trust.simulated_root"))
    assert caught.value.reason == "file_not_regular"
    assert str(fifo) in str(caught.value) and "trust.simulated_root" in str(caught.value)


def test_a_directory_and_a_device_are_refused(tmp_path: Path) -> None:
    with pytest.raises(NotRegularFileError, match="a directory"):
        read_regular_file(tmp_path, 1024, "policy file")
    with pytest.raises(NotRegularFileError, match="a character device"):
        within(10, lambda: read_regular_file(Path("/dev/zero"), 1024, "policy file"))


def test_a_file_over_the_bound_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big"
    path.write_bytes(b"x" * 101)
    with pytest.raises(FileTooLargeError, match="larger than 100 bytes") as caught:
        read_regular_file(path, 100, "layout file")
    assert caught.value.reason == "file_too_large"


def test_a_missing_file_is_its_own_error(tmp_path: Path) -> None:
    with pytest.raises(FileMissingError) as caught:
        read_regular_file(tmp_path / "absent", 100, "policy file")
    assert isinstance(caught.value, FileRefusedError)
    assert caught.value.detail == "No such file or directory"


def test_a_symlink_to_a_regular_file_is_followed(tmp_path: Path) -> None:
    (tmp_path / "real").write_bytes(b"data")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert read_regular_file(tmp_path / "link", 10, "policy file") == b"data"


def test_write_atomic_replaces_the_file_with_exactly_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b"old")
    old_umask = os.umask(0o077)
    try:
        write_atomic(path, b"new", mode=0o644)
    finally:
        os.umask(old_umask)
    assert path.read_bytes() == b"new"
    assert path.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_write_atomic_leaves_the_old_file_and_no_temporary_when_it_fails(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b"old")

    with pytest.raises(TypeError):
        write_atomic(path, "not bytes", mode=0o600)  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
