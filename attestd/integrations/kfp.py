"""Kubeflow Pipelines (KFP v2): attested components, and the layout from a compiled pipeline.

A component's body runs as an attested stage; the stage attestation is an
output artifact of one step and an input artifact of the next::

    from kfp import dsl
    from kfp.dsl import Artifact, Dataset, Input, Model, Output

    @dsl.component(base_image="registry.example/attestd-kfp:1")
    def train(dataset: Input[Dataset], previous: Input[Artifact],
              model: Output[Model], attestation: Output[Artifact]) -> None:
        from attestd.integrations.kfp import kfp_stage

        with kfp_stage("train", inputs=[dataset], outputs=[model],
                       previous=previous, attestation=attestation, licence="Apache-2.0"):
            ...  # write model.path

    # in the pipeline: train(dataset=prep.outputs["dataset"], previous=prep.outputs["attestation"])

and, from the compiled pipeline (``kfp.compiler.Compiler().compile(p, "p.yaml")``)::

    attestctl layout from-kfp p.yaml --stage-template stage.toml -o layout.toml
    attestctl chain verify --layout layout.toml prepare.json train.json ...

KFP copies a component function's *source* into its container and drops its
decorators, so the stage is opened in the body (one ``with``), not by a
decorator around it. This module imports neither kfp nor PyYAML at import
time: the wrapper takes KFP artifacts by their ``.path``, and
:func:`layout_from_kfp` needs PyYAML (the ``kfp`` extra) only when called.
docs/kfp.md says what the derived layout can and cannot express.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

from attestd.client import DEFAULT_TIMEOUT_S
from attestd.errors import AttestdError
from attestd.pipeline import Artifact, ArtifactLike, StageHandle, stage

__all__ = [
    "MAX_SPEC_BYTES",
    "KfpDependencyError",
    "KfpSpecError",
    "KfpTask",
    "KfpUnsupportedError",
    "PathArtifact",
    "derive_layout_toml",
    "kfp_stage",
    "layout_from_kfp",
    "read_kfp_spec",
]

MAX_SPEC_BYTES: Final = 16 * 1024 * 1024
"""A compiled pipeline spec larger than this is refused (compiled specs are kilobytes)."""


class KfpSpecError(AttestdError):
    """A compiled KFP pipeline spec is unreadable or malformed; the message names what."""

    reason = "layout_source_invalid"


class KfpUnsupportedError(KfpSpecError):
    """A well-formed spec uses what a derived layout cannot express (a nested DAG: a loop,
    a condition, a sub-pipeline)."""

    reason = "layout_source_unsupported"


class KfpDependencyError(AttestdError):
    """Reading a KFP spec needs PyYAML, which the ``kfp`` extra installs."""

    reason = "kfp_unavailable"


# -- the component wrapper -------------------------------------------------------------


@runtime_checkable
class PathArtifact(Protocol):
    """What the wrapper needs of a KFP artifact (``Input[Dataset]``, ``Output[Model]``, ...)."""

    @property
    def path(self) -> str: ...


def _artifact(item: ArtifactLike | PathArtifact) -> ArtifactLike:
    if isinstance(item, Artifact | str | os.PathLike):
        return item
    if isinstance(item, PathArtifact):
        return item.path
    raise TypeError(f"not a path, attestd Artifact or KFP artifact: {item!r}")


def _path(item: str | os.PathLike[str] | PathArtifact | None) -> str | None:
    if item is None:
        return None
    if isinstance(item, str | os.PathLike):
        return os.fspath(item)
    return item.path


@contextmanager
def kfp_stage(
    name: str,
    *,
    inputs: Sequence[ArtifactLike | PathArtifact] = (),
    outputs: Sequence[ArtifactLike | PathArtifact] = (),
    previous: bytes | str | os.PathLike[str] | PathArtifact | None = None,
    attestation: str | os.PathLike[str] | PathArtifact | None = None,
    pipeline: str | None = None,
    licence: str | None = None,
    tags: Sequence[str] = (),
    run_id: str = "",
    socket: str | os.PathLike[str] | None = None,
    allow_unattested: bool = False,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Iterator[StageHandle]:
    """Run a KFP component's body as the attested stage ``name`` (its task name in the DAG).

    ``with kfp_stage("train", inputs=[dataset], outputs=[model], previous=previous,
    attestation=attestation): ...``. ``inputs``/``outputs`` take KFP artifacts
    (their ``.path``), paths or :class:`attestd.pipeline.Artifact`; ``previous``
    is the upstream step's attestation artifact (``None`` for a first step);
    ``attestation`` is the ``Output[Artifact]`` (or ``OutputPath``) it is written
    to. Everything else, errors included, is :func:`attestd.pipeline.stage`'s.
    """
    previous_value: bytes | str | None
    previous_value = previous if isinstance(previous, bytes) else _path(previous)
    with stage(
        name,
        pipeline=pipeline,
        inputs=[_artifact(i) for i in inputs],
        outputs=[_artifact(o) for o in outputs],
        licence=licence,
        tags=tags,
        previous=previous_value,
        run_id=run_id,
        attestation_path=_path(attestation),
        socket=socket,
        allow_unattested=allow_unattested,
        timeout=timeout,
    ) as handle:
        yield handle


# -- the compiled pipeline spec ----------------------------------------------------------


@dataclass(frozen=True)
class KfpTask:
    """One task of the pipeline's root DAG: a stage of the derived layout."""

    name: str
    component: str
    upstream: tuple[str, ...]
    """Tasks it depends on (``dependentTasks`` and the producers of its inputs), sorted."""
    artifact_inputs: tuple[tuple[str, str, str], ...]
    """``(input name, producer task, producer's output name)`` for each artifact edge."""


def _load_yaml(data: bytes, source: str) -> list[Any]:
    try:
        import yaml
    except ImportError as err:
        raise KfpDependencyError(
            "reading a KFP pipeline spec needs PyYAML: pip install 'attestd[kfp]'"
        ) from err

    class StrictLoader(yaml.SafeLoader):
        """SafeLoader that refuses a mapping with a repeated key (YAML keeps the last)."""

    def mapping(loader: StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
        keys = [loader.construct_object(key, deep=True) for key, _ in node.value]
        for key in keys:
            if keys.count(key) > 1:
                raise KfpSpecError(f"{source}: key {key!r} appears twice in one mapping")
        return dict(loader.construct_pairs(node, deep=True))

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    try:
        text = data.decode("utf-8")
        return list(yaml.load_all(text, Loader=StrictLoader))  # a SafeLoader subclass
    except UnicodeDecodeError as err:
        raise KfpSpecError(f"{source}: not UTF-8 text ({err.reason})") from err
    except yaml.YAMLError as err:
        raise KfpSpecError(f"{source}: not valid YAML: {err}") from err
    except RecursionError as err:
        raise KfpSpecError(f"{source}: YAML nested too deeply") from err


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise KfpSpecError(f"{where} must be a mapping with string keys")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise KfpSpecError(f"{where} must be a non-empty string")
    return value


def read_kfp_spec(data: bytes, source: str = "pipeline spec") -> tuple[str, tuple[KfpTask, ...]]:
    """The pipeline's name and its root DAG's tasks, in an order they may run in.

    ``name, tasks = read_kfp_spec(Path("p.yaml").read_bytes())``. Refuses
    (:class:`KfpSpecError`, ``layout_source_invalid``) anything that is not a
    compiled KFP v2 pipeline spec: wrong types, missing keys, a task naming an
    unknown component or task, a cycle; and (:class:`KfpUnsupportedError`) a
    nested DAG the layout cannot express.
    """
    if len(data) > MAX_SPEC_BYTES:
        raise KfpSpecError(f"{source}: {len(data)} bytes, more than {MAX_SPEC_BYTES}")
    documents = [d for d in _load_yaml(data, source) if d is not None]
    if not documents:
        raise KfpSpecError(f"{source}: empty")
    spec = _mapping(documents[0], f"{source}: the pipeline spec")
    for extra in documents[1:]:
        # kfp.compiler appends a platform spec (Kubernetes settings) as a second document.
        if set(_mapping(extra, f"{source}: a second document")) != {"platforms"}:
            raise KfpSpecError(f"{source}: a second document that is not a platform spec")
    info = _mapping(spec.get("pipelineInfo"), f"{source}: pipelineInfo")
    name = _string(info.get("name"), f"{source}: pipelineInfo.name")
    components = _mapping(spec.get("components", {}), f"{source}: components")
    root = _mapping(spec.get("root"), f"{source}: root")
    dag = _mapping(root.get("dag"), f"{source}: root.dag")
    raw_tasks = _mapping(dag.get("tasks"), f"{source}: root.dag.tasks")
    if not raw_tasks:
        raise KfpSpecError(f"{source}: root.dag.tasks is empty")
    executors = _mapping(
        _mapping(spec.get("deploymentSpec", {}), f"{source}: deploymentSpec").get("executors", {}),
        f"{source}: deploymentSpec.executors",
    )
    tasks = {
        task: _task(task, raw, components, executors, f"{source}: root.dag.tasks.{task}")
        for task, raw in raw_tasks.items()
    }
    for task in tasks.values():
        for up in task.upstream:
            if up not in tasks:
                raise KfpSpecError(f"{source}: task {task.name!r} depends on unknown task {up!r}")
    return name, _topological(tasks, source)


def _task(
    name: str,
    raw: Any,
    components: Mapping[str, Any],
    executors: Mapping[str, Any],
    where: str,
) -> KfpTask:
    task = _mapping(raw, where)
    ref = _mapping(task.get("componentRef"), f"{where}.componentRef")
    component_name = _string(ref.get("name"), f"{where}.componentRef.name")
    if component_name not in components:
        raise KfpSpecError(f"{where}: component {component_name!r} is not in components")
    component = _mapping(components[component_name], f"components.{component_name}")
    if "dag" in component:
        raise KfpUnsupportedError(
            f"{where}: component {component_name!r} is a nested DAG (a loop, condition or "
            "sub-pipeline); a derived layout has one stage per container task"
        )
    label = _string(component.get("executorLabel"), f"components.{component_name}.executorLabel")
    if label not in executors:
        raise KfpSpecError(f"components.{component_name}: executor {label!r} is not deployed")
    depends = task.get("dependentTasks", [])
    if not isinstance(depends, list):
        raise KfpSpecError(f"{where}.dependentTasks must be a list")
    upstream = {_string(d, f"{where}.dependentTasks[]") for d in depends}
    inputs = _mapping(task.get("inputs", {}), f"{where}.inputs")
    edges: list[tuple[str, str, str]] = []
    for input_name, spec in _mapping(
        inputs.get("artifacts", {}), f"{where}.inputs.artifacts"
    ).items():
        here = f"{where}.inputs.artifacts.{input_name}"
        spec = _mapping(spec, here)
        if "taskOutputArtifact" in spec:
            edge = _mapping(spec["taskOutputArtifact"], f"{here}.taskOutputArtifact")
            producer = _string(edge.get("producerTask"), f"{here}.producerTask")
            key = _string(edge.get("outputArtifactKey"), f"{here}.outputArtifactKey")
            edges.append((input_name, producer, key))
            upstream.add(producer)
    parameters = _mapping(inputs.get("parameters", {}), f"{where}.inputs.parameters")
    for parameter, spec in parameters.items():
        spec = _mapping(spec, f"{where}.inputs.parameters.{parameter}")
        if "taskOutputParameter" in spec:
            edge = _mapping(spec["taskOutputParameter"], f"{where}.inputs.parameters.{parameter}")
            upstream.add(_string(edge.get("producerTask"), f"{where}.{parameter}.producerTask"))
    if name in upstream:
        raise KfpSpecError(f"{where}: the task depends on itself")
    return KfpTask(name, component_name, tuple(sorted(upstream)), tuple(sorted(edges)))


def _topological(tasks: Mapping[str, KfpTask], source: str) -> tuple[KfpTask, ...]:
    """Kahn's order; among ready tasks, the spec's order, so the result is deterministic."""
    done: list[KfpTask] = []
    placed: set[str] = set()
    waiting = list(tasks.values())
    while waiting:
        ready = [t for t in waiting if set(t.upstream) <= placed]
        if not ready:
            names = ", ".join(sorted(t.name for t in waiting))
            raise KfpSpecError(f"{source}: the tasks {names} depend on each other (a cycle)")
        done.append(ready[0])
        placed.add(ready[0].name)
        waiting.remove(ready[0])
    return tuple(done)


# -- the derived layout ------------------------------------------------------------------

_TEMPLATE_TOP = {"pipeline", "allowed_licenses", "freshness", "artifacts", "stage"}
_TEMPLATE_STAGE = {"tee", "trust", "tdx", "snp", "agent_keys", "required_tags"}


def derive_layout_toml(
    pipeline: str, tasks: Sequence[KfpTask], template: Mapping[str, Any], source: str
) -> str:
    """The layout (TOML text) for ``tasks``: one stage each, ``after`` = its upstream tasks.

    ``template`` supplies what a pipeline spec does not say: the top-level keys
    of a layout (``allowed_licenses``, ``[freshness]``, ``[[artifacts]]``, and
    ``pipeline`` to override the spec's name) and a ``[stage]`` table (``tee``,
    ``trust``, ``tdx``, ``snp``, ``agent_keys``, ``required_tags``) given to
    every stage. Unknown template keys are :class:`KfpSpecError`.
    """
    unknown = set(template) - _TEMPLATE_TOP
    if unknown:
        raise KfpSpecError(f"stage template: unknown keys {sorted(unknown)}")
    stage_defaults = _mapping(template.get("stage", {}), "stage template: [stage]")
    unknown = set(stage_defaults) - _TEMPLATE_STAGE
    if unknown:
        raise KfpSpecError(f"stage template: [stage] has unknown keys {sorted(unknown)}")
    lines = [
        f"# Derived by `attestctl layout from-kfp` from {source}; docs/kfp.md.",
        f"pipeline = {_toml(template.get('pipeline', pipeline))}",
    ]
    top = {k: v for k, v in template.items() if k not in {"pipeline", "stage", "artifacts"}}
    _emit(lines, top, "")
    for rule in template.get("artifacts", []):
        lines += ["", "[[artifacts]]"]
        _emit(lines, _mapping(rule, "stage template: [[artifacts]]"), "artifacts")
    for task in tasks:
        lines += ["", "[[stages]]", f"name = {_toml(task.name)}"]
        lines.append(f"after = {_toml(list(task.upstream))}")
        # A KFP task's inputs come from any upstream task and the pipeline's own inputs,
        # never just "the predecessor's outputs": the artifact edges are checked by name
        # and digest (artifact_substituted) instead.
        lines.append("inputs_from_previous = false")
        for input_name, producer, key in task.artifact_inputs:
            lines.append(f"# artifact flow: {producer}.{key} -> {task.name}.{input_name}")
        _emit(lines, stage_defaults, "stages")
    return "\n".join(lines) + "\n"


def _emit(lines: list[str], table: Mapping[str, Any], prefix: str) -> None:
    """Scalars and arrays of ``table`` as ``key = value``, then its sub-tables as headers."""
    subtables = {k: v for k, v in table.items() if isinstance(v, dict)}
    for key, value in table.items():
        if key not in subtables:
            lines.append(f"{_key(key)} = {_toml(value)}")
    for key, value in subtables.items():
        header = f"{prefix}.{_key(key)}" if prefix else _key(key)
        lines.append(f"[{header}]")
        _emit(lines, value, header)


def _key(key: str) -> str:
    bare = key.replace("-", "").replace("_", "").isalnum() and key.isascii()
    return key if bare else json.dumps(key)


def _toml(value: Any) -> str:
    """A TOML value; JSON's string escapes are valid TOML basic-string escapes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise KfpSpecError(f"stage template: a value of type {type(value).__name__} is not supported")


def layout_from_kfp(spec: Path, template: Mapping[str, Any] | None = None) -> str:
    """Read the compiled pipeline at ``spec`` and derive its layout (TOML text).

    ``Path("layout.toml").write_text(layout_from_kfp(Path("p.yaml"), template))``;
    the result is then checked with :func:`attestd.verifier.layout.parse_layout`
    by the caller (``attestctl layout from-kfp`` does).
    """
    try:
        data = spec.read_bytes()
    except OSError as err:
        raise KfpSpecError(f"cannot read {spec}: {err.strerror or err}") from err
    name, tasks = read_kfp_spec(data, str(spec))
    return derive_layout_toml(name, tasks, template or {}, spec.name)
