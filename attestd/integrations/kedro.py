"""Kedro: each node an attested stage (hooks), and the layout from the pipeline object.

Register the hooks the Kedro way, in the project's ``settings.py``::

    from attestd.integrations.kedro import AttestdHooks

    HOOKS = (AttestdHooks("attestations", pipeline="churn", licence="Apache-2.0"),)

or hand them to a runner directly::

    from kedro.framework.hooks.manager import _create_hook_manager
    from kedro.runner import SequentialRunner

    hooks = _create_hook_manager()
    hooks.register(AttestdHooks(tmp / "attestations", pipeline="churn"))
    SequentialRunner().run(pipeline, catalog, hooks)

and derive the layout the run is checked against from the same pipeline::

    attestctl layout from-kedro my_project.pipelines:training --stage-template stage.toml \\
        -o layout.toml
    attestctl chain verify --layout layout.toml attestations/*.attestation.json

A node's stage is begun in ``before_node_run`` (its inputs measured), and ended
once Kedro has saved every output (``after_dataset_saved``; Kedro calls
``after_node_run`` *before* it saves, when output files do not exist yet), so
the outputs are measured as written. A node that raises aborts its stage
(``on_node_error``). The stage links to the attestation of the node that
produced one of its inputs: of several, the one that ended last in this run.

Only datasets with a local ``filepath`` are measured; in-memory datasets
(``MemoryDataset``, parameters) never leave the attested process and are not
measured. A versioned or remote dataset is refused. Nodes run one at a time
(``SequentialRunner``): the agent holds one open stage. docs/kedro.md says more.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from attestd.client import DEFAULT_TIMEOUT_S
from attestd.errors import AttestdError
from attestd.evidence.provenance import NAME_PATTERN
from attestd.integrations.kfp import KfpTask, derive_layout_toml
from attestd.pipeline import PipelineError, StageHandle, stage

if TYPE_CHECKING:
    from kedro.framework.hooks import hook_impl
    from kedro.pipeline import Pipeline
    from kedro.pipeline.node import Node
else:
    try:
        from kedro.framework.hooks import hook_impl
    except ImportError:  # the hooks need kedro; the errors and the CLI's refusal do not

        def hook_impl(function):
            return function


__all__ = [
    "ATTESTATION_SUFFIX",
    "AttestdHooks",
    "KedroDatasetError",
    "KedroDependencyError",
    "KedroPipelineError",
    "KedroRunnerError",
    "KedroUnsupportedError",
    "attestation_file",
    "kedro_tasks",
    "layout_from_kedro",
    "load_pipeline",
]

ATTESTATION_SUFFIX: Final = ".attestation.json"
"""A node's attestation is ``<node name, percent-quoted>.attestation.json`` in the directory."""


class KedroPipelineError(AttestdError):
    """A Kedro pipeline cannot be read as a layout source; the message names why."""

    reason = "layout_source_invalid"


class KedroUnsupportedError(KedroPipelineError):
    """A well-formed pipeline uses what a derived layout cannot express (a node name that
    cannot be a stage name: Kedro's names are A-Z a-z 0-9 - _ . of any length, a stage's 128)."""

    reason = "layout_source_unsupported"


class KedroDependencyError(AttestdError):
    """The Kedro integration needs Kedro, which the ``kedro`` extra installs."""

    reason = "kedro_unavailable"


class KedroDatasetError(PipelineError):
    """A node's dataset cannot be measured: versioned or not on the local file system."""

    reason = "kedro_dataset_unmeasurable"


class KedroRunnerError(PipelineError):
    """The run does what one agent cannot attest: concurrent nodes, async I/O, a generator node."""

    reason = "kedro_runner_unsupported"


def attestation_file(directory: str | os.PathLike[str], node_name: str) -> Path:
    """Where :class:`AttestdHooks` writes ``node_name``'s attestation (``/`` quoted as ``%2F``)."""
    return Path(directory) / (quote(node_name, safe="") + ATTESTATION_SUFFIX)


def _check_stage_name(name: str, error: type[AttestdError]) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise error(
            f"node {name[:130]!r}: not a valid stage name (1 to 128 of A-Z a-z 0-9 . _ : / @ + -); "
            "name the node: node(func, inputs, outputs, name='train')"
        )


def _dataset_path(catalog: Any, name: str) -> str | None:
    """The local file a dataset reads and writes; None for one with no file (in memory).

    Kedro's file datasets keep ``_filepath`` and ``_protocol`` (AbstractDataset's
    documented pattern); there is no public accessor. A versioned dataset's file
    is chosen at save time, so it is refused rather than measured at the wrong path.
    """
    if name not in catalog:
        return None  # a runtime MemoryDataset Kedro creates for an intermediate
    dataset = catalog[name]
    filepath = getattr(dataset, "_filepath", None)
    if filepath is None:
        return None
    if getattr(dataset, "_version", None) is not None:
        raise KedroDatasetError(f"dataset {name!r} is versioned; attestd measures fixed paths")
    protocol = getattr(dataset, "_protocol", "file")
    if protocol not in (None, "file") or not isinstance(filepath, str | PurePath):
        raise KedroDatasetError(f"dataset {name!r} is not a local file ({protocol}://{filepath})")
    return str(filepath)


@dataclass(frozen=True)
class _Open:
    """The stage of the node now running, and the outputs Kedro has yet to save."""

    node: str
    handle: StageHandle
    pending: frozenset[str]


class AttestdHooks:
    """Kedro hooks that run each node as an attested stage of ``pipeline``.

    ``HOOKS = (AttestdHooks("attestations", pipeline="churn", licence="Apache-2.0"),)``
    in ``settings.py``. Each node's attestation is written to
    :func:`attestation_file` (``attestation_dir``) and kept in :attr:`attestations`.
    ``pipeline``, ``socket``, ``licence``, ``tags``, ``allow_unattested`` and
    ``timeout`` are :func:`attestd.pipeline.stage`'s, errors included; a dataset
    that cannot be measured is :class:`KedroDatasetError`, a concurrent or async
    run :class:`KedroRunnerError`.
    """

    def __init__(
        self,
        attestation_dir: str | os.PathLike[str],
        *,
        pipeline: str | None = None,
        licence: str | None = None,
        tags: Sequence[str] = (),
        socket: str | os.PathLike[str] | None = None,
        allow_unattested: bool = False,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.attestation_dir = Path(attestation_dir)
        self.pipeline = pipeline
        self.licence = licence
        self.tags = tuple(tags)
        self.socket = socket
        self.allow_unattested = allow_unattested
        self.timeout = timeout
        self.attestations: dict[str, bytes] = {}
        """Each node's attestation in this run, by node name."""
        self._producer: dict[str, str] = {}
        self._ended: list[str] = []
        self._open: _Open | None = None
        # ThreadRunner calls hooks from its workers: the check for a second open stage
        # must not race.
        self._lock = threading.Lock()

    @hook_impl
    def before_pipeline_run(self) -> None:
        """Forget the last run: settings.py's one instance serves every run of a session, and
        a node must never link to another run's producer."""
        with self._lock:
            if self._open is not None:
                raise KedroRunnerError(f"a run starts while node {self._open.node!r} is open")
            self.attestations = {}
            self._producer = {}
            self._ended = []

    @hook_impl
    def before_node_run(self, node: Node, catalog: Any, is_async: bool) -> None:
        """Begin the node's stage; its file inputs are measured now."""
        if is_async:
            raise KedroRunnerError("async load/save: outputs would be saved concurrently")
        if inspect.isgeneratorfunction(node.func):
            raise KedroRunnerError(f"node {node.name!r} is a generator: saved in chunks")
        _check_stage_name(node.name, KedroRunnerError)
        inputs = [p for p in (_dataset_path(catalog, n) for n in node.inputs) if p]
        outputs = [p for p in (_dataset_path(catalog, n) for n in node.outputs) if p]
        with self._lock:
            if self._open is not None:
                raise KedroRunnerError(
                    f"node {node.name!r} starts while {self._open.node!r} runs; one agent "
                    "attests one stage at a time: use SequentialRunner"
                )
            handle = stage(
                node.name,
                pipeline=self.pipeline,
                inputs=inputs,
                outputs=outputs,
                licence=self.licence,
                tags=self.tags,
                previous=self._previous(node),
                attestation_path=attestation_file(self.attestation_dir, node.name),
                socket=self.socket,
                allow_unattested=self.allow_unattested,
                timeout=self.timeout,
            )
            handle.__enter__()
            self._open = _Open(node.name, handle, frozenset(node.outputs))
        if not node.outputs:
            self._end(node.name)

    def _previous(self, node: Node) -> bytes | None:
        """The attestation of the input producer that ended last in this run; None for a root."""
        producers = {self._producer[n] for n in node.inputs if n in self._producer}
        for name in reversed(self._ended):
            if name in producers and name in self.attestations:
                return self.attestations[name]
        return None

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, node: Node) -> None:
        """End the node's stage once its last output is saved; the outputs are measured now."""
        with self._lock:
            current = self._open
            if current is None or current.node != node.name:
                return
            pending = current.pending - {dataset_name}
            self._open = _Open(current.node, current.handle, pending)
        if not pending:
            self._end(node.name)

    def _end(self, node_name: str) -> None:
        with self._lock:
            current, self._open = self._open, None
        assert current is not None and current.node == node_name  # set by before_node_run
        current.handle.__exit__(None, None, None)
        if current.handle.attestation is not None:
            self.attestations[node_name] = current.handle.attestation
        self._ended.append(node_name)

    @hook_impl
    def after_node_run(self, node: Node, outputs: Mapping[str, Any]) -> None:
        """Note which node produced each output, for the next stages' links."""
        for name in outputs:
            self._producer[name] = node.name

    @hook_impl
    def on_node_error(self, error: Exception, node: Node) -> None:
        """Abort the node's stage: the run leaves no attestation for it."""
        self._abort(error, node.name)

    @hook_impl
    def on_pipeline_error(self, error: Exception) -> None:
        """Abort a stage left open when saving an output failed (a session's run only)."""
        self._abort(error, None)

    def _abort(self, error: Exception, node_name: str | None) -> None:
        with self._lock:
            current = self._open
            if current is None or (node_name is not None and current.node != node_name):
                return
            self._open = None
        current.handle.__exit__(type(error), error, error.__traceback__)


# -- the layout from the pipeline object -------------------------------------------------


def _kedro() -> Any:
    try:
        return importlib.import_module("kedro.pipeline")
    except ImportError as err:
        raise KedroDependencyError(
            "deriving a layout from a Kedro pipeline needs Kedro: pip install 'attestd[kedro]'"
        ) from err


def load_pipeline(reference: str) -> tuple[str, Pipeline]:
    """Import ``MODULE:OBJECT`` (a ``Pipeline``, or a callable returning one): its name and it.

    ``name, pipeline = load_pipeline("my_project.pipelines:training")``. The
    module is imported with the working directory on ``sys.path``, as ``kedro``
    does; importing runs its code. Refuses (:class:`KedroPipelineError`) a
    malformed reference, a module or object that is not there, and an object
    that is not a pipeline.
    """
    pipeline_type = _kedro().Pipeline
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise KedroPipelineError(f"{reference!r}: expected MODULE:OBJECT")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise KedroPipelineError(f"{reference}: cannot import {module_name!r}: {err}") from err
    value: Any = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise KedroPipelineError(f"{reference}: {module_name!r} has no {attribute!r}")
        value = getattr(value, part)
    if not isinstance(value, pipeline_type) and callable(value):
        value = value()
    if not isinstance(value, pipeline_type):
        raise KedroPipelineError(
            f"{reference}: {type(value).__name__!r} is not a kedro Pipeline "
            "(or a callable returning one)"
        )
    return attribute.rsplit(".", 1)[-1], value


def kedro_tasks(pipeline: Pipeline, source: str = "pipeline") -> tuple[KfpTask, ...]:
    """One task per node in a topological order: its upstream nodes and dataset edges.

    ``tasks = kedro_tasks(pipeline)``. A node's upstream nodes are the producers
    of its inputs. Refuses an empty pipeline (:class:`KedroPipelineError`) and a
    node whose name cannot be a stage name (:class:`KedroUnsupportedError`).
    """
    nodes = pipeline.nodes  # Kedro's topological order, ties broken by name
    if not nodes:
        raise KedroPipelineError(f"{source}: the pipeline has no nodes")
    producer = {output: n.name for n in nodes for output in n.outputs}
    tasks = []
    for node in nodes:
        _check_stage_name(node.name, KedroUnsupportedError)
        edges = tuple(sorted((i, producer[i], i) for i in node.inputs if i in producer))
        upstream = tuple(sorted({p for _, p, _ in edges}))
        function = getattr(node.func, "__qualname__", type(node.func).__name__)
        tasks.append(KfpTask(node.name, function, upstream, edges))
    return tuple(tasks)


def layout_from_kedro(
    reference: str, template: Mapping[str, Any] | None = None, pipeline_name: str | None = None
) -> str:
    """The layout (TOML text) of the pipeline at ``MODULE:OBJECT``; template as from-kfp's.

    ``Path("layout.toml").write_text(layout_from_kedro("proj.pipelines:training", t))``.
    The pipeline is named ``pipeline_name``, else the template's ``pipeline``, else OBJECT.
    """
    name, pipeline = load_pipeline(reference)
    tasks = kedro_tasks(pipeline, reference)
    text = derive_layout_toml(pipeline_name or name, tasks, template or {}, reference)
    # derive_layout_toml's first line names from-kfp; the rest is framework-neutral.
    header = f"# Derived by `attestctl layout from-kedro` from {reference}; docs/kedro.md."
    return header + "\n" + text.split("\n", 1)[1]
