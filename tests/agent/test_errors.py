"""Error messages repeat outside values only up to a bound."""

from __future__ import annotations

from attestd.agent.errors import MAX_ECHO_CHARS, echo, truncate


def test_a_short_value_is_echoed_whole_as_its_repr() -> None:
    assert echo("model.bin") == "'model.bin'"
    assert echo(b"\x00") == "b'\\x00'"


def test_a_long_value_is_cut_with_an_ellipsis_and_its_length() -> None:
    text = echo("x" * 20_000)
    assert text.startswith("'xxx")
    assert text.endswith("… (20000 characters)")
    assert len(text) < MAX_ECHO_CHARS + 40


def test_long_bytes_are_counted_in_bytes() -> None:
    assert echo(b"y" * 5000).endswith("… (5000 bytes)")


def test_truncate_leaves_text_at_the_limit_alone() -> None:
    assert truncate("abc", 3) == "abc"
    assert truncate("abcd", 3) == "abc… (4 characters)"
