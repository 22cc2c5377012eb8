"""The EAR the service signs per appraisal is the JWS PyJWT would write for the same claims."""

from __future__ import annotations

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from attestd.evidence import key_id
from attestd.verifier.ear import _sign as sign_claims

CLAIMS = {
    "eat_profile": "tag:github.com,2023:veraison/ear",
    "iat": 1_700_000_000,
    "exp": 1_700_000_300,
    "ear_verifier_id": {"developer": "attestd", "build": "0.1.0"},
    "eat_nonce": "AAECAw",
    "submods": {"tdx": {"ear_status": "warning", "note": "non-ASCII: é", "ratio": 1.5}},
    "attestd.result": {"status": "warning", "simulated": True},
}


def test_header_and_payload_are_pyjwts_bytes_and_the_signature_verifies() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    token = sign_claims(CLAIMS, key)
    reference = jwt.encode(
        dict(CLAIMS), key, algorithm="ES256", headers={"kid": key_id(key.public_key())}
    )
    header, payload, signature = token.split(".")
    assert [header, payload] == reference.split(".")[:2]
    # ES256 in a JWS is the raw 64-byte r||s, not DER: 86 base64url characters.
    assert len(signature) == 86
    decoded = jwt.decode(
        token,
        key.public_key(),
        algorithms=["ES256"],
        options={"verify_exp": False, "verify_iat": False},
    )
    assert decoded == CLAIMS


def test_a_second_key_gets_its_own_header() -> None:
    first, second = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    one, two = sign_claims(CLAIMS, first), sign_claims(CLAIMS, second)
    assert one.split(".")[0] != two.split(".")[0]
    assert jwt.get_unverified_header(two)["kid"] == key_id(second.public_key())
