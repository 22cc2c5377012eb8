"""How to hash: model_signing's hashing configuration, as one frozen value.

    config = HashingConfig(algorithm="blake3")                 # files, blake3
    config = HashingConfig(serialization="shards", shard_size=1 << 30)
    config = HashingConfig(ignore_paths=("README.md", "docs"), allow_symlinks=True)
    measure(path, config=config)

Each field has the meaning of the argument of the same name in
``model_signing.hashing.Config`` (1.1.1): ``use_file_serialization`` /
``use_shard_serialization(hashing_algorithm=..., shard_size=...)``,
``set_ignored_paths(paths=..., ignore_git_paths=...)`` and
``set_allow_symlinks(...)``; a model hashed with the same settings on both
sides gets the same manifest and the same subject digest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Final, Literal

from attestd.agent.artifacts.errors import ArtifactError

Algorithm = Literal["sha256", "blake2", "blake3"]
Serialization = Literal["files", "shards"]

ALGORITHMS: Final[tuple[Algorithm, ...]] = ("sha256", "blake2", "blake3")
SERIALIZATIONS: Final[tuple[Serialization, ...]] = ("files", "shards")

#: model_signing's name for each algorithm's digests ("blake2" is BLAKE2b-512).
DIGEST_NAMES: Final[dict[str, str]] = {"sha256": "sha256", "blake2": "blake2b", "blake3": "blake3"}

#: What model_signing ignores at the top of a model unless told otherwise.
GIT_PATHS: Final = (".git", ".gitattributes", ".github", ".gitignore")

DEFAULT_SHARD_SIZE: Final = 1_000_000_000


@dataclass(frozen=True)
class HashingConfig:
    """One hashing configuration; the default is model_signing's default.

    ``serialization="shards"`` with ``algorithm="blake3"`` is file
    serialization, as in model_signing (BLAKE3 parallelises by itself).
    ``ignore_paths`` are relative POSIX paths below the measured directory; a
    directory ignores everything beneath it. ``max_workers`` only changes
    speed, never a digest.
    """

    algorithm: Algorithm = "sha256"
    serialization: Serialization = "files"
    shard_size: int = DEFAULT_SHARD_SIZE
    allow_symlinks: bool = False
    ignore_paths: tuple[str, ...] = ()
    ignore_git_paths: bool = True
    max_workers: int | None = None
    use_mmap: bool = True
    """Map large files (fastest). A file truncated while mapped raises SIGBUS,
    which ends the process, so the agent daemon turns this off: a pipeline must
    not be able to crash it by truncating a file it asked to have measured."""

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ArtifactError(f"unknown hashing algorithm {self.algorithm!r}")
        if self.serialization not in SERIALIZATIONS:
            raise ArtifactError(f"unknown serialization {self.serialization!r}")
        if self.shard_size <= 0:
            raise ArtifactError(f"shard size must be positive, not {self.shard_size}")
        if self.max_workers is not None and self.max_workers < 1:
            raise ArtifactError(f"max_workers must be at least 1, not {self.max_workers}")
        for path in self.ignore_paths:
            _ignore_parts(path)

    @property
    def digest_name(self) -> str:
        """The name of each file's (or each shard's content) digest: sha256, blake2b, blake3."""
        return DIGEST_NAMES[self.algorithm]

    @property
    def sharded(self) -> bool:
        """Whether files are cut into shards (never for BLAKE3)."""
        return self.serialization == "shards" and self.algorithm != "blake3"

    @property
    def resource_algorithm(self) -> str:
        """The ``algorithm`` of each manifest resource, e.g. ``sha256-sharded-1000000000``."""
        if self.sharded:
            return f"{self.digest_name}-sharded-{self.shard_size}"
        return self.digest_name

    @property
    def ignored(self) -> frozenset[tuple[str, ...]]:
        """Ignored paths as tuples of components, the git paths included when asked."""
        parts = {_ignore_parts(p) for p in self.ignore_paths}
        if self.ignore_git_paths:
            parts.update((name,) for name in GIT_PATHS)
        return frozenset(parts)

    def serialization_parameters(self) -> dict[str, Any]:
        """model_signing's ``predicate["serialization"]`` for this configuration.

        ``ignore_paths`` is sorted here; model_signing lists the same names in
        the order of a Python set, which changes from run to run.
        """
        params: dict[str, Any] = {"method": "shards" if self.sharded else "files"}
        params["hash_type"] = self.digest_name
        if self.sharded:
            params["shard_size"] = self.shard_size
        params["allow_symlinks"] = self.allow_symlinks
        ignored = sorted("/".join(parts) for parts in self.ignored)
        if ignored:
            params["ignore_paths"] = ignored
        return params


def _ignore_parts(path: str) -> tuple[str, ...]:
    """``path`` as components; absolute paths, ``..`` and the model itself are refused.

    (model_signing silently ignores nothing for the first two and everything
    for the last; an explicit refusal is kinder.)
    """
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or "\x00" in path:
        raise ArtifactError(f"ignored path {path!r} must be relative, without '..'")
    if not pure.parts:
        raise ArtifactError(f"ignored path {path!r} would ignore the whole model")
    return pure.parts
