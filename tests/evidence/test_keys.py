"""Key ids and PEM handling."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from attestd.evidence import EvidenceFormatError, key_id, load_public_key_pem, public_key_pem


def test_key_id_is_sha256_of_der_spki() -> None:
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert key_id(public) == "sha256:" + hashlib.sha256(der).hexdigest()


def test_pem_round_trip_keeps_the_key_id() -> None:
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = public_key_pem(public)
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert key_id(load_public_key_pem(pem)) == key_id(public)


def _pem(public: object) -> str:
    return public.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@pytest.mark.parametrize(
    "pem",
    [
        _pem(ec.generate_private_key(ec.SECP384R1()).public_key()),
        _pem(ed25519.Ed25519PrivateKey.generate().public_key()),
        "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n",
        "",
        "ünïcode",
        "x" * 10_000,
    ],
)
def test_load_public_key_pem_accepts_only_p256(pem: str) -> None:
    with pytest.raises(EvidenceFormatError):
        load_public_key_pem(pem)
