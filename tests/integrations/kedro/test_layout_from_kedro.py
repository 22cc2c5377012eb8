"""``attestctl layout from-kedro``: the layout of a Kedro pipeline object, and named refusals."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from attestd.cli import main
from attestd.integrations.kedro import (
    KedroPipelineError,
    KedroUnsupportedError,
    kedro_tasks,
    layout_from_kedro,
    load_pipeline,
)

pytest.importorskip("kedro")
from tests.integrations.kedro.pipelines import parallel_pipeline

MODULE = "tests.integrations.kedro.pipelines"


def test_the_tasks_follow_the_producers_of_their_inputs() -> None:
    tasks = {t.name: t for t in kedro_tasks(parallel_pipeline())}
    assert [t for t in tasks] == ["prepare", "evaluate", "train", "package"]
    assert tasks["prepare"].upstream == ()
    assert tasks["evaluate"].upstream == ("prepare",)
    assert tasks["evaluate"].artifact_inputs == (
        ("dataset", "prepare", "dataset"),
        ("rows", "prepare", "rows"),
    )
    assert tasks["package"].upstream == ("evaluate", "train")


def test_the_derived_layout_names_its_source_and_takes_the_template() -> None:
    template = {"allowed_licenses": ["MIT"], "stage": {"tee": ["tdx"]}}
    text = layout_from_kedro(f"{MODULE}:parallel_pipeline", template)
    assert text.startswith("# Derived by `attestctl layout from-kedro` from ")
    layout = tomllib.loads(text)
    assert layout["pipeline"] == "parallel_pipeline"
    assert layout["allowed_licenses"] == ["MIT"]
    assert [(s["name"], s["after"], s["tee"]) for s in layout["stages"]] == [
        ("prepare", [], ["tdx"]),
        ("evaluate", ["prepare"], ["tdx"]),
        ("train", ["prepare"], ["tdx"]),
        ("package", ["evaluate", "train"], ["tdx"]),
    ]
    assert "# artifact flow: train.model -> package.model" in text


@pytest.mark.parametrize(
    ("reference", "error", "message"),
    [
        ("no-colon", KedroPipelineError, "expected MODULE:OBJECT"),
        (":parallel_pipeline", KedroPipelineError, "expected MODULE:OBJECT"),
        ("tests.integrations.kedro.nowhere:p", KedroPipelineError, "cannot import"),
        (f"{MODULE}:absent", KedroPipelineError, "has no 'absent'"),
        (f"{MODULE}:NOT_A_PIPELINE", KedroPipelineError, "'int' is not a kedro Pipeline"),
        (f"{MODULE}:EMPTY", KedroPipelineError, "no nodes"),
        (f"{MODULE}:badly_named_pipeline", KedroUnsupportedError, "not a valid stage name"),
    ],
)
def test_malformed_references_and_pipelines_are_refused_with_a_reason(
    reference: str, error: type[KedroPipelineError], message: str
) -> None:
    with pytest.raises(error, match=message) as refused:
        layout_from_kedro(reference)
    assert refused.value.reason == error.reason
    assert refused.type is error


def test_load_pipeline_calls_a_factory() -> None:
    name, pipeline = load_pipeline(f"{MODULE}:parallel_pipeline")
    assert (name, len(pipeline.nodes)) == ("parallel_pipeline", 4)


def test_the_command_writes_a_layout_or_refuses_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "layout.toml"
    template = tmp_path / "stage.toml"
    template.write_text('[stage]\ntee = ["tdx"]\n[stage.trust.tdx]\nroot = "intel"\n')
    argv = ["layout", "from-kedro", f"{MODULE}:parallel_pipeline", "--pipeline", "p"]
    assert main([*argv, "--stage-template", str(template), "-o", str(out)]) == 0
    assert tomllib.loads(out.read_text())["pipeline"] == "p"
    assert main(["layout", "from-kedro", f"{MODULE}:badly_named_pipeline"]) == 2
    assert "layout_source_unsupported" in capsys.readouterr().err
    template.write_text("[stage]\nsurprise = 1\n")
    assert main([*argv, "--stage-template", str(template)]) == 2
    assert "unknown keys" in capsys.readouterr().err
