"""The committed suite is what `make conformance` builds; attestd passes it; it covers reasons."""

from __future__ import annotations

import dataclasses
import filecmp
import json
import sys
from pathlib import Path

import pytest

from attestd.conformance import load_suite, run_suite
from attestd.conformance.adapter import judge
from attestd.conformance.generate import build
from attestd.conformance.manifest import Suite
from attestd.conformance.runner import (
    ADAPTER_CRASHED,
    ADAPTER_OUTPUT_INVALID,
    VECTOR_DIGEST_MISMATCH,
    VECTOR_MISSING,
)
from attestd.verifier.checks import INTERNAL_ERROR, REFERENCE_VALUE_ABSENT
from attestd.verifier.registry import SUITES
from tests.verifier import test_registry as registry_docs

SUITE = Path(__file__).resolve().parents[2] / "conformance"

# Reasons with no case yet, by registry suite (docs/conformance.md, "Gaps"). Equality, not
# subset: a new case must remove its reason here, and a new registry reason must get a case
# or a line. Every suite of verifier/registry.py SUITES is covered, not a chosen few.
KNOWN_GAPS: dict[str, set[str]] = {
    "appraisal": set(),
    "tdx": set(),
    "snp": set(),
    "stage": set(),
    "chain": set(),
    "quote_tdx": set(),
    "quote_snp": set(),
}
# Not refusals: a bug in the verifier, and a warning (a policy without reference values).
_NOT_REFUSALS = {INTERNAL_ERROR, REFERENCE_VALUE_ABSENT}


def _differences(a: Path, b: Path) -> list[str]:
    cmp = filecmp.dircmp(a, b)
    out = [str(a / n) for n in cmp.left_only + cmp.right_only + cmp.diff_files + cmp.funny_files]
    for name in cmp.common_dirs:
        out += _differences(a / name, b / name)
    return out


def test_make_conformance_rebuilds_the_committed_suite(tmp_path: Path) -> None:
    build(tmp_path)
    # dircmp compares contents only when stat signatures differ; force a byte comparison.
    filecmp.clear_cache()
    # Not generated: the schema, the inputs the generator reads (fixtures/), the adapters.
    hand_written = {str(SUITE / n) for n in ("manifest.schema.json", "fixtures", "adapters")}
    assert [d for d in _differences(SUITE, tmp_path) if d not in hand_written] == []
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert path.read_bytes() == (SUITE / path.relative_to(tmp_path)).read_bytes(), path


def test_attestd_passes_every_case_strictly() -> None:
    report = run_suite(load_suite(SUITE), judge, strict=True)
    assert report.failed == 0, report.table()


def _covered() -> set[str]:
    return {c.expect.reason for c in load_suite(SUITE).cases if c.expect.reason is not None}


def test_every_reason_of_every_registry_suite_has_a_case_or_a_named_gap() -> None:
    assert set(KNOWN_GAPS) == set(SUITES)  # a new suite must be listed, even with no gaps
    covered = _covered()
    for suite, checks in SUITES.items():
        reasons = {r for check in checks for r in check.reasons} - _NOT_REFUSALS
        assert reasons - covered == KNOWN_GAPS[suite], suite
        assert KNOWN_GAPS[suite] <= reasons, suite  # no stale gap of a reason now gone


def _docs_reasons() -> set[str]:
    """Every reason the docs' reason tables name (parsed as tests/verifier does)."""
    section, rows, ticked = registry_docs._section, registry_docs._rows, registry_docs._ticked
    tables = [
        (rows(section("policy.md", "### Common checks", "### TDX checks")), 3),
        (rows(section("policy.md", "### TDX checks")), 2),
        (rows(section("policy.md", "### SEV-SNP")), 2),
        (rows(section("layout.md", "### Per stage attestation")), 1),
        (rows(section("layout.md", "### The chain")), 1),
    ]
    named = {r for table, column in tables for row in table for r in ticked(row[column])}
    common = section("policy.md", "### Common checks", "### TDX checks")
    tdx = common[common.index("`quote_signature` reasons for **TDX**") :].split("\n\n")[0]
    snp = rows(common[common.index("`quote_signature` reasons for **SEV-SNP**") :])
    named |= set(ticked(tdx.split(":", 1)[1])) | {r for row in snp for r in ticked(row[0])}
    return named - registry_docs._NOT_REASONS


def test_every_reason_in_the_docs_tables_has_a_case_or_a_named_gap() -> None:
    documented = _docs_reasons() - _NOT_REFUSALS
    gaps = set().union(*KNOWN_GAPS.values())
    assert documented - _covered() <= gaps
    assert {"nonce_mismatch", "oms_digest_mismatch", "smt_allowed"} <= documented  # parsed


def test_the_suite_stays_under_five_megabytes() -> None:
    size = sum(p.stat().st_size for p in SUITE.rglob("*") if p.is_file())
    assert size < 5_000_000, size


def test_the_suite_declares_its_gaps() -> None:
    manifest = json.loads((SUITE / "manifest.json").read_text())
    assert manifest["gaps"] == {}


def test_a_refusal_case_is_refused_for_its_reason_only() -> None:
    suite = load_suite(SUITE)
    for case in suite.cases:
        if case.kind in ("evidence", "chain"):
            assert judge(case, suite.root).others == (), case.id


def test_the_dcap_qvl_adapter_is_run_and_reported_as_it_answers() -> None:
    """Its results are reported as they are: no pass required, the quote cases attempted."""
    adapter = [sys.executable, str(SUITE / "adapters" / "dcap_qvl_adapter.py")]
    report = run_suite(load_suite(SUITE), adapter, timeout=60.0)
    document = report.to_json()
    assert {c["result"] for c in document["cases"]} <= {"pass", "fail", "unsupported", "skipped"}
    counts = (document["passed"], document["failed"], document["unsupported"], document["skipped"])
    assert sum(counts) == len(report.cases)
    by_kind = {c.id: c for c in report.cases}
    for case in load_suite(SUITE).cases:
        got = by_kind[case.id]
        if case.kind != "quote":
            assert got.unsupported and got.got == "unsupported", case.id
        elif not got.skipped:  # the adapter ran and answered in the protocol
            assert got.got.split()[0] in ("accept", "refuse", "unsupported"), case.id
            assert got.failure not in (ADAPTER_CRASHED, ADAPTER_OUTPUT_INVALID), got
    # A quote with its collateral is one dcap-qvl can judge: attempted, not unsupported.
    assert (
        any(c.id.startswith("quote/") and c.got.split()[0] != "unsupported" for c in report.cases)
        or report.skipped
    )


def _vendor_case_suite(tmp_path: Path, vectors: Path) -> Suite:
    suite = load_suite(SUITE, vectors)
    return dataclasses.replace(suite, cases=tuple(c for c in suite.cases if c.vectors))


def test_a_missing_vector_is_skipped_never_passed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    suite = _vendor_case_suite(tmp_path, tmp_path / "absent")
    assert suite.cases
    report = run_suite(suite, judge, strict=True)
    assert report.skipped == len(suite.cases) and report.passed == 0 and report.failed == 0


def test_a_missing_vector_fails_under_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    report = run_suite(_vendor_case_suite(tmp_path, tmp_path / "absent"), judge, strict=True)
    assert report.failed == len(report.cases)
    assert {c.failure for c in report.cases} == {VECTOR_MISSING}


def test_a_vector_with_other_bytes_is_refused_by_digest(tmp_path: Path) -> None:
    suite = _vendor_case_suite(tmp_path, tmp_path)
    for case in suite.cases:
        for ref in case.vectors.values():
            (tmp_path / ref.path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / ref.path).write_bytes(b"not the published vector")
    report = run_suite(suite, judge, strict=True)
    assert {c.failure for c in report.cases} == {VECTOR_DIGEST_MISMATCH}


def test_the_vendor_cases_pass_with_the_real_vectors(vectors_dir: Path) -> None:
    suite = _vendor_case_suite(Path(), vectors_dir)
    report = run_suite(suite, judge, strict=True)
    assert report.passed == len(suite.cases), report.table()
