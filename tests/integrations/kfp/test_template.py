"""The published template (docs/templates/ml_lifecycle.py) compiles, and its shipped layout is
exactly what `attestctl layout from-kfp` derives from it today."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from attestd.cli import main

pytest.importorskip("kfp")
from kfp import compiler

TEMPLATES = Path(__file__).resolve().parents[3] / "docs" / "templates"


def test_the_shipped_template_layout_is_the_one_derived_from_the_template(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("ml_lifecycle", TEMPLATES / "ml_lifecycle.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    compiled = tmp_path / "ml_lifecycle.yaml"
    compiler.Compiler().compile(module.ml_lifecycle, str(compiled))
    out = tmp_path / "layout.toml"
    template = TEMPLATES / "ml_lifecycle.stage.toml"
    argv = ["layout", "from-kfp", str(compiled), "--stage-template", str(template), "-o", str(out)]
    assert main(argv) == 0
    shipped = (TEMPLATES / "ml_lifecycle.layout.toml").read_text()
    assert out.read_text() == shipped, "re-derive docs/templates/ml_lifecycle.layout.toml"
    assert 'name = "package"\nafter = ["evaluate", "quantise"]' in shipped
