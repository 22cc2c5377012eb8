"""`make demo-kedro`: a Kedro pipeline whose nodes attest themselves, checked against itself.

One agent on simulated TDX; the pipeline of tests/integrations/kedro/pipelines.py
(prepare -> train and evaluate in parallel -> package), run three times with
Kedro's SequentialRunner and :class:`attestd.integrations.kedro.AttestdHooks`:

1. as written: the chain verifies against the layout ``attestctl layout from-kedro``
   derived from the same pipeline object;
2. with the model file swapped between train and package: refused
   (``artifact_substituted``);
3. with a train node that raises: train's stage is aborted and leaves no attestation.

The last line is ``kedro demo: OK`` when all three came out as expected.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the pipeline and the agent harness live under tests/

from kedro.framework.hooks import hook_impl  # noqa: E402
from kedro.runner import SequentialRunner  # noqa: E402

from attestd.cli import main as attestctl  # noqa: E402
from attestd.integrations.kedro import attestation_file  # noqa: E402
from tests.harness import AgentProcess  # noqa: E402
from tests.integrations.kedro.pipelines import (  # noqa: E402
    PIPELINE,
    REFERENCE,
    STAGES,
    broken_pipeline,
    catalog,
    hooks_for,
    parallel_pipeline,
    stage_template,
)


class SwapModel:
    """Overwrites the model file after train's stage ended, before package loads it."""

    def __init__(self, data: Path) -> None:
        self.data = data

    @hook_impl
    def before_dataset_loaded(self, dataset_name: str) -> None:
        if dataset_name == "model":
            (self.data / "model.txt").write_text("weights: from somewhere else\n")


def verify(layout: Path, attestations: Path) -> int:
    files = [str(attestation_file(attestations, s)) for s in STAGES]
    print(
        f"$ attestctl chain verify --layout {layout.name} " + " ".join(Path(f).name for f in files)
    )
    return attestctl(["chain", "verify", "--layout", str(layout), *files])


def demo(work: Path) -> bool:
    agent = AgentProcess(work / "agent")
    agent.start()
    try:
        layout = work / "layout.toml"
        template = stage_template(agent, work)
        print(f"$ attestctl layout from-kedro {REFERENCE} --stage-template stage.toml")
        argv = ["layout", "from-kedro", REFERENCE, "--stage-template", str(template)]
        if attestctl([*argv, "--pipeline", PIPELINE, "-o", str(layout)]) != 0:
            return False
        print(layout.read_text())

        print("== run 1: the pipeline as written")
        run = agent.models / "run1"
        _, hooks = hooks_for(agent, run / "attestations")
        SequentialRunner().run(parallel_pipeline(), catalog(run / "data"), hooks)
        first = verify(layout, run / "attestations") == 0
        print(f"-> run 1: {'verified, as expected' if first else 'NOT verified: unexpected'}\n")

        print("== run 2: the model file swapped between train and package")
        run = agent.models / "run2"
        _, hooks = hooks_for(agent, run / "attestations")
        hooks.register(SwapModel(run / "data"))
        SequentialRunner().run(parallel_pipeline(), catalog(run / "data"), hooks)
        second = verify(layout, run / "attestations") == 1
        print(f"-> run 2: {'refused, as expected' if second else 'NOT refused: unexpected'}\n")

        print("== run 3: train raises")
        run = agent.models / "run3"
        attested, hooks = hooks_for(agent, run / "attestations")
        try:
            SequentialRunner().run(broken_pipeline(), catalog(run / "data"), hooks)
            third = False
        except RuntimeError as err:
            left = sorted(attested.attestations)
            third = (
                "train" not in left and not attestation_file(run / "attestations", "train").exists()
            )
            print(f"the run failed ({err}); attested stages: {left}; train's stage was aborted")
        print(f"-> run 3: {'no attestation of train, as expected' if third else 'unexpected'}\n")
        return first and second and third
    finally:
        agent.stop()


def main() -> int:
    logging.getLogger("kedro").setLevel(logging.WARNING)  # its per-node INFO lines drown the demo
    with tempfile.TemporaryDirectory(prefix="attestd-kedro-demo-") as work:
        ok = demo(Path(work))
    print("kedro demo: OK" if ok else "kedro demo: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
