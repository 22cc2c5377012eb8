"""The docs' tables of checks, reasons and AR4SI claims say what the registry declares."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from attestd.verifier.checks import CheckDef, names
from attestd.verifier.quote import SNP_QUOTE_CHECKS, TDX_QUOTE_CHECKS
from attestd.verifier.registry import SUITES, claims_table, find

DOCS = Path(__file__).resolve().parents[2] / "docs"
_TICKED = re.compile(r"`([^`]+)`")
_NAME = re.compile(r"[a-z][a-z0-9_]*")
# Backticked words in a reasons cell that are statuses or policy keys, not reasons.
_NOT_REASONS = {"warn", "skip", "allow_debug", "require_ccel"}

Suite = Sequence[CheckDef[Any]]


def _section(doc: str, start: str, end: str | None = None) -> str:
    text = (DOCS / doc).read_text(encoding="utf-8")
    assert start in text, f"{doc} has no {start!r}"
    text = text[text.index(start) :]
    return text[: text.index(end)] if end is not None else text


def _rows(text: str) -> list[list[str]]:
    """The body rows of the first table in ``text``, as stripped cells."""
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[first + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def _ticked(cell: str) -> list[str]:
    return [t for t in _TICKED.findall(cell) if _NAME.fullmatch(t)]


def _reasons(checks: Iterable[str], suite: Suite) -> set[str]:
    by_name = {c.name: c for c in suite}
    return {reason for name in checks for reason in by_name[name].reasons}


def _assert_reason_table(rows: list[list[str]], suite: Suite, column: int) -> None:
    """Every check of ``suite`` has rows; each group of checks in one row documents exactly
    the reasons those checks declare (over all their rows)."""
    documented: dict[tuple[str, ...], set[str]] = {}
    for row in rows:
        if row[0] == "any":  # the runner's internal_error, common to all
            assert _ticked(row[column]) == ["internal_error"]
            continue
        group = tuple(_ticked(row[0]))
        documented.setdefault(group, set()).update(
            r for r in _ticked(row[column]) if r not in _NOT_REASONS
        )
    named = [name for group in documented for name in group]
    assert sorted(named) == sorted(names(suite)), "the table names other checks"
    for group, reasons in documented.items():
        assert reasons == _reasons(group, suite), group


def test_the_common_checks_table_is_the_registry() -> None:
    section = _section("policy.md", "### Common checks", "### TDX checks")
    rows = _rows(section)
    # quote_signature's TEE reasons follow the table: TDX's in a sentence, SEV-SNP's in a table.
    tdx = section[section.index("`quote_signature` reasons for **TDX**") :].split("\n\n")[0]
    snp = _rows(section[section.index("`quote_signature` reasons for **SEV-SNP**") :])
    tee_reasons = _ticked(tdx.split(":", 1)[1]) + [r for row in snp for r in _ticked(row[0])]
    suite = SUITES["appraisal"]
    for row in rows:
        if row[0] == "`quote_signature`":
            row[3] += " " + " ".join(f"`{r}`" for r in tee_reasons)
    _assert_reason_table(rows, suite, column=3)
    needs = {row[0].strip("`"): row[1] for row in rows}
    for check in suite:
        shown = needs[check.name]
        for need in check.needs:
            word = {"evidence_format": "format", "quote_signature": "quote"}.get(need, f"`{need}`")
            assert word in shown, (check.name, need)


@pytest.mark.parametrize(("suite", "heading"), [("tdx", "### TDX checks"), ("snp", "### SEV-SNP")])
def test_the_tee_checks_tables_are_the_registry(suite: str, heading: str) -> None:
    _assert_reason_table(_rows(_section("policy.md", heading)), SUITES[suite], column=2)
    assert all(c.needs == ("evidence_format", "quote_signature") for c in SUITES[suite])


def test_the_stage_checks_table_is_the_registry() -> None:
    rows = _rows(_section("layout.md", "### Per stage attestation"))
    evidence = [row for row in rows if row[0] == "`evidence`"]
    assert len(evidence) == 1 and not find("stage", "evidence").reasons  # the appraisal's own
    evidence[0][1] = ""
    _assert_reason_table(rows, SUITES["stage"], column=1)


def test_the_chain_checks_table_is_the_registry() -> None:
    _assert_reason_table(_rows(_section("layout.md", "### The chain")), SUITES["chain"], column=1)


def _value(cell: str) -> int | None:
    number = re.match(r"-?\d+", cell)
    return int(number.group()) if number else None


def _claims_in(rows: list[list[str]]) -> dict[tuple[str, str], tuple[Any, ...]]:
    claims: dict[tuple[str, str], tuple[Any, ...]] = {}
    for check_cell, category_cell, ok, warn, fail in rows:
        if category_cell.startswith("("):  # a check that makes no claims of its own
            continue
        by_reason: dict[str, int | None] = {}
        fail_value = _value(fail)
        if " for " in fail:
            overriding = fail.split(" for ")
            code = _value(overriding[-2].split(";")[-1].strip())
            by_reason = dict.fromkeys(_ticked(overriding[-1]), code)
            if ";" not in fail:  # "96 for `x` only": no claim for other failures
                fail_value = None
        for check in _ticked(check_cell):
            for category in category_cell.split(" and "):
                claims[(check, category)] = (_value(ok), _value(warn), fail_value, by_reason)
    return claims


def _claims_of(suite: Suite) -> dict[tuple[str, str], tuple[Any, ...]]:
    return {
        (name, c.category): (c.ok, c.warn, c.fail, dict(c.by_reason))
        for name, claims in claims_table(suite).items()
        for c in claims
    }


@pytest.mark.parametrize(
    ("heading", "suite"),
    [
        ("Appraisal checks (", SUITES["appraisal"] + SUITES["tdx"] + SUITES["snp"]),
        ("Stage checks (", SUITES["stage"]),
        ("Chain checks:", SUITES["chain"]),
    ],
)
def test_the_trust_vector_tables_are_the_registry(heading: str, suite: Suite) -> None:
    rows = _rows(_section("attestation-results.md", heading))
    assert _claims_in(rows) == _claims_of(suite)
    without = {row[0].strip("`") for row in rows if row[1].startswith("(")}
    assert without == {c.name for c in suite if not c.claims}


def test_the_quote_tool_docs_name_its_checks_and_reasons() -> None:
    section = _section("quote-tools.md", "### The output", "### TDX with collateral")
    line = next(x for x in section.splitlines() if x.startswith("- `checks`"))
    assert _ticked(line)[1:3] == list(names(TDX_QUOTE_CHECKS)) == list(names(SNP_QUOTE_CHECKS))
    lists = {
        part.split(":")[0].strip(): set(_ticked(part))
        for part in re.split(r";\n- ", section[section.index("- for the chain") :].split("\n\n")[0])
    }
    assert lists["- for the chain"] == set(TDX_QUOTE_CHECKS[0].reasons)
    assert lists["for DCAP"] <= set(TDX_QUOTE_CHECKS[1].reasons)  # the docs say "…"
    assert lists["for SEV-SNP"] <= set(SNP_QUOTE_CHECKS[0].reasons)


def test_the_quote_tool_suites_are_in_the_registry() -> None:
    assert SUITES["quote_tdx"] is TDX_QUOTE_CHECKS
    assert SUITES["quote_snp"] is SNP_QUOTE_CHECKS
    assert not claims_table(TDX_QUOTE_CHECKS) and not claims_table(SNP_QUOTE_CHECKS)
