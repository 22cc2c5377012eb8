"""Measuring single files and the refusals inside a measured directory."""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from attestd.agent.artifacts import (
    ArtifactNotFoundError,
    FileDigest,
    UnsupportedArtifactError,
    measure,
)

# The package re-exports the function `measure`, which shadows the submodule of
# the same name as an attribute; fetch the module itself.
measure_module = importlib.import_module("attestd.agent.artifacts.measure")


def sha256sum(path: Path) -> str:
    tool = shutil.which("sha256sum")
    if tool is None:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return subprocess.run([tool, str(path)], check=True, capture_output=True, text=True).stdout[:64]


@pytest.mark.parametrize("size", [0, 1, 65_536, 3 * 1024 * 1024 + 5])
def test_single_file_digest_is_what_sha256sum_prints(tmp_path: Path, size: int) -> None:
    target = tmp_path / "model.safetensors"
    target.write_bytes(os.urandom(size))
    m = measure(target)
    assert m.kind == "file"
    assert m.digest == {"sha256": sha256sum(target)}
    assert (m.size_bytes, m.file_count) == (size, 1)
    assert m.files == (FileDigest("model.safetensors", sha256sum(target), size),)


def test_name_is_the_real_absolute_path(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f").write_bytes(b"x")
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    m = measure(tmp_path / "alias" / "f")
    assert m.name == str((tmp_path / "real" / "f").resolve())


def test_nonexistent_path_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(ArtifactNotFoundError) as caught:
        measure(tmp_path / "missing")
    assert caught.value.reason == "artifact_not_found"


def test_measured_path_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "f")
    with pytest.raises(UnsupportedArtifactError, match="symbolic link"):
        measure(tmp_path / "link")


def test_symlink_inside_directory_is_refused(tmp_path: Path) -> None:
    tree = tmp_path / "model"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "w.bin").write_bytes(b"w")
    (tree / "sub" / "escape").symlink_to("/etc/passwd")
    with pytest.raises(UnsupportedArtifactError, match=r"'sub/escape' .* symbolic link") as caught:
        measure(tree)
    assert caught.value.reason == "artifact_unsupported"


def test_symlink_to_directory_inside_directory_is_refused(tmp_path: Path) -> None:
    tree = tmp_path / "model"
    tree.mkdir()
    (tmp_path / "outside").mkdir()
    (tree / "d").symlink_to(tmp_path / "outside")
    with pytest.raises(UnsupportedArtifactError, match="symbolic link"):
        measure(tree)


def test_dangling_symlink_inside_directory_is_refused(tmp_path: Path) -> None:
    tree = tmp_path / "model"
    tree.mkdir()
    (tree / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(UnsupportedArtifactError, match="symbolic link"):
        measure(tree)


def test_fifo_inside_directory_is_refused(tmp_path: Path) -> None:
    tree = tmp_path / "model"
    tree.mkdir()
    os.mkfifo(tree / "pipe")
    with pytest.raises(UnsupportedArtifactError, match="FIFO"):
        measure(tree)


def test_socket_inside_directory_is_refused(tmp_path: Path) -> None:
    tree = tmp_path / "m"  # short: AF_UNIX paths are limited to ~108 bytes
    tree.mkdir()
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(tree / "s"))
    except OSError:
        pytest.skip("cannot bind a Unix socket under tmp_path")
    try:
        with pytest.raises(UnsupportedArtifactError, match="socket"):
            measure(tree)
        with pytest.raises(UnsupportedArtifactError, match="socket"):
            measure(tree / "s")
    finally:
        server.close()


def test_character_device_is_refused() -> None:
    with pytest.raises(UnsupportedArtifactError, match="character device"):
        measure(Path("/dev/null"))


def test_file_swapped_for_symlink_after_listing_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = tmp_path / "model"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "w.bin").write_bytes(b"w")
    (tmp_path / "secret").write_bytes(b"outside")
    open_entry = measure_module._open_entry

    def swap_then_open(job: object, dir_fd: int, parts: tuple[str, ...]) -> int:
        (tree / "sub" / "w.bin").unlink()
        (tree / "sub" / "w.bin").symlink_to(tmp_path / "secret")
        return open_entry(job, dir_fd, parts)

    monkeypatch.setattr(measure_module, "_open_entry", swap_then_open)
    with pytest.raises(UnsupportedArtifactError, match="symbolic link"):
        measure(tree)


def test_directory_swapped_for_symlink_after_listing_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = tmp_path / "model"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "w.bin").write_bytes(b"w")
    (tmp_path / "decoy").mkdir()
    (tmp_path / "decoy" / "w.bin").write_bytes(b"outside")
    open_child_dir = measure_module._open_child_dir

    def swap_then_open(dir_fd: int, name: str, parts: tuple[str, ...]) -> int:
        shutil.rmtree(tree / "sub")
        (tree / "sub").symlink_to(tmp_path / "decoy")
        return open_child_dir(dir_fd, name, parts)

    monkeypatch.setattr(measure_module, "_open_child_dir", swap_then_open)
    with pytest.raises(UnsupportedArtifactError, match="symbolic link"):
        measure(tree, max_workers=1)


def test_directory_totals_and_manifest(tmp_path: Path) -> None:
    tree = tmp_path / "model"
    (tree / "b").mkdir(parents=True)
    (tree / "a.bin").write_bytes(b"aa")
    (tree / "b" / "c.bin").write_bytes(b"ccc")
    m = measure(tree)
    assert m.name == str(tree.resolve())
    assert (m.kind, m.file_count, m.size_bytes) == ("directory", 2, 5)
    assert m.files == (
        FileDigest("a.bin", hashlib.sha256(b"aa").hexdigest(), 2),
        FileDigest("b/c.bin", hashlib.sha256(b"ccc").hexdigest(), 3),
    )
    assert "files" not in repr(m)
