"""The worked example in docs/evidence-format.md is what the code computes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from attestd.evidence import Binding, key_id, load_public_key_pem
from tests.evidence.builders import example_key, example_values

DOC = Path(__file__).resolve().parents[2] / "docs" / "evidence-format.md"
BLOCK = re.compile(r"<!-- example: ([a-z0-9-]+) -->\n```[a-z]*\n(.*?)\n```", re.DOTALL)


def _blocks() -> dict[str, str]:
    return dict(BLOCK.findall(DOC.read_text(encoding="utf-8")))


def test_document_shows_every_example_value() -> None:
    assert set(_blocks()) == set(example_values())


@pytest.mark.parametrize("name", sorted(example_values()))
def test_document_example_matches_the_code(name: str) -> None:
    assert _blocks()[name] == example_values()[name]


def test_documented_key_is_the_derived_key() -> None:
    public = load_public_key_pem(_blocks()["agent-public-key"])
    assert key_id(public) == key_id(example_key().public_key()) == _blocks()["agent-key-id"]


def test_documented_binding_parses_to_documented_inputs() -> None:
    binding = Binding.from_json(json.loads(_blocks()["binding-jcs"]))
    assert binding.nonce == bytes(range(32))
    assert binding.log_head.hex() == _blocks()["head-after-event1"]
