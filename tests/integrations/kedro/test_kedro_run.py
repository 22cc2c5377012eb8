"""Real Kedro runs (SequentialRunner) whose nodes a real agent on simulated TDX attests
through :class:`AttestdHooks`, verified against the layout ``attestctl layout from-kedro``
derives from the same pipeline object.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from attestd.cli import main
from attestd.integrations.kedro import KedroRunnerError, attestation_file
from attestd.verifier.chain import verify_chain
from attestd.verifier.layout import load_layout
from tests.harness import AgentProcess
from tests.pipeline.test_pipeline_api import last_stage_event

pytest.importorskip("kedro")
from kedro.framework.hooks import hook_impl
from kedro.runner import SequentialRunner

from tests.integrations.kedro.pipelines import (
    PIPELINE,
    REFERENCE,
    STAGES,
    broken_pipeline,
    catalog,
    hooks_for,
    parallel_pipeline,
    stage_template,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def layout(agent: AgentProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("layout")
    template = stage_template(agent, directory)
    out = directory / "layout.toml"
    argv = ["layout", "from-kedro", REFERENCE, "--stage-template", str(template)]
    assert main([*argv, "--pipeline", PIPELINE, "-o", str(out)]) == 0
    return out


def test_a_parallel_kedro_run_verifies_against_the_layout_from_its_pipeline(
    agent: AgentProcess, layout: Path
) -> None:
    work = agent.models / "happy"
    hooks, manager = hooks_for(agent, work / "attestations")
    SequentialRunner().run(parallel_pipeline(), catalog(work / "data"), manager)

    assert set(hooks.attestations) == set(STAGES)
    files = [attestation_file(work / "attestations", s) for s in STAGES]
    assert [f.read_bytes() for f in files] == [hooks.attestations[s] for s in STAGES]
    derived = load_layout(layout)
    assert {s.name: s.after for s in derived.stages} == {
        "prepare": (),
        "train": ("prepare",),
        "evaluate": ("prepare",),
        "package": ("evaluate", "train"),
    }
    result = verify_chain([f.read_bytes() for f in files], derived, labels=list(STAGES))
    assert result.affirming, result.render_table()
    assert main(["chain", "verify", "--layout", str(layout), *map(str, files)]) == 0
    # A session's next run starts afresh: nothing links to this run's producers.
    manager.hook.before_pipeline_run(run_params={}, pipeline=None, catalog=None)
    assert hooks.attestations == {}


def test_a_dataset_changed_between_nodes_is_refused(agent: AgentProcess, layout: Path) -> None:
    work = agent.models / "tampered"
    _, manager = hooks_for(agent, work / "attestations")
    data = work / "data"

    class Tamper:
        """Swaps the model file after train's stage ended, before package loads it."""

        @hook_impl
        def before_dataset_loaded(self, dataset_name: str) -> None:
            if dataset_name == "model":
                (data / "model.txt").write_text("weights: swapped\n")

    manager.register(Tamper())
    SequentialRunner().run(parallel_pipeline(), catalog(data), manager)

    files = [attestation_file(work / "attestations", s).read_bytes() for s in STAGES]
    result = verify_chain(files, load_layout(layout), labels=list(STAGES))
    assert not result.affirming
    package = next(s for s in result.stages if s.stage == "package")
    assert "artifact_substituted" in package.reasons, result.render_table()


def test_a_node_that_raises_leaves_an_aborted_stage_and_no_attestation(
    agent: AgentProcess,
) -> None:
    work = agent.models / "broken"
    hooks, manager = hooks_for(agent, work / "attestations")
    with pytest.raises(RuntimeError, match="out of memory"):
        SequentialRunner().run(broken_pipeline(), catalog(work / "data"), manager)

    assert set(hooks.attestations) == {"prepare", "evaluate"}  # evaluate sorts first
    assert not attestation_file(work / "attestations", "train").exists()
    operation, content = last_stage_event(agent)
    assert (operation, content["stage"]) == ("abort", "train")
    assert content["reason"] == "exception builtins.RuntimeError"
    # The aborted stage is closed: the next run's first node begins.
    again = agent.models / "after-abort"
    hooks, manager = hooks_for(agent, again / "attestations")
    SequentialRunner().run(parallel_pipeline(), catalog(again / "data"), manager)
    assert set(hooks.attestations) == set(STAGES)


def test_async_io_is_refused_before_any_stage_begins(agent: AgentProcess) -> None:
    work = agent.models / "async"
    hooks, manager = hooks_for(agent, work / "attestations")
    with pytest.raises(KedroRunnerError, match="async"):
        SequentialRunner(is_async=True).run(parallel_pipeline(), catalog(work / "data"), manager)
    assert hooks.attestations == {}
