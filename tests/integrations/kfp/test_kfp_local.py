"""Real KFP pipelines (``kfp.local``, SubprocessRunner) whose steps a real agent on simulated
TDX attests, verified against the layout ``attestctl layout from-kfp`` derives from the
same pipeline compiled with ``kfp.compiler``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attestd.cli import main
from attestd.verifier.chain import verify_chain
from attestd.verifier.layout import load_layout
from tests.harness import MRTD, RTMRS, AgentProcess

kfp = pytest.importorskip("kfp")
from kfp import compiler, local  # noqa: E402

from tests.integrations.kfp.pipelines import (  # noqa: E402
    outside_pipeline,
    parallel_pipeline,
    reduced_pipeline,
    serial_pipeline,
    swapped_pipeline,
)

pytestmark = pytest.mark.slow
PIPELINE = "kfp-attested"
STAGES = ("prepare", "train", "evaluate")


@pytest.fixture(scope="module")
def layout(agent: AgentProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layout derived from the compiled parallel pipeline, for this agent's TEE."""
    directory = tmp_path_factory.mktemp("layout")
    spec = directory / "pipeline.yaml"
    compiler.Compiler().compile(parallel_pipeline, str(spec))
    template = directory / "stage.toml"
    reference = [f'mrtd = ["{MRTD}"]'] + [f'rtmr{i} = ["{v}"]' for i, v in enumerate(RTMRS)]
    template.write_text(
        "\n".join(
            [
                'allowed_licenses = ["Apache-2.0"]',
                "[stage]",
                'tee = ["tdx"]',
                "[stage.trust.tdx]",
                'root = "simulated"',
                f'simulated_root = "{agent.simulated_root()}"',
                "[stage.tdx]",
                *reference,
            ]
        )
        + "\n"
    )
    out = directory / "layout.toml"
    argv = ["layout", "from-kfp", str(spec), "--stage-template", str(template), "-o", str(out)]
    assert main(argv) == 0
    return out


def run_pipeline(
    agent: AgentProcess,
    name: str,
    pipeline: Callable[[], object],
    monkeypatch: pytest.MonkeyPatch,
    stages: tuple[str, ...] = STAGES,
) -> dict[str, bytes]:
    """Run ``pipeline`` locally, outputs in the agent's artifact root; each step's attestation."""
    root = agent.models / name
    root.mkdir()
    monkeypatch.setenv("ATTESTD_SOCKET", str(agent.socket_path))
    monkeypatch.setenv("ATTESTD_PIPELINE", PIPELINE)
    # The steps run `python3 -m kfp.dsl.executor_main`: this interpreter, with attestd.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    pipeline()
    found = {p.parent.name: p.read_bytes() for p in root.glob("*/*/attestation")}
    assert set(found) == set(stages), f"attestations of {sorted(found)} under {root}"
    return found


def test_a_parallel_kfp_run_verifies_against_the_layout_from_its_spec(
    agent: AgentProcess, layout: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    found = run_pipeline(agent, "parallel", parallel_pipeline, monkeypatch)
    derived = load_layout(layout)
    assert derived.stages[0].name == "prepare"
    assert {s.name: s.after for s in derived.stages} == {
        "prepare": (),
        "train": ("prepare",),
        "evaluate": ("prepare",),
    }
    result = verify_chain(list(found.values()), derived, labels=list(found))
    assert result.affirming, result.render_table()
    files = []
    for stage, data in found.items():
        (tmp_path / f"{stage}.json").write_bytes(data)
        files.append(str(tmp_path / f"{stage}.json"))
    assert main(["chain", "verify", "--layout", str(layout), *files]) == 0
    # The same layout, signed by the producer, travels as an in-toto attestation.
    key = tmp_path / "producer.key"
    key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    signed = layout.parent / "layout.intoto.json"
    assert main(["layout", "sign", str(layout), "--key", str(key), "-o", str(signed)]) == 0
    argv = ["chain", "verify", "--layout-attestation", str(signed), "--layout-key", str(key)]
    assert main([*argv, *files]) == 0


def test_a_run_in_another_order_or_with_a_stage_missing_is_refused(
    agent: AgentProcess, layout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The serial pipeline has the same steps, but train follows evaluate, not prepare.
    found = run_pipeline(agent, "serial", serial_pipeline, monkeypatch)
    derived = load_layout(layout)
    result = verify_chain(list(found.values()), derived, labels=list(found))
    assert not result.affirming
    assert "stage_out_of_order" in result.reasons, result.render_table()
    train = next(s for s in result.stages if s.stage == "train")
    assert "stage_out_of_order" in train.reasons
    # Without evaluate's attestation: a stage of the layout is missing.
    partial = [found["prepare"], found["train"]]
    missing = verify_chain(partial, derived, labels=["prepare", "train"])
    assert "stage_missing" in missing.reasons


def test_a_run_of_the_pipeline_with_a_component_removed_is_refused_stage_missing(
    agent: AgentProcess, layout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The layout comes from the full spec; this run's spec has no evaluate component.
    found = run_pipeline(agent, "reduced", reduced_pipeline, monkeypatch, ("prepare", "train"))
    result = verify_chain(list(found.values()), load_layout(layout), labels=list(found))
    assert not result.affirming
    assert result.reasons == ("stage_missing",), result.render_table()
    assert "evaluate" in result.render_table()


def test_a_dataset_swapped_between_attested_steps_is_refused_artifact_substituted(
    agent: AgentProcess, layout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An unattested step rewrites prepare's dataset before train and evaluate read it.
    found = run_pipeline(agent, "swapped", swapped_pipeline, monkeypatch)
    result = verify_chain(list(found.values()), load_layout(layout), labels=list(found))
    assert not result.affirming
    assert "artifact_substituted" in result.reasons, result.render_table()
    refused = {s.stage for s in result.stages if "artifact_substituted" in s.reasons}
    assert refused == {"train", "evaluate"}, result.render_table()
    prepare = next(s for s in result.stages if s.stage == "prepare")
    assert prepare.reasons == (), result.render_table()


def test_a_step_run_outside_an_attested_agent_leaves_its_stage_missing(
    agent: AgentProcess,
    layout: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # evaluate runs with allow_unattested where no agent listens: it runs, attests nothing.
    found = run_pipeline(agent, "outside", outside_pipeline, monkeypatch, ("prepare", "train"))
    metrics = list((agent.models / "outside").glob("*/evaluate-outside/metrics"))
    assert len(metrics) == 1 and metrics[0].read_text() == '{"rows": 3}\n'
    result = verify_chain(list(found.values()), load_layout(layout), labels=list(found))
    assert result.reasons == ("stage_missing",), result.render_table()
    files = []
    for stage, data in found.items():
        (tmp_path / f"{stage}.json").write_bytes(data)
        files.append(str(tmp_path / f"{stage}.json"))
    capsys.readouterr()
    assert main(["chain", "verify", "--layout", str(layout), *files]) == 1
    assert "stage_missing: no attestation of stage(s) evaluate" in capsys.readouterr().out
