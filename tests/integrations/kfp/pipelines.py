"""The KFP pipelines the tests run: prepare, then train and evaluate in parallel.

KFP copies each component's source into the step's process, so every body
imports what it uses. No ``from __future__ import annotations``: KFP reads the
artifact types from the annotations as objects.
"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

LICENCE = "Apache-2.0"


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def prepare(dataset: Output[Dataset], attestation: Output[Artifact]) -> None:
    from pathlib import Path

    from attestd.integrations.kfp import kfp_stage

    with kfp_stage("prepare", outputs=[dataset], attestation=attestation, licence="Apache-2.0"):
        Path(dataset.path).write_text("one\ntwo\nthree\n")


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def train(
    dataset: Input[Dataset],
    previous: Input[Artifact],
    model: Output[Model],
    attestation: Output[Artifact],
) -> None:
    from pathlib import Path

    from attestd.integrations.kfp import kfp_stage

    with kfp_stage(
        "train",
        inputs=[dataset],
        outputs=[model],
        previous=previous,
        attestation=attestation,
        licence="Apache-2.0",
    ):
        rows = len(Path(dataset.path).read_text().split())
        Path(model.path).write_text(f"weights for {rows} rows\n")


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def evaluate(
    dataset: Input[Dataset],
    previous: Input[Artifact],
    metrics: Output[Metrics],
    attestation: Output[Artifact],
) -> None:
    from pathlib import Path

    from attestd.integrations.kfp import kfp_stage

    with kfp_stage(
        "evaluate",
        inputs=[dataset],
        outputs=[metrics],
        previous=previous,
        attestation=attestation,
        licence="Apache-2.0",
    ):
        rows = len(Path(dataset.path).read_text().split())
        Path(metrics.path).write_text(f'{{"rows": {rows}}}\n')


@dsl.pipeline(name="kfp-attested")
def parallel_pipeline() -> None:
    """prepare -> {train, evaluate}: two branches that may run in either order."""
    prep = prepare()
    train(dataset=prep.outputs["dataset"], previous=prep.outputs["attestation"])
    evaluate(dataset=prep.outputs["dataset"], previous=prep.outputs["attestation"])


@dsl.pipeline(name="kfp-attested")
def serial_pipeline() -> None:
    """prepare -> evaluate -> train: train follows evaluate, which the parallel layout refuses."""
    prep = prepare()
    check = evaluate(dataset=prep.outputs["dataset"], previous=prep.outputs["attestation"])
    train(dataset=prep.outputs["dataset"], previous=check.outputs["attestation"])


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def tamper(dataset: Input[Dataset]) -> None:
    """An unattested step that rewrites prepare's dataset in place before train reads it."""
    from pathlib import Path

    Path(dataset.path).write_text("one\ntwo\nthree\nplanted\n")


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def evaluate_outside(
    dataset: Input[Dataset],
    previous: Input[Artifact],
    metrics: Output[Metrics],
    attestation: Output[Artifact],
) -> None:
    """evaluate's body on a machine with no agent: it runs, unattested, and attests nothing."""
    import os
    import tempfile
    from pathlib import Path

    from attestd.integrations.kfp import kfp_stage

    with kfp_stage(
        "evaluate",
        inputs=[dataset],
        outputs=[metrics],
        previous=previous,
        attestation=attestation,
        licence="Apache-2.0",
        # A short path (a Unix socket path has ~107 bytes) where nothing listens.
        socket=Path(tempfile.gettempdir()) / f"attestd-absent-{os.getpid()}.sock",
        allow_unattested=True,
    ) as handle:
        assert not handle.attested
        rows = len(Path(dataset.path).read_text().split())
        Path(metrics.path).write_text(f'{{"rows": {rows}}}\n')


@dsl.pipeline(name="kfp-attested")
def reduced_pipeline() -> None:
    """The parallel pipeline with its evaluate component removed from the spec."""
    prep = prepare()
    train(dataset=prep.outputs["dataset"], previous=prep.outputs["attestation"])


@dsl.pipeline(name="kfp-attested")
def swapped_pipeline() -> None:
    """The parallel pipeline, with prepare's dataset replaced between prepare and train."""
    prep = prepare()
    swap = tamper(dataset=prep.outputs["dataset"])
    train(dataset=prep.outputs["dataset"], previous=prep.outputs["attestation"]).after(swap)
    evaluate(dataset=prep.outputs["dataset"], previous=prep.outputs["attestation"]).after(swap)


@dsl.pipeline(name="kfp-attested")
def outside_pipeline() -> None:
    """The parallel pipeline whose evaluate step runs where no agent attests it."""
    prep = prepare()
    train(dataset=prep.outputs["dataset"], previous=prep.outputs["attestation"])
    evaluate_outside(dataset=prep.outputs["dataset"], previous=prep.outputs["attestation"])
