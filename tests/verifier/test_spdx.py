"""SPDX licence expressions: the grammar, the precedence, and what a set of licences allows."""

from __future__ import annotations

import pytest

from attestd.verifier.spdx import (
    Compound,
    LicenseId,
    SpdxError,
    WithException,
    is_allowed,
    license_ids,
    parse_expression,
)

CLASSPATH = "GPL-2.0-only WITH Classpath-exception-2.0"


def test_a_single_id_parses_to_itself() -> None:
    assert parse_expression("Apache-2.0") == LicenseId("Apache-2.0")


def test_with_binds_tighter_than_and_which_binds_tighter_than_or() -> None:
    expression = parse_expression(
        "MIT OR GPL-2.0-only WITH Classpath-exception-2.0 AND BSD-3-Clause"
    )
    assert expression == Compound(
        "OR",
        (
            LicenseId("MIT"),
            Compound(
                "AND",
                (
                    WithException(LicenseId("GPL-2.0-only"), "Classpath-exception-2.0"),
                    LicenseId("BSD-3-Clause"),
                ),
            ),
        ),
    )


def test_parentheses_override_precedence() -> None:
    expression = parse_expression("(MIT OR Apache-2.0) AND BSD-3-Clause")
    assert isinstance(expression, Compound) and expression.operator == "AND"
    assert license_ids(expression) == {"MIT", "Apache-2.0", "BSD-3-Clause"}


@pytest.mark.parametrize(
    "text",
    ["LicenseRef-internal", "DocumentRef-spdx-tool-1.2:LicenseRef-MIT-Style-2", "GPL-2.0+"],
)
def test_references_and_or_later_are_ids(text: str) -> None:
    assert parse_expression(text) == LicenseId(text)


@pytest.mark.parametrize(
    ("expression", "allowed", "verdict"),
    [
        ("MIT", {"MIT"}, True),
        ("mit", {"MIT"}, True),  # ids compare case-insensitively
        ("GPL-3.0-only", {"MIT"}, False),
        ("MIT OR GPL-3.0-only", {"MIT"}, True),
        ("MIT AND GPL-3.0-only", {"MIT"}, False),
        ("(MIT OR GPL-3.0-only) AND (Apache-2.0 OR AGPL-3.0-only)", {"MIT", "Apache-2.0"}, True),
        ("(MIT OR GPL-3.0-only) AND AGPL-3.0-only", {"MIT", "Apache-2.0"}, False),
        ("GPL-2.0-only WITH Classpath-exception-2.0", {"GPL-2.0-only"}, True),
        ("GPL-2.0-only WITH Classpath-exception-2.0", {CLASSPATH}, True),
        ("GPL-2.0-only WITH Classpath-exception-2.0", {"MIT"}, False),
        ("GPL-2.0+", {"GPL-2.0"}, True),
        ("GPL-2.0", {"GPL-2.0+"}, False),
    ],
)  # fmt: skip
def test_allowed_when_some_choice_of_or_branches_uses_only_allowed_ids(
    expression: str, allowed: set[str], verdict: bool
) -> None:
    assert is_allowed(expression, allowed) is verdict


def test_a_long_expression_is_evaluated_without_enumerating_choices() -> None:
    # 3^30 choices if enumerated; one pass as a boolean formula.
    text = " AND ".join(f"(GPL-3.0 OR MIT OR X-{i})" for i in range(30))
    assert is_allowed(text, {"MIT"})
    assert not is_allowed(text + " AND GPL-3.0", {"MIT"})


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "MIT AND",
        "AND MIT",
        "(MIT",
        "MIT)",
        "()",
        "MIT Apache-2.0",
        "MIT and Apache-2.0",
        "MIT WITH",
        "MIT WITH GPL-2.0+",
        "MIT OR OR Apache-2.0",
        "M!T",
        "(" * 70 + "MIT" + ")" * 70,
    ],
)
def test_malformed_expressions_are_license_invalid(text: str) -> None:
    with pytest.raises(SpdxError) as caught:
        parse_expression(text)
    assert caught.value.reason == "license_invalid"
