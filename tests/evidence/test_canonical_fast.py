"""The fast canonical encoder writes exactly rfc8785's bytes, and refuses what it refuses."""

from __future__ import annotations

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from attestd.evidence.canonical import _plain, canonical_json
from attestd.evidence.errors import EvidenceFormatError

_SAFE = 2**53 - 1
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-_SAFE, max_value=_SAFE)
    | st.text()
    | st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x3F))
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(_values)
def test_fast_path_writes_rfc8785_bytes(value: object) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [
        {"\U0001f600": 1, "\ufb01": 2},  # UTF-16 order differs from code-point order
        {"a": 1.5},
        {"\x7f\x1f\u2028": '\x00\b\f\n\r\t"\\/'},
        [True, None, -0, "é"],
    ],
)
def test_awkward_values_match_rfc8785(value: object) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)  # type: ignore[arg-type]


def test_key_order_outside_the_bmp_is_utf16_order() -> None:
    assert not _plain({"\U0001f600": 1})
    assert canonical_json({"\U0001f600": 1, "\ufb01": 2}).startswith('{"\U0001f600"'.encode())


@pytest.mark.parametrize(
    "value", [{"a": 2**53}, {"a": float("nan")}, {"a": "\ud800"}, {1: "x"}, {"a": object()}]
)
def test_what_jcs_cannot_represent_is_refused(value: object) -> None:
    with pytest.raises(EvidenceFormatError):
        canonical_json(value)
