"""The appraisal's fast paths give exactly the bytes and answers of the general code."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from attestd.evidence import (
    Binding,
    EvidenceFormatError,
    canonical_json,
    key_id,
    leaf_bytes,
    load_public_key_pem,
    public_key_pem,
)
from attestd.evidence.envelope import _b64_dsse
from attestd.evidence.keys import pem_key_id


def _binding(agent_key_id: str, subjects: str = "ab" * 32) -> Binding:
    issued = datetime(2026, 12, 2, 6, 55, 38, 123456, tzinfo=UTC)
    return Binding(os.urandom(32), subjects, os.urandom(48), agent_key_id, issued)


def test_leaf_bytes_equal_the_jcs_of_the_binding() -> None:
    binding = _binding("sha256:" + "cd" * 32)
    assert leaf_bytes(binding) == canonical_json(binding.to_json())


@pytest.mark.parametrize("odd", ['key "quoted"', "clé\u2028", "sha256:" + "CD" * 32])
def test_leaf_bytes_of_strings_that_need_escaping_take_the_general_encoder(odd: str) -> None:
    binding = _binding(odd, subjects=odd)
    assert leaf_bytes(binding) == canonical_json(binding.to_json())


@pytest.mark.parametrize("size", [0, 1, 2, 3, 31, 32, 33])
def test_dsse_base64_decodes_every_accepted_spelling_alike(size: int) -> None:
    data = os.urandom(size)
    standard = base64.b64encode(data).decode()
    for text in (standard, standard.rstrip("="), base64.urlsafe_b64encode(data).decode()):
        assert _b64_dsse(text, "$.payload", max_size=64) == data


def test_dsse_base64_over_the_limit_is_refused_on_the_fast_path_too() -> None:
    with pytest.raises(EvidenceFormatError, match="more than the limit"):
        _b64_dsse(base64.b64encode(bytes(65)).decode(), "$.payload", max_size=64)


def test_pem_key_id_is_the_key_id_and_refuses_what_load_refuses() -> None:
    pem = public_key_pem(ec.generate_private_key(ec.SECP256R1()).public_key())
    assert pem_key_id(pem) == key_id(load_public_key_pem(pem))
    assert pem_key_id(pem) == pem_key_id(pem)
    for bad in ("not a key", b"bytes"):
        with pytest.raises(EvidenceFormatError):
            pem_key_id(bad)  # type: ignore[arg-type]
