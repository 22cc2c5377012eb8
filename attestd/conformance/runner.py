"""Run every case of a suite through an adapter, and report what agreed.

    report = run_suite(suite, ["attestctl", "conformance", "adapter"], strict=True)
    print(report.table()); json.dumps(report.to_json())

The adapter protocol (docs/conformance.md): the runner runs
``ADAPTER... KIND NOW ROLE=PATH...`` with the same values in the environment
(``CONFORMANCE_CASE_ID``, ``CONFORMANCE_KIND``, ``CONFORMANCE_NOW``,
``CONFORMANCE_INPUT_<ROLE>``); the adapter prints one line, ``accept`` or
``refuse REASON`` or ``unsupported`` (it does not judge this kind of case:
counted apart, neither passed nor failed), and exits 0. A case fails when the adapter times out
(``adapter_timeout``), exits non-zero (``adapter_crashed``), prints anything
else (``adapter_output_invalid``), or disagrees on accept/refuse
(``outcome_mismatch``). A different reason is ``reason_mismatch``: a failure
in strict mode, reported but passed otherwise.

Cases that name real vendor vectors (``vectors`` in the manifest) are resolved
under the vectors directory and their SHA-256 checked first: a wrong digest is
``vector_digest_mismatch``; a missing vector is ``vector_missing``, a failure
under ``CI=true`` and a skipped case otherwise, never a pass. Synthesized inputs
(``synthesize`` in the manifest) are written to a temporary directory for the
adapter's run (:func:`attestd.conformance.manifest.case_inputs`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attestd.conformance.adapter import Verdict
from attestd.conformance.manifest import ACCEPT, REFUSE, Case, Suite, case_inputs
from attestd.evidence import format_rfc3339

__all__ = [
    "ADAPTER_CRASHED",
    "ADAPTER_OUTPUT_INVALID",
    "ADAPTER_TIMEOUT",
    "OUTCOME_MISMATCH",
    "REASON_MISMATCH",
    "UNSUPPORTED",
    "VECTOR_DIGEST_MISMATCH",
    "VECTOR_MISSING",
    "CaseReport",
    "RunReport",
    "check_vectors",
    "command_adapter",
    "run_suite",
]

ADAPTER_TIMEOUT = "adapter_timeout"
ADAPTER_CRASHED = "adapter_crashed"
ADAPTER_OUTPUT_INVALID = "adapter_output_invalid"
OUTCOME_MISMATCH = "outcome_mismatch"
REASON_MISMATCH = "reason_mismatch"
VECTOR_DIGEST_MISMATCH = "vector_digest_mismatch"
VECTOR_MISSING = "vector_missing"
UNSUPPORTED = "unsupported"
"""The adapter's third answer: it does not judge this case; neither pass nor fail."""
_LINE = re.compile(r"(accept)|(refuse) ([a-z][a-z0-9_]*)|(unsupported)")
_OUTPUT_LIMIT = 4096

Adapter = Callable[[Case, Path], Verdict]


class _AdapterFailure(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class CaseReport:
    """One case's result: ``failure`` names why it failed (None: passed).

    ``unsupported``: the adapter said it does not judge the case; ``skipped``: a
    vendor vector is missing outside CI. Neither counts as passed or failed.
    """

    id: str
    expected: str
    got: str
    passed: bool
    failure: str | None = None
    detail: str = ""
    unsupported: bool = False
    skipped: bool = False

    @property
    def result(self) -> str:
        """``pass``, ``fail``, ``unsupported`` or ``skipped``."""
        if self.unsupported:
            return "unsupported"
        if self.skipped:
            return "skipped"
        return "pass" if self.passed else "fail"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "result": self.result,
            "expected": self.expected,
            "got": self.got,
            "passed": self.passed,
            "failure": self.failure,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class RunReport:
    """Every case's report, in manifest order."""

    suite_version: str
    strict: bool
    cases: tuple[CaseReport, ...]

    @property
    def passed(self) -> int:
        return sum(1 for c in self.cases if c.passed)

    @property
    def failed(self) -> int:
        return sum(1 for c in self.cases if c.result == "fail")

    @property
    def unsupported(self) -> int:
        return sum(1 for c in self.cases if c.unsupported)

    @property
    def skipped(self) -> int:
        return sum(1 for c in self.cases if c.skipped)

    def table(self) -> str:
        """A plain-text pass/fail table, one case a line, with the totals last."""
        width = max(len(c.id) for c in self.cases)
        lines = [f"{'case'.ljust(width)}  result  expected / got"]
        for c in self.cases:
            mark = {"pass": "pass", "fail": "FAIL", "unsupported": "unsup", "skipped": "skip"}[
                c.result
            ]
            note = f"  [{c.failure}]" if c.failure else ""
            lines.append(f"{c.id.ljust(width)}  {mark:6}  {c.expected} / {c.got}{note}")
        lines.append(
            f"{self.passed} passed, {self.failed} failed, {self.unsupported} unsupported,"
            f" {self.skipped} skipped of {len(self.cases)}"
        )
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "suiteVersion": self.suite_version,
            "strict": self.strict,
            "passed": self.passed,
            "failed": self.failed,
            "unsupported": self.unsupported,
            "skipped": self.skipped,
            "cases": [c.to_json() for c in self.cases],
        }


def _parse_line(stdout: str) -> Verdict:
    lines = stdout.strip().splitlines()
    match = _LINE.fullmatch(lines[-1].strip()) if lines else None
    if match is None:
        raise _AdapterFailure(ADAPTER_OUTPUT_INVALID, f"printed {stdout[-200:]!r}")
    if match.group(1):
        return Verdict(ACCEPT)
    if match.group(4):
        return Verdict(UNSUPPORTED)
    return Verdict(REFUSE, match.group(3))


def command_adapter(command: Sequence[str], *, timeout: float = 30.0) -> Adapter:
    """An adapter that runs ``command`` per case, by the protocol above."""

    def run(case: Case, root: Path) -> Verdict:
        with case_inputs(case, root) as inputs:  # synthesized inputs exist for the run only
            return _run(case, inputs)

    def _run(case: Case, inputs: dict[str, Path]) -> Verdict:
        now = format_rfc3339(case.now)
        argv = [*command, case.kind, now, *(f"{role}={path}" for role, path in inputs.items())]
        env = dict(os.environ)
        env |= {"CONFORMANCE_CASE_ID": case.id, "CONFORMANCE_KIND": case.kind}
        env["CONFORMANCE_NOW"] = now
        env |= {f"CONFORMANCE_INPUT_{role.upper()}": str(path) for role, path in inputs.items()}
        try:
            done = subprocess.run(  # the adapter is the operator's own command
                argv, capture_output=True, timeout=timeout, env=env, check=False
            )
        except subprocess.TimeoutExpired as err:
            raise _AdapterFailure(ADAPTER_TIMEOUT, f"no answer in {timeout:g} s") from err
        except OSError as err:
            raise _AdapterFailure(ADAPTER_CRASHED, f"cannot run the adapter: {err}") from err
        stderr = done.stderr[-_OUTPUT_LIMIT:].decode(errors="replace").strip()
        if done.returncode != 0:
            raise _AdapterFailure(ADAPTER_CRASHED, f"exit {done.returncode}: {stderr[-300:]}")
        stdout = done.stdout[:_OUTPUT_LIMIT].decode(errors="replace")
        verdict = _parse_line(stdout)
        return Verdict(verdict.outcome, verdict.reason, stderr[-300:])

    return run


def _expected(case: Case) -> str:
    return case.expect.outcome + (f" {case.expect.reason}" if case.expect.reason else "")


def _in_ci() -> bool:
    # The same rule as the tests' (tests/conftest.py): CI systems set CI=true.
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def check_vectors(case: Case, expected: str = "") -> CaseReport | None:
    """A report for a case whose vendor vectors are missing or not the published bytes."""
    for role, ref in case.vectors.items():
        path = (case.vectors_dir or Path("/nonexistent")) / ref.path
        try:
            data = path.read_bytes()
        except OSError:
            detail = f"vector {role} not found at {path} (see docs/conformance.md, --vectors)"
            if _in_ci():
                return CaseReport(case.id, expected, "-", False, VECTOR_MISSING, detail)
            return CaseReport(case.id, expected, "-", False, None, detail, skipped=True)
        digest = hashlib.sha256(data).hexdigest()
        if not hmac.compare_digest(digest, ref.sha256):
            detail = f"vector {role} at {path} has SHA-256 {digest}, not {ref.sha256}"
            return CaseReport(case.id, expected, "-", False, VECTOR_DIGEST_MISMATCH, detail)
    return None


def _one(case: Case, root: Path, adapter: Adapter, strict: bool) -> CaseReport:
    expected = _expected(case)
    problem = check_vectors(case, expected)
    if problem is not None:
        return problem
    try:
        verdict = adapter(case, root)
    except _AdapterFailure as err:
        return CaseReport(case.id, expected, "-", False, err.reason, err.detail)
    got = verdict.line()
    if verdict.outcome == UNSUPPORTED:
        return CaseReport(case.id, expected, got, False, None, verdict.detail, unsupported=True)
    if verdict.outcome != case.expect.outcome:
        return CaseReport(case.id, expected, got, False, OUTCOME_MISMATCH, verdict.detail)
    if verdict.reason != case.expect.reason:
        return CaseReport(case.id, expected, got, not strict, REASON_MISMATCH, verdict.detail)
    return CaseReport(case.id, expected, got, True)


def run_suite(
    suite: Suite, adapter: Adapter | Sequence[str], *, strict: bool = False, timeout: float = 30.0
) -> RunReport:
    """Judge every case of ``suite`` with ``adapter`` (a command, or in-process)."""
    run = command_adapter(adapter, timeout=timeout) if not callable(adapter) else adapter
    reports = tuple(_one(case, suite.root, run, strict) for case in suite.cases)
    return RunReport(suite.version, strict, reports)
