"""Shared fixtures: the real hardware vectors in ../shared/vectors."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
VECTORS_DIR = REPO_ROOT.parent / "shared" / "vectors"


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    """The real TEE vectors; tests that need them skip, loudly, when absent."""
    if not VECTORS_DIR.is_dir():
        pytest.skip(f"real TEE vectors not found at {VECTORS_DIR} (see its README)")
    return VECTORS_DIR
