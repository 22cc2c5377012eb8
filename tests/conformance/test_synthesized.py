"""Synthesized manifest inputs: the loader's refusals, and the runner's materialized file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from attestd.conformance.manifest import ManifestError, case_inputs, load_suite


def _suite(tmp_path: Path, spec: Any) -> Path:
    case = {
        "id": "evidence/x",
        "part": "evidence",
        "kind": "evidence",
        "tests": "t",
        "docs": "docs/policy.md#x",
        "inputs": {"collateral_file": spec},
        "now": "2025-02-04T00:00:00Z",
        "expect": {"outcome": "accept"},
    }
    document = {"suite": "attestd-conformance", "version": "1.3.0", "seed": "s", "cases": [case]}
    (tmp_path / "manifest.json").write_text(json.dumps(document))
    return tmp_path


def test_synthesized_input_is_written_for_the_run(tmp_path: Path) -> None:
    suite = load_suite(_suite(tmp_path, {"synthesize": {"size": 3000000, "byte": "20"}}))
    with case_inputs(suite.cases[0], suite.root) as inputs:
        path = inputs["collateral_file"]
        assert path.name == "collateral_file"
        assert path.read_bytes() == b" " * 3000000
    assert not path.exists()


@pytest.mark.parametrize(
    "spec",
    [
        {"synthesize": {"size": 0, "byte": "20"}},
        {"synthesize": {"size": 64 * 1024 * 1024 + 1, "byte": "20"}},
        {"synthesize": {"size": True, "byte": "20"}},
        {"synthesize": {"size": 10, "byte": "2G"}},
        {"synthesize": {"size": 10, "byte": "AB"}},
        {"synthesize": {"size": 10}},
        {"synthesize": {"size": 10, "byte": "20"}, "name": "x"},
    ],
)
def test_bad_synthesized_input_is_refused(tmp_path: Path, spec: Any) -> None:
    with pytest.raises(ManifestError):
        load_suite(_suite(tmp_path, spec))
