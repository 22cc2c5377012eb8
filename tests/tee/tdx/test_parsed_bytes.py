"""A parsed quote keeps its input's bytes where the rebuild would give the same ones."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from attestd.tee.tdx.abi import parse_quote, signed_region
from attestd.tee.tdx.simulated import SimulatedTdxBackend


def test_signed_region_and_certification_data_equal_their_rebuilds(tmp_path: Path) -> None:
    raw = SimulatedTdxBackend.open(tmp_path).get_quote(bytes(range(64)))
    quote = parse_quote(raw)
    cert_data = quote.certification_data
    assert quote.signed_region == signed_region(quote.header, quote.body)
    rebuilt = dataclasses.replace(cert_data)  # a value built, not parsed: no input bytes
    assert cert_data.to_bytes() == rebuilt.to_bytes()
    assert quote.to_bytes() == raw[: len(quote.to_bytes())]


def test_a_changed_quote_is_rebuilt_from_its_fields(tmp_path: Path) -> None:
    quote = parse_quote(SimulatedTdxBackend.open(tmp_path).get_quote(bytes(64)))
    body = dataclasses.replace(quote.body, report_data=b"\x01" * 64)
    changed = dataclasses.replace(quote, body=body)
    assert changed.signed_region == signed_region(changed.header, body)
    assert changed.signed_region != quote.signed_region
