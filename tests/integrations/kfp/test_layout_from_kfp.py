"""``attestctl layout from-kfp``: strict reading of compiled specs, and the ``after`` rule."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from attestd.cli import main
from attestd.integrations.kfp import (
    KfpSpecError,
    KfpUnsupportedError,
    derive_layout_toml,
    read_kfp_spec,
)
from attestd.verifier.layout import LayoutError, parse_layout

SPEC = """\
pipelineInfo: {name: demo}
components:
  comp-a: {executorLabel: exec-a}
  comp-b: {executorLabel: exec-b}
deploymentSpec:
  executors:
    exec-a: {container: {image: python:3.11}}
    exec-b: {container: {image: python:3.11}}
root:
  dag:
    tasks:
      b:
        componentRef: {name: comp-b}
        dependentTasks: [a]
        inputs:
          artifacts:
            data: {taskOutputArtifact: {outputArtifactKey: out, producerTask: a}}
      a:
        componentRef: {name: comp-a}
"""


def test_tasks_come_out_in_an_order_they_may_run_in_with_their_upstream() -> None:
    name, tasks = read_kfp_spec(SPEC.encode())
    assert name == "demo"
    assert [(t.name, t.upstream) for t in tasks] == [("a", ()), ("b", ("a",))]
    assert tasks[1].artifact_inputs == (("data", "a", "out"),)
    text = derive_layout_toml(name, tasks, {"stage": {"tee": ["tdx"]}}, "p.yaml")
    document = tomllib.loads(text)
    assert [s["after"] for s in document["stages"]] == [[], ["a"]]
    assert "# artifact flow: a.out -> b.data" in text


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"a: [", "not valid YAML"),
        (b"", "empty"),
        (b"- 1\n", "the pipeline spec must be a mapping"),
        (b"pipelineInfo: {name: x}\npipelineInfo: {name: y}\n", "appears twice"),
        (b"pipelineInfo: {}\n", "pipelineInfo.name"),
        (SPEC.replace("[a]", "[zz]").encode(), "unknown task 'zz'"),
        (SPEC.replace("name: comp-b}", "name: comp-x}").encode(), "not in components"),
        (SPEC.replace("exec-b: {container", "exec-q: {container").encode(), "not deployed"),
        (
            SPEC.replace(
                "componentRef: {name: comp-a}",
                "componentRef: {name: comp-a}\n        dependentTasks: [b]",
            ).encode(),
            "a cycle",
        ),
        (SPEC.replace("    tasks:\n", "    tasks: 3\n    x:\n").encode(), "must be a mapping"),
        (SPEC.encode() + b"---\nfoo: 1\n", "not a platform spec"),
    ],
)
def test_a_malformed_spec_is_refused_with_a_named_reason(spec: bytes, needle: str) -> None:
    with pytest.raises(KfpSpecError) as caught:
        read_kfp_spec(spec, "p.yaml")
    assert caught.value.reason == "layout_source_invalid"
    assert needle in caught.value.message


def test_a_nested_dag_is_unsupported_not_misread() -> None:
    spec = SPEC.replace("comp-b: {executorLabel: exec-b}", "comp-b: {dag: {tasks: {}}}")
    with pytest.raises(KfpUnsupportedError) as caught:
        read_kfp_spec(spec.encode())
    assert caught.value.reason == "layout_source_unsupported"


def test_the_cli_refuses_a_malformed_spec_with_exit_2_and_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "p.yaml"
    spec.write_text("root: {dag: {tasks: {}}}\npipelineInfo: {name: x}\n")
    assert main(["layout", "from-kfp", str(spec)]) == 2
    assert "layout_source_invalid" in capsys.readouterr().err


def test_an_unknown_template_key_is_refused(tmp_path: Path) -> None:
    _, tasks = read_kfp_spec(SPEC.encode())
    with pytest.raises(KfpSpecError, match="unknown keys"):
        derive_layout_toml("demo", tasks, {"stages": []}, "p.yaml")


def _layout(after_b: str) -> dict[str, object]:
    stage = '[[stages]]\nname = "{}"\ntee = ["tdx"]\n{}\n[stages.trust.tdx]\nroot = "intel"\n'
    text = 'pipeline = "p"\n' + stage.format("a", "after = []") + stage.format("b", after_b)
    return tomllib.loads(text)


def test_after_must_name_stages_listed_before() -> None:
    parsed = parse_layout(_layout('after = ["a"]'), source=Path("l.toml"))
    assert [s.after for s in parsed.stages] == [(), ("a",)]
    with pytest.raises(LayoutError, match="not a stage listed before it"):
        parse_layout(_layout('after = ["b"]'), source=Path("l.toml"))
    with pytest.raises(LayoutError, match="repeats"):
        parse_layout(_layout('after = ["a", "a"]'), source=Path("l.toml"))
