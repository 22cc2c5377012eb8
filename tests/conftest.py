"""Shared fixtures: the real hardware vectors in ../shared/vectors."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
VECTORS_DIR = REPO_ROOT.parent / "shared" / "vectors"


def in_ci(environ: Mapping[str, str]) -> bool:
    """Whether this run is a CI job (GitHub Actions, GitLab CI and others set CI=true)."""
    return environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def locate_vectors(directory: Path, environ: Mapping[str, str]) -> Path:
    """``directory`` if it holds the vectors; else skip, or fail in CI.

    On a laptop without the vectors a skip is the right answer. In CI it would let a
    broken checkout pass green with a few hundred tests silently not run, so there
    the missing directory is an error.
    """
    if directory.is_dir():
        return directory
    missing = f"real TEE vectors not found at {directory} (see its README)"
    if in_ci(environ):
        pytest.fail(
            f"{missing}; CI is set, so the tests that need them fail instead of skipping: "
            "check out the shared vectors next to the repository",
            pytrace=False,
        )
    pytest.skip(missing)


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    """The real TEE vectors; tests that need them skip, loudly, when absent (fail in CI)."""
    return locate_vectors(VECTORS_DIR, os.environ)
