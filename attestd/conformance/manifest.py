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

import dataclasses
import json
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from attestd.errors import AttestdError
from attestd.evidence import parse_rfc3339

__all__ = [
    "ACCEPT",
    "KINDS",
    "MANIFEST",
    "MAX_SYNTHESIZED_BYTES",
    "PARTS",
    "REFUSE",
    "SUITE_VERSION",
    "Case",
    "Expect",
    "ManifestError",
    "Suite",
    "Synthesized",
    "VectorRef",
    "case_inputs",
    "default_vectors_dir",
    "load_suite",
]

SUITE_VERSION = "1.3.0"
"""Semantic version of the suite and of its reason names (docs/conformance.md, "Versioning")."""

MANIFEST = "manifest.json"
ACCEPT = "accept"
REFUSE = "refuse"
PARTS = ("quote", "evidence", "chain", "results")
KINDS = ("quote", "quote-snp", "evidence", "chain", "ear")
_ID = re.compile(r"[a-z0-9][a-z0-9_.-]*/[a-z0-9][a-z0-9_.-]*")
_REASON = re.compile(r"[a-z][a-z0-9_]*")
_ROLE = re.compile(r"[a-z][a-z0-9_]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_BYTE = re.compile(r"[0-9a-f]{2}")
MAX_SYNTHESIZED_BYTES = 64 * 1024 * 1024
"""The largest input the runner will synthesize (a size limit's case needs 4 MiB + 1)."""


class ManifestError(AttestdError):
    """The suite's manifest or a case's files are not what the schema says."""

    reason = "conformance_manifest_invalid"


@dataclass(frozen=True)
class Expect:
    """The expected outcome: ``accept``, or ``refuse`` with a stable ``reason``."""

    outcome: str
    reason: str | None = None


@dataclass(frozen=True)
class VectorRef:
    """A real vendor vector a case names but the suite does not copy (docs/conformance.md).

    ``path`` is relative to the vectors directory (``--vectors``), ``sha256`` its
    digest (hex), ``provenance`` where it was published (repository @ commit, path).
    """

    path: str
    sha256: str
    provenance: str


@dataclass(frozen=True)
class Synthesized:
    """An input the runner writes instead of the suite storing it: ``size`` copies of ``byte``.

    It lets a case exceed a size limit (``collateral_too_large``) without the suite
    carrying megabytes; docs/conformance.md, "Synthesized inputs".
    """

    size: int
    byte: int

    def write(self, path: Path) -> None:
        """Write the input to ``path`` in bounded chunks."""
        chunk = bytes([self.byte]) * min(self.size, 1 << 20)
        with path.open("wb") as out:
            left = self.size
            while left > 0:
                out.write(chunk[:left])
                left -= len(chunk[:left])


@dataclass(frozen=True)
class Case:
    """One case: its inputs are paths relative to the suite's root.

    ``vectors`` are further inputs by role, resolved under ``vectors_dir`` (None:
    not available) and checked against their digest by the runner.
    """

    id: str
    part: str
    kind: str
    tests: str
    docs: str
    inputs: Mapping[str, str]
    now: datetime
    expect: Expect
    vectors: Mapping[str, VectorRef] = field(default_factory=dict)
    vectors_dir: Path | None = None
    synthesized: Mapping[str, Synthesized] = field(default_factory=dict)

    def input_paths(self, root: Path) -> dict[str, Path]:
        """Each input role to its absolute path: under ``root``, vectors under ``vectors_dir``."""
        if self.synthesized:
            raise ManifestError(f"{self.id}: has synthesized inputs; use case_inputs")
        paths = {role: (root / path).resolve() for role, path in self.inputs.items()}
        if self.vectors and self.vectors_dir is None:
            raise ManifestError(f"{self.id}: needs the vendor vectors, and none were given")
        for role, ref in self.vectors.items():
            assert self.vectors_dir is not None
            paths[role] = (self.vectors_dir / ref.path).resolve()
        return paths


@contextmanager
def case_inputs(case: Case, root: Path) -> Iterator[dict[str, Path]]:
    """Each input role to a path, synthesized inputs written for the duration.

        with case_inputs(case, suite.root) as inputs:
            adapter(case.kind, inputs)

    A case with synthesized inputs has all of them in one temporary directory: its
    stored inputs copied under their own file names, each synthesized one named by
    its role, so that a policy can name it by a relative path. Others are read in place.
    """
    if not case.synthesized:
        yield case.input_paths(root)
        return
    stored = dataclasses.replace(case, synthesized={})
    with tempfile.TemporaryDirectory(prefix="attestd-conformance-case-") as tmp:
        directory = Path(tmp)
        paths = {}
        for role, path in stored.input_paths(root).items():
            if role in case.inputs:  # vendor vectors stay where they are
                paths[role] = directory / path.name
                shutil.copyfile(path, paths[role])
            else:
                paths[role] = path
        for role, synthesized in case.synthesized.items():
            paths[role] = directory / role
            synthesized.write(paths[role])
        yield paths


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


def _vectors(obj: object, where: str) -> dict[str, VectorRef]:
    _require(isinstance(obj, dict) and bool(obj), f"{where}: vectors must be an object")
    assert isinstance(obj, dict)
    refs = {}
    for role, ref in obj.items():
        at = f"{where}: vector {role}"
        _require(_ROLE.fullmatch(role) is not None and isinstance(ref, dict), at)
        _require(set(ref) == {"path", "sha256", "provenance"}, f"{at}: path, sha256, provenance")
        path = _string(ref, "path", at)
        _require(not path.startswith("/") and ".." not in Path(path).parts, f"{at}: path")
        digest = _string(ref, "sha256", at)
        _require(_SHA256.fullmatch(digest) is not None, f"{at}: sha256 must be 64 hex digits")
        refs[role] = VectorRef(path, digest, _string(ref, "provenance", at))
    return refs


def _case(obj: object, root: Path, index: int, vectors_dir: Path | None) -> Case:
    where = f"cases[{index}]"
    _require(isinstance(obj, dict), f"{where} must be an object")
    assert isinstance(obj, dict)
    allowed = {"id", "part", "kind", "tests", "docs", "inputs", "now", "expect"}
    _require(set(obj) - {"vectors"} == allowed, f"{where} must have exactly {sorted(allowed)}")
    vectors = _vectors(obj["vectors"], where) if "vectors" in obj else {}
    case_id = _string(obj, "id", where)
    _require(_ID.fullmatch(case_id) is not None, f"{where}: id {case_id!r} is not part/name")
    part, kind = _string(obj, "part", where), _string(obj, "kind", where)
    _require(part in PARTS and case_id.startswith(part + "/"), f"{where}: part {part!r}")
    _require(kind in KINDS, f"{where}: kind {kind!r} is not one of {KINDS}")
    docs = _string(obj, "docs", where)
    _require(docs.startswith("docs/") and "#" in docs, f"{where}: docs must be docs/FILE#section")
    inputs = obj["inputs"]
    _require(isinstance(inputs, dict), f"{where}: inputs must be an object")
    _require(bool(inputs) or bool(vectors), f"{where}: a case needs inputs")
    _require(not set(inputs) & set(vectors), f"{where}: a role is both an input and a vector")
    synthesized = {}
    for role, path in inputs.items():
        _require(_ROLE.fullmatch(role) is not None, f"{where}: input role {role!r}")
        if isinstance(path, dict):
            synthesized[role] = _synthesized(path, f"{where}: input {role}")
            continue
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
    tests = _string(obj, "tests", where)
    if synthesized:  # copied beside them under their file names: no two may share one
        names = [Path(p).name for r, p in inputs.items() if r not in synthesized]
        names += list(synthesized)
        _require(len(set(names)) == len(names), f"{where}: two inputs share a file name")
        inputs = {r: p for r, p in inputs.items() if r not in synthesized}
    return Case(
        case_id,
        part,
        kind,
        tests,
        docs,
        inputs,
        now,
        expected,
        vectors,
        vectors_dir,
        synthesized,
    )


def _synthesized(obj: Mapping[str, Any], where: str) -> Synthesized:
    _require(set(obj) == {"synthesize"}, f"{where}: an input object has only synthesize")
    spec = obj["synthesize"]
    _require(isinstance(spec, dict) and set(spec) == {"size", "byte"}, f"{where}: size, byte")
    size, byte = spec["size"], spec["byte"]
    _require(
        isinstance(size, int) and not isinstance(size, bool) and 0 < size <= MAX_SYNTHESIZED_BYTES,
        f"{where}: size must be an integer from 1 to {MAX_SYNTHESIZED_BYTES}",
    )
    _require(
        isinstance(byte, str) and _BYTE.fullmatch(byte) is not None,
        f"{where}: byte must be two lowercase hex digits",
    )
    return Synthesized(size, int(byte, 16))


def default_vectors_dir(root: Path) -> Path:
    """Where the vendor vectors lie by default: ``shared/vectors`` beside the repository.

    The suite is ``REPO/conformance``, so this is ``REPO/../shared/vectors``, the
    place attestd's own tests read them from (tests/conftest.py).
    """
    return root.resolve().parent.parent / "shared" / "vectors"


def load_suite(root: Path, vectors: Path | None = None) -> Suite:
    """Read and check ``root/manifest.json``; ManifestError if anything is off-schema.

    ``vectors`` is the vendor vectors' directory (default :func:`default_vectors_dir`);
    whether it holds them is the runner's question, not the loader's.
    """
    vectors_dir = (vectors or default_vectors_dir(root)).resolve()
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
    loaded = tuple(_case(c, root, i, vectors_dir) for i, c in enumerate(cases))
    ids = [c.id for c in loaded]
    _require(len(set(ids)) == len(ids), "case ids must be unique")
    return Suite(root, version, _string(document, "seed", "manifest"), loaded, dict(gaps))
