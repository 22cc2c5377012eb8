"""A published template: data prep -> train -> {evaluate, quantise} -> package -> sign on KFP v2.

Each component's body is one attested stage (``attestd.integrations.kfp.kfp_stage``);
each stage's attestation is an output artifact of its step and the ``previous``
input of the next. Compile it and derive its layout::

    python -c 'from kfp import compiler; from ml_lifecycle import ml_lifecycle; \
compiler.Compiler().compile(ml_lifecycle, "ml_lifecycle.yaml")'
    attestctl layout from-kfp ml_lifecycle.yaml \
        --stage-template ml_lifecycle.stage.toml -o ml_lifecycle.layout.toml

``ml_lifecycle.layout.toml`` beside this file is that layout (a test re-derives
it). Replace each body's ``...`` with the real work, ``base_image`` with an
image holding attestd[kfp], and the stage template's roots and launch values
with your confidential VMs' (docs/layout.md). The ``sign`` step attests the
release it hands to a model signer (e.g. ``model_signing``; docs/sigstore.md).

No ``from __future__ import annotations``: KFP reads the artifact types from
the annotations as objects.
"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

IMAGE = "registry.example/attestd-kfp:1"


@dsl.component(base_image=IMAGE)
def prepare_data(dataset: Output[Dataset], attestation: Output[Artifact]) -> None:
    from attestd.integrations.kfp import kfp_stage

    with kfp_stage("prepare-data", outputs=[dataset], attestation=attestation, licence="CC-BY-4.0"):
        ...  # write dataset.path


@dsl.component(base_image=IMAGE)
def train(
    dataset: Input[Dataset],
    previous: Input[Artifact],
    model: Output[Model],
    attestation: Output[Artifact],
) -> None:
    from attestd.integrations.kfp import kfp_stage

    with kfp_stage(
        "train",
        inputs=[dataset],
        outputs=[model],
        previous=previous,
        attestation=attestation,
        licence="Apache-2.0",
    ):
        ...  # read dataset.path, write model.path


@dsl.component(base_image=IMAGE)
def evaluate(
    model: Input[Model],
    previous: Input[Artifact],
    metrics: Output[Metrics],
    attestation: Output[Artifact],
) -> None:
    from attestd.integrations.kfp import kfp_stage

    with kfp_stage(
        "evaluate",
        inputs=[model],
        outputs=[metrics],
        previous=previous,
        attestation=attestation,
        licence="Apache-2.0",
    ):
        ...  # write metrics.path


@dsl.component(base_image=IMAGE)
def quantise(
    model: Input[Model],
    previous: Input[Artifact],
    quantised: Output[Model],
    attestation: Output[Artifact],
) -> None:
    from attestd.integrations.kfp import kfp_stage

    with kfp_stage(
        "quantise",
        inputs=[model],
        outputs=[quantised],
        previous=previous,
        attestation=attestation,
        licence="Apache-2.0",
    ):
        ...  # write quantised.path


@dsl.component(base_image=IMAGE)
def package(
    quantised: Input[Model],
    metrics: Input[Metrics],
    previous: Input[Artifact],
    release: Output[Artifact],
    attestation: Output[Artifact],
) -> None:
    from attestd.integrations.kfp import kfp_stage

    with kfp_stage(
        "package",
        inputs=[quantised, metrics],
        outputs=[release],
        previous=previous,
        attestation=attestation,
        licence="Apache-2.0",
    ):
        ...  # write release.path


@dsl.component(base_image=IMAGE)
def sign(
    release: Input[Artifact],
    previous: Input[Artifact],
    signature: Output[Artifact],
    attestation: Output[Artifact],
) -> None:
    from attestd.integrations.kfp import kfp_stage

    with kfp_stage(
        "sign",
        inputs=[release],
        outputs=[signature],
        previous=previous,
        attestation=attestation,
        licence="Apache-2.0",
    ):
        ...  # sign release.path, write signature.path


@dsl.pipeline(name="ml-lifecycle")
def ml_lifecycle() -> None:
    """prepare-data -> train -> {evaluate, quantise} -> package -> sign."""
    data = prepare_data()
    fit = train(dataset=data.outputs["dataset"], previous=data.outputs["attestation"])
    check = evaluate(model=fit.outputs["model"], previous=fit.outputs["attestation"])
    small = quantise(model=fit.outputs["model"], previous=fit.outputs["attestation"])
    bundle = package(
        quantised=small.outputs["quantised"],
        metrics=check.outputs["metrics"],
        previous=small.outputs["attestation"],
    )
    sign(release=bundle.outputs["release"], previous=bundle.outputs["attestation"])
