"""The Kedro pipeline the tests and ``make demo-kedro`` run: prepare, then train and
evaluate in parallel, then package. Every dataset is a file but ``rows``, which stays
in memory (Kedro makes a ``MemoryDataset`` for a name the catalog lacks). And the
helpers both use: the stage template for an agent, hooks registered on a hook manager.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.framework.hooks.manager import _create_hook_manager
from kedro.io import AbstractDataset, DataCatalog
from kedro.pipeline import Pipeline, node
from pluggy import PluginManager

from attestd.integrations.kedro import AttestdHooks
from tests.harness import MRTD, RTMRS, AgentProcess

LICENCE = "Apache-2.0"
PIPELINE = "kedro-attested"
STAGES = ("prepare", "train", "evaluate", "package")
REFERENCE = "tests.integrations.kedro.pipelines:parallel_pipeline"
FILES = ("raw", "dataset", "model", "metrics", "bundle")
"""The file-backed datasets, each ``<name>.txt`` in the data directory."""


class TextDataset(AbstractDataset[str, str]):
    """A text file, kept the way Kedro's own file datasets keep theirs (``_filepath``)."""

    def __init__(self, filepath: str) -> None:
        self._filepath = PurePosixPath(filepath)

    def load(self) -> str:
        return Path(self._filepath).read_text()

    def save(self, data: str) -> None:
        Path(self._filepath).write_text(data)

    def _exists(self) -> bool:
        return Path(self._filepath).exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


def prepare(raw: str) -> tuple[str, int]:
    lines = [line.strip().lower() for line in raw.splitlines() if line.strip()]
    return "\n".join(lines), len(lines)


def train(dataset: str) -> str:
    return f"weights: {len(dataset.split())} tokens"


def evaluate(dataset: str, rows: int) -> str:
    return f"rows={rows} tokens={len(dataset.split())}"


def package(model: str, metrics: str) -> str:
    return f"{model}\n{metrics}\n"


def broken_train(dataset: str) -> str:
    raise RuntimeError("out of memory")


def parallel_pipeline(train_with: Any = train) -> Pipeline:
    """prepare -> (train, evaluate) -> package."""
    return Pipeline(
        [
            node(prepare, "raw", ["dataset", "rows"], name="prepare"),
            node(train_with, "dataset", "model", name="train"),
            node(evaluate, ["dataset", "rows"], "metrics", name="evaluate"),
            node(package, ["model", "metrics"], "bundle", name="package"),
        ]
    )


def broken_pipeline() -> Pipeline:
    """The same pipeline whose train node raises."""
    return parallel_pipeline(broken_train)


def badly_named_pipeline() -> Pipeline:
    """A node whose name cannot be a stage name: Kedro allows any length, a stage 128."""
    return Pipeline([node(prepare, "raw", ["dataset", "rows"], name="p" * 129)])


EMPTY = Pipeline([])
NOT_A_PIPELINE = 42


def catalog(data: Path) -> DataCatalog:
    """The file datasets under ``data``, the raw input written."""
    data.mkdir(parents=True, exist_ok=True)
    (data / "raw.txt").write_text("One\nTwo\n\nThree\n")
    return DataCatalog({name: TextDataset(str(data / f"{name}.txt")) for name in FILES})


def stage_template(agent: AgentProcess, directory: Path) -> Path:
    """What a Kedro pipeline does not say: this agent's TEE, its root and reference values."""
    template = directory / "stage.toml"
    reference = [f'mrtd = ["{MRTD}"]'] + [f'rtmr{i} = ["{v}"]' for i, v in enumerate(RTMRS)]
    lines = [
        f'allowed_licenses = ["{LICENCE}"]',
        "[stage]",
        'tee = ["tdx"]',
        "[stage.trust.tdx]",
        'root = "simulated"',
        f'simulated_root = "{agent.simulated_root()}"',
        "[stage.tdx]",
        *reference,
    ]
    template.write_text("\n".join(lines) + "\n")
    return template


def hooks_for(agent: AgentProcess, attestations: Path) -> tuple[AttestdHooks, PluginManager]:
    """AttestdHooks for `agent` writing to `attestations`, on a fresh Kedro hook manager."""
    attestations.mkdir(parents=True)
    hooks = AttestdHooks(attestations, pipeline=PIPELINE, licence=LICENCE, socket=agent.socket_path)
    manager = _create_hook_manager()
    manager.register(hooks)
    return hooks, manager
