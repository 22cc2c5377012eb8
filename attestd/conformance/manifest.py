"""The suite's manifest: what each case is, which files it has, what it must conclude.

    suite = load_suite(Path("conformance"))
    for case in suite.cases:
        case.id, case.kind, case.expect.outcome, case.expect.reason, case.now

The manifest (``conformance/manifest.json``, schema ``conformance/manifest.schema.json``)
is the contract between the suite and an implementation; docs/conformance.md
describes it. Reading it refuses anything off-schema with
:class:`ManifestError` (``conformance_manifest_invalid``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from attestd.errors import AttestdError
from attestd.evidence import parse_rfc3339

__all__ = [
    "ACCEPT",
    "KINDS",
    "MANIFEST",
    "PARTS",
    "REFUSE",
    "SUITE_VERSION",
    "Case",
    "Expect",
    "ManifestError",
    "Suite",
    "load_suite",
]

SUITE_VERSION = "1.0.0"
"""Semantic version of the suite and of its reason names (docs/conformance.md, "Versioning")."""

MANIFEST = "manifest.json"
ACCEPT = "accept"
REFUSE = "refuse"
PARTS = ("quote", "evidence", "chain", "results")
KINDS = ("quote", "evidence", "chain", "ear")
_ID = re.compile(r"[a-z0-9][a-z0-9_.-]*/[a-z0-9][a-z0-9_.-]*")
_REASON = re.compile(r"[a-z][a-z0-9_]*")
_ROLE = re.compile(r"[a-z][a-z0-9_]*")


class ManifestError(AttestdError):
    """The suite's manifest or a case's files are not what the schema says."""

    reason = "conformance_manifest_invalid"


@dataclass(frozen=True)
class Expect:
    """The expected outcome: ``accept``, or ``refuse`` with a stable ``reason``."""

    outcome: str
    reason: str | None = None


@dataclass(frozen=True)
class Case:
    """One case: its inputs are paths relative to the suite's root."""

    id: str
    part: str
    kind: str
    tests: str
    docs: str
    inputs: Mapping[str, str]
    now: datetime
    expect: Expect

    def input_paths(self, root: Path) -> dict[str, Path]:
        """Each input role to its absolute path under ``root``."""
        return {role: (root / path).resolve() for role, path in self.inputs.items()}


@dataclass(frozen=True)
class Suite:
    """A loaded suite: its root directory, version, seed and cases in manifest order."""

    root: Path
    version: str
    seed: str
    cases: tuple[Case, ...]
    gaps: Mapping[str, str]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ManifestError(message)


def _string(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    _require(isinstance(value, str) and value != "", f"{where}: {key} must be a non-empty string")
    assert isinstance(value, str)
    return value


def _case(obj: object, root: Path, index: int) -> Case:
    where = f"cases[{index}]"
    _require(isinstance(obj, dict), f"{where} must be an object")
    assert isinstance(obj, dict)
    allowed = {"id", "part", "kind", "tests", "docs", "inputs", "now", "expect"}
    _require(set(obj) == allowed, f"{where} must have exactly {sorted(allowed)}")
    case_id = _string(obj, "id", where)
    _require(_ID.fullmatch(case_id) is not None, f"{where}: id {case_id!r} is not part/name")
    part, kind = _string(obj, "part", where), _string(obj, "kind", where)
    _require(part in PARTS and case_id.startswith(part + "/"), f"{where}: part {part!r}")
    _require(kind in KINDS, f"{where}: kind {kind!r} is not one of {KINDS}")
    docs = _string(obj, "docs", where)
    _require(docs.startswith("docs/") and "#" in docs, f"{where}: docs must be docs/FILE#section")
    inputs = obj["inputs"]
    _require(isinstance(inputs, dict) and bool(inputs), f"{where}: inputs must be an object")
    for role, path in inputs.items():
        _require(_ROLE.fullmatch(role) is not None, f"{where}: input role {role!r}")
        _require(isinstance(path, str) and not path.startswith("/"), f"{where}: input {role}")
        _require(".." not in Path(path).parts, f"{where}: input {role} leaves the suite")
        _require((root / path).is_file(), f"{where}: input {role} {path} is missing")
    try:
        now = parse_rfc3339(_string(obj, "now", where))
    except AttestdError as err:
        raise ManifestError(f"{where}: now: {err.message}") from err
    expect = obj["expect"]
    _require(isinstance(expect, dict), f"{where}: expect must be an object")
    outcome = expect.get("outcome")
    if outcome == ACCEPT:
        _require(set(expect) == {"outcome"}, f"{where}: accept has no reason")
        expected = Expect(ACCEPT)
    else:
        _require(outcome == REFUSE, f"{where}: outcome must be accept or refuse")
        reason = expect.get("reason")
        _require(
            set(expect) == {"outcome", "reason"}
            and isinstance(reason, str)
            and _REASON.fullmatch(reason) is not None,
            f"{where}: refuse needs one reason name",
        )
        expected = Expect(REFUSE, reason)
    return Case(case_id, part, kind, _string(obj, "tests", where), docs, inputs, now, expected)


def load_suite(root: Path) -> Suite:
    """Read and check ``root/manifest.json``; ManifestError if anything is off-schema."""
    try:
        document = json.loads((root / MANIFEST).read_bytes())
    except (OSError, ValueError) as err:
        raise ManifestError(f"cannot read {root / MANIFEST}: {err}") from err
    _require(isinstance(document, dict), "the manifest must be an object")
    _require(document.get("suite") == "attestd-conformance", "suite must be attestd-conformance")
    version = _string(document, "version", "manifest")
    _require(version.split(".")[0] == SUITE_VERSION.split(".")[0], f"version {version}")
    cases = document.get("cases")
    _require(isinstance(cases, list) and bool(cases), "cases must be a non-empty list")
    gaps = document.get("gaps", {})
    _require(isinstance(gaps, dict), "gaps must be an object")
    loaded = tuple(_case(c, root, i) for i, c in enumerate(cases))
    ids = [c.id for c in loaded]
    _require(len(set(ids)) == len(ids), "case ids must be unique")
    return Suite(root, version, _string(document, "seed", "manifest"), loaded, dict(gaps))
