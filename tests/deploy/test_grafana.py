"""The Grafana dashboard queries only metrics (and labels) the daemons export."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from attestd.agent.metrics import AgentMetrics
from attestd.verifier.metrics import VerifierMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "attestd-fleet.json"
#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"instance", "job"}
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}


def exported() -> dict[str, set[str]]:
    """Every series name both daemons can export, with its label names."""
    names: dict[str, set[str]] = {}
    registries: list[CollectorRegistry] = [AgentMetrics().registry, VerifierMetrics().registry]
    for registry in registries:
        for collector in list(registry._collector_to_names):
            for family in collector.describe():
                labels = set(getattr(collector, "_labelnames", ()))
                for suffix in _SUFFIXES[family.type]:
                    extra = {"le"} if suffix == "_bucket" else set()
                    names[family.name + suffix] = labels | extra
    return names


def expressions() -> Iterator[tuple[str, str]]:
    def walk(panels: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
        for panel in panels:
            yield from walk(panel.get("panels", []))
            for target in panel.get("targets", []):
                yield panel["title"], target["expr"]

    yield from walk(json.loads(DASHBOARD.read_text())["panels"])


def referenced(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) a PromQL expression uses."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    labels: set[str] = set()
    for clause in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        labels |= {name.strip() for name in clause.split(",") if name.strip()}
    for matchers in re.findall(r"\{([^}]*)\}", expr):
        labels |= set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
    bare = re.sub(r"\b(?:by|without)\s*\([^)]*\)", " ", expr)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", bare)
    metrics = {
        m.group(1)
        for m in re.finditer(r"([a-zA-Z_:][\w:]*)\s*(\()?", bare)
        if m.group(2) is None and not m.group(1).startswith("$")
    }
    return metrics, labels


def test_the_parser_finds_names_and_labels() -> None:
    metrics, labels = referenced(
        'histogram_quantile(0.99, sum by (le, x) (rate(a_bucket{s!="y"}[$__rate_interval]))) / b'
    )
    assert metrics == {"a_bucket", "b"} and labels == {"le", "x", "s"}


@pytest.mark.parametrize(("title", "expr"), list(expressions()))
def test_every_query_uses_exported_metrics_and_labels(title: str, expr: str) -> None:
    known = exported()
    metrics, labels = referenced(expr)
    assert metrics, f"{title}: no metric in {expr!r}"
    for name in metrics:
        assert name in known, f"{title}: {name} is exported by neither daemon"
        assert labels <= known[name] | TARGET_LABELS, f"{title}: unknown labels in {expr!r}"


def test_the_dashboard_covers_every_family() -> None:
    used = {name for _, expr in expressions() for name in referenced(expr)[0]}
    families = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in exported()}
    assert {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in used} == families
