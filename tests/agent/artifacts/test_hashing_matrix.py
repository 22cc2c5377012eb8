"""Every configuration's manifest equals model_signing 1.1.1's, resource for resource.

Algorithm (sha256, blake2, blake3) x serialization (files, shards) x symbolic
links (refused, followed) x ignored paths (none, git, git and chosen paths),
over trees with empty files, empty directories, unicode names, nesting and
files larger than a shard.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import blake3
import model_signing.hashing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from model_signing._signing.signing import Payload

from attestd.agent.artifacts import (
    ALGORITHMS,
    SERIALIZATIONS,
    HashingConfig,
    Measurement,
    UnsupportedArtifactError,
    measure,
)

MiB = 1024 * 1024
# Not a multiple of the page size: shard offsets are unaligned, and shards are
# over the 1 MiB read limit, so they are hashed through a mapping.
SHARD = MiB + 3

TREE: Mapping[str, bytes] = {
    "config.json": b"{}",
    "empty": b"",
    "d/empty-too": b"",
    "weights/model-00001.safetensors": os.urandom(3 * SHARD + 5),
    "weights/model-00002.safetensors": os.urandom(2 * SHARD),  # exactly two shards
    "weights/one-byte": b"\x00",
    "a/b/c.bin": b"\x00\x01\x02" * 100,
    "a/b.txt": b"b",
    "a.b": b"dot",  # after a/b/c.bin component-wise, before it as a string
    "модель.bin": b"ru",
    "日本/重み.safetensors": os.urandom(5000),
    "café/🙂": b"emoji",
    "docs/README.md": b"# model\n",
    ".hidden": b"hidden files are hashed",
    "sub/.git/config": b"a nested .git is not ignored",
    ".git/HEAD": b"ref: refs/heads/main\n",
    ".gitignore": b"*.tmp\n",
    ".github/workflows/ci.yml": b"on: push\n",
}

IGNORES: Mapping[str, tuple[tuple[str, ...], bool]] = {
    "nothing": ((), False),
    "git": ((), True),
    "git+chosen": (("docs", "a/b.txt", "日本/重み.safetensors", "absent"), True),
}


def build(root: Path, files: Mapping[str, bytes], *, symlinks: bool) -> Path:
    for relative, content in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    (root / "empty-dir" / "nested-empty").mkdir(parents=True)
    if symlinks:
        outside = root.parent / "outside"
        outside.mkdir()
        (outside / "secret.bin").write_bytes(os.urandom(SHARD + 1))
        (outside / "dir").mkdir()
        (outside / "dir" / "unseen").write_bytes(b"model_signing does not descend")
        (root / "link-to-file").symlink_to(outside / "secret.bin")
        (root / "a" / "relative-link").symlink_to("b.txt")
        (root / "link-to-dir").symlink_to(outside / "dir")
    return root


@pytest.fixture(scope="module", params=[False, True], ids=["refuse-links", "follow-links"])
def tree(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("links" if request.param else "plain")
    return build(base / "model", TREE, symlinks=request.param)


def model_signing_config(config: HashingConfig) -> model_signing.hashing.Config:
    ms = model_signing.hashing.Config()
    if config.serialization == "files":
        ms.use_file_serialization(hashing_algorithm=config.algorithm)
    else:
        ms.use_shard_serialization(hashing_algorithm=config.algorithm, shard_size=config.shard_size)
    ms.set_ignored_paths(paths=list(config.ignore_paths), ignore_git_paths=config.ignore_git_paths)
    return ms.set_allow_symlinks(config.allow_symlinks)


def model_signing_statement(path: Path, config: HashingConfig) -> dict[str, Any]:
    from google.protobuf import json_format

    manifest = model_signing_config(config).hash(path)
    statement: dict[str, Any] = json_format.MessageToDict(Payload(manifest).statement.pb)
    return statement


def assert_same_statement(ours: Measurement, theirs: dict[str, Any]) -> None:
    assert ours.manifest is not None
    mine = ours.manifest.statement()
    assert mine["subject"] == theirs["subject"]
    assert mine["predicateType"] == theirs["predicateType"]
    assert mine["predicate"]["resources"] == theirs["predicate"]["resources"]
    ser_mine = dict(mine["predicate"]["serialization"])
    ser_theirs = dict(theirs["predicate"]["serialization"])
    # model_signing lists ignored paths in set order, which varies per process.
    assert sorted(ser_mine.pop("ignore_paths", [])) == sorted(ser_theirs.pop("ignore_paths", []))
    assert ser_mine == ser_theirs


@pytest.mark.parametrize("ignore", IGNORES)
@pytest.mark.parametrize("serialization", SERIALIZATIONS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_directory_manifest_equals_model_signing(
    tree: Path, algorithm: str, serialization: str, ignore: str
) -> None:
    paths, git = IGNORES[ignore]
    config = HashingConfig(
        algorithm=algorithm,  # type: ignore[arg-type]
        serialization=serialization,  # type: ignore[arg-type]
        shard_size=SHARD,
        allow_symlinks=(tree.parent / "outside").exists(),
        ignore_paths=paths,
        ignore_git_paths=git,
    )
    theirs = model_signing_statement(tree, config)
    ours = measure(tree, config=config)
    assert_same_statement(ours, theirs)
    assert ours.kind == "directory"
    assert ours.digest == {"sha256": theirs["subject"][0]["digest"]["sha256"]}
    assert measure(tree, config=config, max_workers=1) == ours
    names = {r.name.split(":")[0] for r in ours.manifest.resources} if ours.manifest else set()
    assert not any(n.startswith("link-to-dir") for n in names)
    if config.sharded:
        assert "empty" not in names  # an empty file has no shards
        assert f"weights/model-00001.safetensors:{3 * SHARD}:{3 * SHARD + 5}" in {
            r.name for r in ours.manifest.resources
        }
    else:
        assert "empty" in names
    if ignore == "git+chosen":
        assert not names & {"docs/README.md", "a/b.txt", "日本/重み.safetensors"}


@pytest.mark.parametrize("serialization", SERIALIZATIONS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("size", [0, 1, 4096, 2 * SHARD + 1])
def test_single_file_manifest_equals_model_signing(
    tmp_path: Path, algorithm: str, serialization: str, size: int
) -> None:
    target = tmp_path / "model.safetensors"
    content = os.urandom(size)
    target.write_bytes(content)
    config = HashingConfig(
        algorithm=algorithm,  # type: ignore[arg-type]
        serialization=serialization,  # type: ignore[arg-type]
        shard_size=SHARD,
    )
    ours = measure(target, config=config)
    assert_same_statement(ours, model_signing_statement(target, config))
    assert (ours.kind, ours.size_bytes, ours.file_count) == ("file", size, 1)
    if not config.sharded:
        own = {
            "sha256": hashlib.sha256(content).hexdigest(),
            "blake2b": hashlib.blake2b(content).hexdigest(),
            "blake3": blake3.blake3(content).hexdigest(),
        }[config.digest_name]
        assert ours.digest == {config.digest_name: own}


@pytest.mark.parametrize("algorithm", ["sha256", "blake2"])
def test_small_files_of_many_shards_equal_model_signing(tmp_path: Path, algorithm: str) -> None:
    tree = build(
        tmp_path / "model",
        {"a": os.urandom(10_001), "b/c": os.urandom(999), "d": os.urandom(3000)},
        symlinks=False,
    )
    config = HashingConfig(algorithm=algorithm, serialization="shards", shard_size=1000)  # type: ignore[arg-type]
    ours = measure(tree, config=config)
    assert_same_statement(ours, model_signing_statement(tree, config))
    assert ours.manifest is not None and len(ours.manifest.resources) == 11 + 1 + 3


def test_blake3_shards_are_files_as_in_model_signing(tree: Path) -> None:
    links = (tree.parent / "outside").exists()
    files = measure(tree, config=HashingConfig(algorithm="blake3", allow_symlinks=links))
    shards = measure(
        tree,
        config=HashingConfig(algorithm="blake3", serialization="shards", allow_symlinks=links),
    )
    assert files == shards
    assert files.manifest is not None
    assert files.manifest.serialization["method"] == "files"


def test_blake2_is_blake2b_512(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    m = measure(tmp_path / "f", config=HashingConfig(algorithm="blake2"))
    assert m.digest == {"blake2b": hashlib.blake2b(b"abc").hexdigest()}
    assert len(m.digest["blake2b"]) == 128


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_symlinks_refused_by_default_in_every_algorithm(tmp_path: Path, algorithm: str) -> None:
    tree = build(tmp_path / "model", {"w": b"w", "a/b.txt": b"b"}, symlinks=True)
    config = HashingConfig(algorithm=algorithm)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="symlink"):
        model_signing_config(config).hash(tree)
    with pytest.raises(UnsupportedArtifactError, match="symbolic link"):
        measure(tree, config=config)


def test_dangling_link_is_refused_even_when_links_are_allowed(tmp_path: Path) -> None:
    tree = build(tmp_path / "model", {"w": b"w"}, symlinks=False)
    (tree / "dangling").symlink_to(tmp_path / "nowhere")
    config = HashingConfig(allow_symlinks=True)
    with pytest.raises(ValueError):
        model_signing_config(config).hash(tree)
    with pytest.raises(UnsupportedArtifactError, match="dangling"):
        measure(tree, config=config)


def test_bad_configurations_are_refused() -> None:
    from attestd.agent.artifacts import ArtifactError

    for bad in [
        {"algorithm": "md5"},
        {"serialization": "tensors"},
        {"shard_size": 0},
        {"ignore_paths": ("/etc",)},
        {"ignore_paths": ("../x",)},
        {"ignore_paths": (".",)},
        {"max_workers": 0},
    ]:
        with pytest.raises(ArtifactError):
            HashingConfig(**bad)  # type: ignore[arg-type]


_name = st.text(alphabet="ab.-_ Zé日", min_size=1, max_size=4).filter(
    lambda n: n not in {".", ".."}
)


@settings(max_examples=30, deadline=None)
@given(
    files=st.dictionaries(
        st.lists(_name, min_size=1, max_size=3).map("/".join),
        st.binary(max_size=64),
        max_size=8,
    ),
    algorithm=st.sampled_from(ALGORITHMS),
    serialization=st.sampled_from(SERIALIZATIONS),
    shard_size=st.integers(min_value=1, max_value=80),
    ignore_git=st.booleans(),
)
def test_random_trees_and_configurations_match_model_signing(
    files: dict[str, bytes],
    algorithm: str,
    serialization: str,
    shard_size: int,
    ignore_git: bool,
) -> None:
    config = HashingConfig(
        algorithm=algorithm,  # type: ignore[arg-type]
        serialization=serialization,  # type: ignore[arg-type]
        shard_size=shard_size,
        ignore_git_paths=ignore_git,
    )
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
        assert_same_statement(measure(tree, config=config), model_signing_statement(tree, config))
