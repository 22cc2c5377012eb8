"""docs/metrics.md lists exactly the metric families both daemons export, with their labels."""

from __future__ import annotations

import re
from pathlib import Path

from attestd.agent.metrics import AgentMetrics
from attestd.verifier.metrics import VerifierMetrics

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def documented() -> dict[str, tuple[str, set[str]]]:
    """metric -> (type, labels), from every table row of the document."""
    rows: dict[str, tuple[str, set[str]]] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `attestd_") and len(cells) == 4:
            name = cells[0].strip("`")
            assert name not in rows, f"{name} is listed twice"
            rows[name] = (cells[1], set(re.findall(r"`([a-z_]+)`", cells[2])))
    return rows


def exported() -> dict[str, tuple[str, set[str]]]:
    rows: dict[str, tuple[str, set[str]]] = {}
    for registry in (AgentMetrics().registry, VerifierMetrics().registry):
        for collector in list(registry._collector_to_names):
            for family in collector.describe():
                name = family.name + ("_total" if family.type == "counter" else "")
                rows[name] = (family.type, set(getattr(collector, "_labelnames", ())))
    return rows


def test_the_document_lists_every_metric_with_its_type_and_labels() -> None:
    assert documented() == exported()
