"""Reading without mmap (the agent daemon's mode) gives the same digests, and a
file that shrinks under the reader is an error instead of SIGBUS."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from attestd.agent.artifacts import ArtifactError, HashingConfig, measure
from attestd.agent.artifacts._engine import hash_range

SIZE = 3 * 1024 * 1024 + 7  # larger than the read limit, not a multiple of anything


@pytest.mark.parametrize("algorithm", ["sha256", "blake2", "blake3"])
@pytest.mark.parametrize("serialization", ["files", "shards"])
def test_reads_and_maps_give_the_same_digest(
    tmp_path: Path, algorithm: str, serialization: str
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(os.urandom(SIZE))
    (model / "config.json").write_text("{}")
    mapped = HashingConfig(algorithm=algorithm, serialization=serialization, shard_size=1 << 20)  # type: ignore[arg-type]
    read = HashingConfig(
        algorithm=algorithm,  # type: ignore[arg-type]
        serialization=serialization,  # type: ignore[arg-type]
        shard_size=1 << 20,
        use_mmap=False,
    )
    assert measure(model, config=read).digest == measure(model, config=mapped).digest


def test_a_file_shorter_than_expected_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "shrunk.bin"
    path.write_bytes(b"x" * SIZE)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.truncate(path, SIZE // 2)  # as a pipeline truncating it mid-measurement
        with pytest.raises(ArtifactError, match="shrank"):
            hash_range(fd, "sha256", 0, SIZE, display="shrunk.bin", use_mmap=False)
    finally:
        os.close(fd)
