"""RFC 8785 known answers, and refusal of what JCS cannot represent."""

from __future__ import annotations

import pytest

from attestd.evidence import EvidenceFormatError, canonical_json


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b": 2, "a": 1}, b'{"a":1,"b":2}'),
        ([1, "x", None, True, False], b'[1,"x",null,true,false]'),
        ({"nested": {"z": [], "y": {}}}, b'{"nested":{"y":{},"z":[]}}'),
        # RFC 8785 section 3.2.2.3 number serialization.
        (
            [1e30, 4.50, 0.002, 1e-7, -0.0, 333333333.3333333],
            b"[1e+30,4.5,0.002,1e-7,0,333333333.3333333]",
        ),
        # RFC 8785 section 3.2.2.2 string escaping.
        (
            "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/",
            '"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"'.encode(),
        ),
    ],
)
def test_canonical_json_matches_rfc8785_known_answers(value: object, expected: bytes) -> None:
    assert canonical_json(value) == expected


def test_object_members_sort_by_utf16_code_units() -> None:
    # RFC 8785 section 3.2.3: the emoji (surrogates D83D DE00) sorts before U+FB33.
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    order = [
        "Carriage Return",
        "One",
        "Control",
        "Latin Small Letter O With Diaeresis",
        "Euro Sign",
        "Emoji: Grinning Face",
        "Hebrew Letter Dalet With Dagesh",
    ]
    text = canonical_json(value).decode()
    positions = [text.index(name) for name in order]
    assert positions == sorted(positions)


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), 2**53, {1: "x"}, b"bytes", object(), "\ud800", {1, 2}],
)
def test_non_json_values_raise_evidence_format_error(value: object) -> None:
    with pytest.raises(EvidenceFormatError):
        canonical_json(value)


def test_deep_nesting_raises_evidence_format_error() -> None:
    value: object = []
    for _ in range(100_000):
        value = [value]
    with pytest.raises(EvidenceFormatError):
        canonical_json(value)
