"""A directory's digest is exactly the subject digest model_signing 1.1.1 signs."""

from __future__ import annotations

import os
import tempfile
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import model_signing.hashing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from model_signing._signing.signing import Payload

from attestd.agent.artifacts import (
    FileDigest,
    UnsupportedArtifactError,
    manifest_digest,
    measure,
)


def model_signing_payload(path: Path) -> tuple[str, list[dict[str, Any]]]:
    """The subject digest and the resources model_signing would sign for ``path``."""
    statement = Payload(model_signing.hashing.hash(path)).statement.pb
    (subject,) = statement.subject
    resources = [dict(r) for r in statement.predicate["resources"]]
    return subject.digest["sha256"], resources


def build(root: Path, files: Mapping[str, bytes]) -> Path:
    for relative, content in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return root


def assert_same_as_model_signing(tree: Path) -> None:
    ours = measure(tree)
    expected_digest, resources = model_signing_payload(tree)
    assert ours.kind == "directory"
    assert ours.digest == {"sha256": expected_digest}
    assert [(f.path, f.sha256) for f in ours.files] == [(r["name"], r["digest"]) for r in resources]
    assert all(r["algorithm"] == "sha256" for r in resources)
    assert ours.file_count == len(resources)
    assert manifest_digest(reversed(ours.files)) == expected_digest


NESTED = {
    "top.txt": b"top\n",
    "a/b/c.bin": b"\x00\x01\x02" * 100,
    "a/b.txt": b"b",
    "a.b": b"dot",  # sorts after a/b/c.bin component-wise, before it as a string
    "a-b": b"dash",
    "a b": b"space",
    "A": b"upper",
    ".hidden": b"hidden files are hashed",
    "deep/er/and/deeper/still/leaf": b"leaf",
    "sub/.git/config": b"a nested .git is not ignored",
    "sub/.gitignore": b"nor a nested .gitignore",
    ".git/HEAD": b"ref: refs/heads/main\n",  # ignored
    ".gitignore": b"*.tmp\n",  # ignored
    ".gitattributes": b"*.bin filter=lfs\n",  # ignored
    ".github/workflows/ci.yml": b"on: push\n",  # ignored
}


def test_nested_tree_with_git_paths_matches_model_signing(tmp_path: Path) -> None:
    tree = build(tmp_path / "model", NESTED)
    assert_same_as_model_signing(tree)
    names = [f.path for f in measure(tree).files]
    assert not any(n.split("/")[0] in {".git", ".gitignore", ".github"} for n in names)
    assert "sub/.git/config" in names


def test_empty_files_match_model_signing(tmp_path: Path) -> None:
    tree = build(tmp_path / "model", {"empty": b"", "d/empty2": b"", "d/e/empty3": b"", "x": b"x"})
    assert_same_as_model_signing(tree)
    assert measure(tree).size_bytes == 1


def test_unicode_names_match_model_signing(tmp_path: Path) -> None:
    nfc = unicodedata.normalize("NFC", "café")
    nfd = unicodedata.normalize("NFD", "café")
    files = {
        "модель.bin": b"ru",
        "日本/重み.safetensors": b"ja",
        f"{nfc}.txt": b"nfc",
        f"{nfd}.txt": b"nfd",  # a different name, byte for byte
        "🙂/ok": b"emoji",
        "Zebra": b"z",
    }
    tree = build(tmp_path / "model", files)
    assert_same_as_model_signing(tree)
    assert measure(tree).file_count == 6


def test_files_of_a_few_megabytes_match_model_signing(tmp_path: Path) -> None:
    files = {
        "weights-00001.bin": os.urandom(3 * 1024 * 1024 + 1),
        "weights-00002.bin": os.urandom(2 * 1024 * 1024),
        # Over the 8 MiB read buffer, to cross a chunk boundary.
        "big/over-one-chunk.bin": os.urandom(8 * 1024 * 1024 + 7),
        "config.json": b"{}",
    }
    tree = build(tmp_path / "model", files)
    assert_same_as_model_signing(tree)
    assert measure(tree).size_bytes == sum(len(v) for v in files.values())
    assert measure(tree, max_workers=1) == measure(tree, max_workers=8)


def test_empty_directory_matches_model_signing_sha256_of_nothing(tmp_path: Path) -> None:
    # model_signing signs an empty directory with SHA-256 of no digests at all;
    # we match it (kind and file_count say it is an empty directory).
    tree = tmp_path / "empty"
    tree.mkdir()
    (tree / "only-empty-subdirs" / "nested").mkdir(parents=True)
    assert_same_as_model_signing(tree)
    m = measure(tree)
    assert m.digest["sha256"] == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert (m.file_count, m.size_bytes, m.files) == (0, 0, ())


def test_directory_of_only_ignored_paths_matches_model_signing(tmp_path: Path) -> None:
    tree = build(tmp_path / "model", {".git/HEAD": b"x", ".gitignore": b"y"})
    assert_same_as_model_signing(tree)
    assert measure(tree).file_count == 0


def test_names_are_not_part_of_the_digest_as_in_model_signing(tmp_path: Path) -> None:
    one = build(tmp_path / "one", {"a": b"1", "b": b"2"})
    other = build(tmp_path / "other", {"x": b"1", "y/z": b"2"})
    assert model_signing_payload(one)[0] == model_signing_payload(other)[0]
    assert measure(one).digest == measure(other).digest
    assert measure(one).files != measure(other).files


def test_symlinks_are_refused_like_model_signing(tmp_path: Path) -> None:
    tree = build(tmp_path / "model", {"real.bin": b"r"})
    (tree / "link.bin").symlink_to(tree / "real.bin")
    with pytest.raises(ValueError, match="symlink"):
        model_signing.hashing.hash(tree)
    with pytest.raises(UnsupportedArtifactError, match=r"link\.bin"):
        measure(tree)


def test_symlink_inside_ignored_git_dir_is_skipped_where_model_signing_refuses(
    tmp_path: Path,
) -> None:
    # A deliberate difference: ignored paths are not walked at all, so nothing
    # in them (git's fsmonitor socket, a symlink) can refuse the model.
    tree = build(tmp_path / "model", {"w.bin": b"w", ".git/HEAD": b"h"})
    (tree / ".git" / "link").symlink_to("/etc/passwd")
    with pytest.raises(ValueError):
        model_signing.hashing.hash(tree)
    (tree / ".git" / "link").unlink()
    expected, _ = model_signing_payload(tree)
    (tree / ".git" / "link").symlink_to("/etc/passwd")
    assert measure(tree).digest == {"sha256": expected}


_name = st.text(alphabet="ab.-_ Zé日", min_size=1, max_size=4).filter(
    lambda n: n not in {".", ".."}
)


@settings(max_examples=25, deadline=None)
@given(
    st.dictionaries(
        st.lists(_name, min_size=1, max_size=3).map("/".join),
        st.binary(max_size=64),
        max_size=8,
    )
)
def test_random_trees_match_model_signing(files: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch) / "model"
        tree.mkdir()
        for relative, content in files.items():
            target = tree / relative
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
            except (FileExistsError, NotADirectoryError, IsADirectoryError):
                continue  # a name used both as a file and as a directory
        assert_same_as_model_signing(tree)


def test_manifest_digest_orders_by_path_components() -> None:
    def entry(path: str, byte: str) -> FileDigest:
        return FileDigest(path=path, sha256=byte * 64, size_bytes=0)

    import hashlib

    entries = [entry("a.b", "1"), entry("a/b", "2")]
    expected = hashlib.sha256(bytes.fromhex("2" * 64) + bytes.fromhex("1" * 64)).hexdigest()
    assert manifest_digest(entries) == expected
