"""The real-vector fixture skips on a developer's machine but fails a CI run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import locate_vectors


def test_present_vectors_are_returned(tmp_path: Path) -> None:
    assert locate_vectors(tmp_path, {"CI": "true"}) == tmp_path
    assert locate_vectors(tmp_path, {}) == tmp_path


@pytest.mark.parametrize("environ", [{}, {"CI": ""}, {"CI": "false"}, {"CI": "0"}])
def test_missing_vectors_skip_outside_ci(tmp_path: Path, environ: dict[str, str]) -> None:
    with pytest.raises(pytest.skip.Exception, match="vectors not found"):
        locate_vectors(tmp_path / "absent", environ)


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes"])
def test_missing_vectors_fail_in_ci(tmp_path: Path, value: str) -> None:
    with pytest.raises(pytest.fail.Exception, match="fail instead of skipping") as caught:
        locate_vectors(tmp_path / "absent", {"CI": value})
    assert str(tmp_path / "absent") in str(caught.value)
