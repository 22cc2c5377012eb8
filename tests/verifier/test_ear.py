"""Signed attestation results: EAR JWTs round-trip, refuse forgeries, and map checks to AR4SI."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attestd.cli import main
from attestd.evidence import format_rfc3339
from attestd.verifier import (
    CHAIN_CHECK_NAMES,
    CHECK_NAMES,
    EAR_PROFILE,
    SNP_CHECK_NAMES,
    STAGE_CHECK_NAMES,
    TDX_CHECK_NAMES,
    AppraisalResult,
    AppraisalStatus,
    ResultAlgorithmError,
    ResultClaimsError,
    ResultError,
    ResultFormatError,
    ResultKeyError,
    ResultSignatureError,
    appraise,
    ear,
    load_signing_key,
    load_verification_key,
    policy_digest,
    sign_chain_result,
    sign_result,
    verify_result,
)
from attestd.verifier.chain import verify_chain
from attestd.verifier.ear import LEGACY_EAR_PROFILE, ResultExpiredError, result_statuses
from attestd.verifier.layout import load_layout
from attestd.verifier.policy import Policy
from tests.verifier.chain_builder import (
    STAGES,
    Pipeline,
    StageAgent,
    attestation_bytes,
    make_snp_agent,
    make_tdx_agent,
)
from tests.verifier.simulated_evidence import NONCE, Scenario

POLICY_ID = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def appraised(scenario: Scenario, policy: Policy, evidence: bytes | None = None) -> AppraisalResult:
    return appraise(
        evidence if evidence is not None else scenario.evidence(),
        nonce=NONCE,
        policy=policy,
        now=scenario.now,
    )


def as_hardware(result: AppraisalResult) -> AppraisalResult:
    """The same checks as if the quote had come from real hardware (to test the mapping)."""
    return dataclasses.replace(result, simulated=False)


def signed(result: AppraisalResult, key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    token = sign_result(result, key, policy_digest=POLICY_ID, nonce=NONCE)
    return verify_result(token, key.public_key(), nonce=NONCE)


def submod(claims: dict[str, Any], label: str = "tdx") -> dict[str, Any]:
    value: dict[str, Any] = claims["submods"][label]
    return value


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token_parts(token: str) -> list[str]:
    return token.split(".")


def decode(part: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return value


# -- round trip and the claims ----------------------------------------------------------


def test_signed_result_round_trips_with_the_ear_claims(
    scenario: Scenario, policy: Policy, key: ec.EllipticCurvePrivateKey
) -> None:
    result = appraised(scenario, policy)
    token = sign_result(result, key, policy_digest=POLICY_ID, nonce=NONCE, now=scenario.now)
    claims = verify_result(token, key.public_key(), nonce=NONCE, now=scenario.now)
    assert claims["eat_profile"] == EAR_PROFILE == "tag:ietf.org,2026:rats/ear#04"
    assert claims["iat"] == int(scenario.now.timestamp())
    assert claims["exp"] == claims["iat"] + 3600  # the default lifetime: one hour
    assert claims["ear_verifier_id"]["developer"] == "attestd"
    assert claims["ear_verifier_id"]["build"].startswith("attestd ")
    assert base64.urlsafe_b64decode(claims["eat_nonce"] + "==") == NONCE
    tdx = submod(claims)
    assert tdx["ear_appraisal_policy_ids"] == [POLICY_ID]
    assert not any(name.startswith("ear.") for name in [*claims, *tdx])
    assert list(tdx["attestd.checks"]) == [c.name for c in result.checks]
    assert tdx["attestd.checks"]["nonce"] == {
        "status": "pass",
        "reason": None,
        "detail": result.check("nonce").detail,
    }
    assert tdx["attestd.evidence"]["subjects"] == {
        name: dict(d) for name, d in result.evidence.subjects.items()
    }
    header = decode(token_parts(token)[0])
    assert header["alg"] == "ES256" and header["typ"] == "JWT"


def test_policy_digest_is_the_sha256_of_the_file() -> None:
    assert policy_digest(b"[trust]\n") == "sha256:" + hashlib.sha256(b"[trust]\n").hexdigest()


def test_a_naive_clock_is_a_programming_error(
    scenario: Scenario, policy: Policy, key: ec.EllipticCurvePrivateKey
) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sign_result(
            appraised(scenario, policy),
            key,
            policy_digest=POLICY_ID,
            now=scenario.now.replace(tzinfo=None),
        )


# -- forgeries are refused ---------------------------------------------------------------


@pytest.fixture
def token(scenario: Scenario, policy: Policy, key: ec.EllipticCurvePrivateKey) -> str:
    return sign_result(appraised(scenario, policy), key, policy_digest=POLICY_ID, nonce=NONCE)


def test_a_tampered_header_is_refused(token: str, key: ec.EllipticCurvePrivateKey) -> None:
    _, payload, signature = token_parts(token)
    header = b64(json.dumps({"alg": "ES256", "typ": "JWT"}).encode())
    with pytest.raises(ResultSignatureError):
        verify_result(f"{header}.{payload}.{signature}", key.public_key())


def test_a_tampered_payload_is_refused(token: str, key: ec.EllipticCurvePrivateKey) -> None:
    header, payload, signature = token_parts(token)
    claims = decode(payload)
    claims["submods"]["tdx"]["ear_status"] = "affirming"
    claims["submods"]["tdx"]["ear_trustworthiness_vector"]["hardware"] = 2
    forged = b64(json.dumps(claims).encode())
    with pytest.raises(ResultSignatureError) as caught:
        verify_result(f"{header}.{forged}.{signature}", key.public_key())
    assert caught.value.reason == "result_signature_invalid"


def test_a_tampered_signature_is_refused(token: str, key: ec.EllipticCurvePrivateKey) -> None:
    header, payload, signature = token_parts(token)
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[10] ^= 1
    with pytest.raises(ResultSignatureError):
        verify_result(f"{header}.{payload}.{b64(bytes(raw))}", key.public_key())


def test_another_verifiers_key_is_refused_and_named(token: str) -> None:
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(ResultSignatureError, match="it names key sha256:"):
        verify_result(token, other)


def test_alg_none_is_refused(token: str, key: ec.EllipticCurvePrivateKey) -> None:
    _, payload, _ = token_parts(token)
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    with pytest.raises(ResultAlgorithmError) as caught:
        verify_result(f"{header}.{payload}.", key.public_key())
    assert caught.value.reason == "result_algorithm_refused"


def test_hs256_keyed_with_the_public_key_is_refused(
    token: str, key: ec.EllipticCurvePrivateKey
) -> None:
    # The classic confusion: an HMAC "signed" with the verifier's public key as secret.
    _, payload, _ = token_parts(token)
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    secret = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    with pytest.raises(ResultAlgorithmError):
        verify_result(f"{header}.{payload}.{b64(mac)}", key.public_key())


@pytest.mark.parametrize(
    "extra", [{"crit": ["exp"]}, {"jwk": {"kty": "EC"}}, {"typ": "eat+cwt"}, {"alg": "ES384"}]
)
def test_header_parameters_other_than_alg_typ_kid_are_refused(
    token: str, key: ec.EllipticCurvePrivateKey, extra: dict[str, Any]
) -> None:
    _, payload, signature = token_parts(token)
    header = b64(json.dumps({"alg": "ES256", "typ": "JWT"} | extra).encode())
    with pytest.raises(ResultAlgorithmError):
        verify_result(f"{header}.{payload}.{signature}", key.public_key())


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "not a token",
        "a.b",
        "a.b.c.d",
        "..",
        "!!!.@@@.###",
        "e30.e30.e30=",
        "W10.e30.AAAA",  # header is a JSON array
        b64(b'{"alg":"ES256","alg":"ES256"}') + ".e30.AAAA",  # repeated member
        b64(b'{"alg": NaN}') + ".e30.AAAA",
        b64(b"\xff\xfe") + ".e30.AAAA",
        "x" * (ear.MAX_TOKEN_BYTES + 1),
    ],
)
def test_garbage_is_a_result_error_never_a_traceback(
    garbage: str, key: ec.EllipticCurvePrivateKey
) -> None:
    with pytest.raises(ResultError):
        verify_result(garbage, key.public_key())
    with pytest.raises(ResultError):
        verify_result(garbage.encode(), key.public_key())


def test_non_ascii_bytes_are_malformed(key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(ResultFormatError):
        verify_result("é.é.é".encode(), key.public_key())


def test_a_padded_or_non_canonical_part_is_malformed(
    token: str, key: ec.EllipticCurvePrivateKey
) -> None:
    header, payload, signature = token_parts(token)
    with pytest.raises(ResultFormatError, match="canonical"):
        verify_result(f"{header}.{payload}.{signature}=", key.public_key())


def _sign_claims(claims: dict[str, Any], key: ec.EllipticCurvePrivateKey) -> str:
    return ear._sign(claims, key)


NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
IAT = int(NOW.timestamp())


def _good_claims() -> dict[str, Any]:
    return {
        "eat_profile": EAR_PROFILE,
        "iat": IAT,
        "exp": IAT + 60,
        "ear_verifier_id": {"developer": "attestd", "build": "attestd test"},
        "submods": {
            "tdx": {"ear_status": "warning", "ear_trustworthiness_vector": {"hardware": 32},
                    "ear_appraisal_policy_ids": [POLICY_ID]}
        },
    }  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"eat_profile": "tag:example.com,2024:other"}, "eat_profile"),
        ({"iat": 1.5}, "iat"),
        ({"iat": True}, "iat"),
        ({"exp": None}, "exp"),
        ({"exp": IAT}, "exp"),
        ({"exp": str(IAT + 60)}, "exp"),
        ({"ear_verifier_id": {"developer": "attestd"}}, "verifier_id"),
        ({"ear_verifier_id": None, "ear.verifier-id": {"developer": "a", "build": "b"}},
         "verifier_id"),  # the old name does not count under the new profile
        ({"submods": {}}, "submods"),
        ({"submods": {"tdx": {"ear_status": "fine"}}}, "trust tier"),
        ({"submods": {"tdx": {"ear.status": "warning"}}}, "trust tier"),
        ({"submods": {"tdx": {"ear_status": "affirming",
                              "ear_trustworthiness_vector": {"hardware": 96}}}}, "better than"),
        ({"submods": {"tdx": {"ear_status": "warning",
                              "ear_trustworthiness_vector": {"firmware": 2}}}}, "unknown claim"),
        ({"submods": {"tdx": {"ear_status": "warning",
                              "ear_trustworthiness_vector": {"hardware": 300}}}}, "-128..127"),
        ({"submods": {"tdx": {"ear_status": "warning",
                              "ear_appraisal_policy_ids": POLICY_ID}}}, "policy_ids"),
        ({"eat_nonce": "not base64!"}, "eat_nonce"),
    ],
)  # fmt: skip
def test_claims_that_are_not_an_ear_are_refused_even_when_signed(
    key: ec.EllipticCurvePrivateKey, change: dict[str, Any], message: str
) -> None:
    assert verify_result(_sign_claims(_good_claims(), key), key.public_key(), now=NOW)
    claims = {k: v for k, v in (_good_claims() | change).items() if v is not None}
    token = _sign_claims(claims, key)
    with pytest.raises(ResultClaimsError, match=message):
        verify_result(token, key.public_key(), now=NOW)


def test_the_nonce_must_match_when_the_relying_party_gives_one(
    token: str, key: ec.EllipticCurvePrivateKey
) -> None:
    assert verify_result(token, key.public_key(), nonce=NONCE)
    with pytest.raises(ResultClaimsError, match="eat_nonce"):
        verify_result(token, key.public_key(), nonce=b"\x00" * 32)
    no_nonce = _sign_claims(_good_claims(), key)
    with pytest.raises(ResultClaimsError, match="eat_nonce"):
        verify_result(no_nonce, key.public_key(), nonce=NONCE, now=NOW)


def test_only_p256_keys_sign_and_verify(token: str) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ResultKeyError):
        verify_result(token, p384.public_key())
    pem = p384.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ResultKeyError):
        load_signing_key(pem)
    with pytest.raises(ResultKeyError):
        load_verification_key(b"-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----\n")


# -- expiry ------------------------------------------------------------------------------


def test_a_result_expires_after_its_lifetime_and_then_is_refused_by_name(
    scenario: Scenario, policy: Policy, key: ec.EllipticCurvePrivateKey
) -> None:
    issued = scenario.now
    token = sign_result(
        appraised(scenario, policy),
        key,
        policy_digest=POLICY_ID,
        now=issued,
        lifetime=timedelta(minutes=5),
    )
    claims = verify_result(token, key.public_key(), now=issued + timedelta(seconds=299))
    assert claims["exp"] - claims["iat"] == 300
    with pytest.raises(ResultExpiredError, match="expired at") as caught:
        verify_result(token, key.public_key(), now=issued + timedelta(seconds=300))
    assert caught.value.reason == "result_expired"
    # Without a clock, verification reads the current time: this token is long gone.
    stale = sign_result(
        appraised(scenario, policy),
        key,
        policy_digest=POLICY_ID,
        now=datetime.now(UTC) - timedelta(hours=2),
    )
    with pytest.raises(ResultExpiredError):
        verify_result(stale, key.public_key())
    assert verify_result(
        stale, key.public_key(), now=datetime.now(UTC) - timedelta(hours=1, seconds=1)
    )


def test_a_chain_result_expires_too(
    pipeline: Pipeline, tmp_path: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    result = verify_chain(attestation_bytes(pipeline.run()), load_layout(pipeline.layout(tmp_path)))
    token = sign_chain_result(
        result, key, policy_digest=POLICY_ID, now=NOW, lifetime=timedelta(days=1)
    )
    assert verify_result(token, key.public_key(), now=NOW)["exp"] == IAT + 86400
    with pytest.raises(ResultExpiredError):
        verify_result(token, key.public_key(), now=NOW + timedelta(days=1))


@pytest.mark.parametrize(
    "lifetime", [timedelta(0), timedelta(seconds=-5), timedelta(milliseconds=500)]
)
def test_a_lifetime_under_one_second_is_a_programming_error(
    scenario: Scenario, policy: Policy, key: ec.EllipticCurvePrivateKey, lifetime: timedelta
) -> None:
    with pytest.raises(ValueError, match="lifetime"):
        sign_result(appraised(scenario, policy), key, policy_digest=POLICY_ID, lifetime=lifetime)


def test_a_naive_verification_clock_is_a_programming_error(
    token: str, key: ec.EllipticCurvePrivateKey
) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_result(token, key.public_key(), now=datetime(2026, 1, 1))


# -- the 2023 Veraison profile that earlier attestd versions issued -----------------------


def _legacy_claims() -> dict[str, Any]:
    """A result as attestd issued it before draft-04: dotted names, no exp, one policy id."""
    return {
        "eat_profile": "tag:github.com,2023:veraison/ear",
        "iat": IAT,
        "ear.verifier-id": {"developer": "attestd", "build": "attestd 0.1.0"},
        "eat_nonce": b64(NONCE),
        "submods": {
            "tdx": {
                "ear.status": "warning",
                "ear.trustworthiness-vector": {"instance-identity": 2, "hardware": 32},
                "ear.appraisal-policy-id": POLICY_ID,
                "attestd.tee": {"type": "tdx", "simulated": True},
            }
        },
        "attestd.result": {"status": "warning", "simulated": True},
    }


def _legacy_token(claims: dict[str, Any], key: ec.EllipticCurvePrivateKey) -> str:
    # Signed with PyJWT directly, exactly as a third party (or old attestd) would.
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": "sha256:" + "00" * 32})


def test_a_result_in_the_2023_veraison_profile_is_still_accepted(
    key: ec.EllipticCurvePrivateKey,
) -> None:
    assert LEGACY_EAR_PROFILE == "tag:github.com,2023:veraison/ear" != EAR_PROFILE
    token = _legacy_token(_legacy_claims(), key)
    # No exp: an old token never expires by itself (the relying party bounds iat).
    claims = verify_result(token, key.public_key(), nonce=NONCE, now=NOW + timedelta(days=999))
    assert claims == _legacy_claims()  # returned as signed, not renamed
    assert result_statuses(claims) == {"tdx": "warning"}
    with pytest.raises(ResultSignatureError):
        verify_result(token, ec.generate_private_key(ec.SECP256R1()).public_key())


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"submods": {"tdx": {"ear_status": "warning"}}}, ResultClaimsError, "trust tier"),
        ({"submods": {"tdx": {"ear.status": "affirming",
                              "ear.trustworthiness-vector": {"hardware": 96}}}},
         ResultClaimsError, "better than"),
        ({"submods": {"tdx": {"ear.status": "none", "ear.appraisal-policy-id": [POLICY_ID]}}},
         ResultClaimsError, "policy-id"),
        ({"ear.verifier-id": {"build": "x"}}, ResultClaimsError, "verifier-id"),
        ({"exp": IAT + 60}, ResultExpiredError, "expired"),  # an exp, where present, counts
    ],
)  # fmt: skip
def test_a_2023_profile_result_is_checked_as_strictly(
    key: ec.EllipticCurvePrivateKey, change: dict[str, Any], error: type[ResultError], message: str
) -> None:
    token = _legacy_token(_legacy_claims() | change, key)
    with pytest.raises(error, match=message):
        verify_result(token, key.public_key(), now=NOW + timedelta(hours=1))


# -- the trust vector --------------------------------------------------------------------


def test_every_check_has_a_documented_mapping() -> None:
    assert set(CHECK_NAMES + TDX_CHECK_NAMES + SNP_CHECK_NAMES) == set(ear.APPRAISAL_CLAIMS)
    assert set(STAGE_CHECK_NAMES) - {"evidence"} == set(ear.STAGE_CLAIMS)
    assert set(CHAIN_CHECK_NAMES) == set(ear.CHAIN_CLAIMS)
    for rules in (ear.APPRAISAL_CLAIMS, ear.STAGE_CLAIMS, ear.CHAIN_CLAIMS):
        for claims in rules.values():
            assert {rule.category for rule in claims} <= set(ear.TRUST_CATEGORIES)


@pytest.mark.parametrize(
    ("code", "tier"),
    [(0, "none"), (1, "none"), (-1, "none"), (2, "affirming"), (31, "affirming"),
     (-2, "affirming"), (32, "warning"), (95, "warning"), (-33, "warning"),
     (96, "contraindicated"), (127, "contraindicated"), (-128, "contraindicated")],
)  # fmt: skip
def test_tiers_follow_ar4si_ranges(code: int, tier: str) -> None:
    assert ear.tier(code) == tier


def test_an_affirmed_hardware_appraisal_affirms_every_claim(
    scenario: Scenario, policy: Policy, key: ec.EllipticCurvePrivateKey
) -> None:
    result = as_hardware(appraised(scenario, policy))
    assert result.status is AppraisalStatus.AFFIRMING
    tdx = submod(signed(result, key))
    assert tdx["ear_status"] == "affirming"
    assert tdx["ear_trustworthiness_vector"] == {
        "instance-identity": 2,
        "configuration": 2,
        "executables": 2,
        "file-system": 2,
        "hardware": 2,
        "runtime-opaque": 2,
    }
    assert tdx["attestd.tee"]["simulated"] is False


def test_a_warning_names_its_claim(
    scenario: Scenario, tmp_path: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    # No rtmr2 in the policy: a reference value is absent, so executables are a warning.
    measurements = {k: v for k, v in scenario.measurements().items() if k != "rtmr2"}
    extra = "[tdx]\n" + "".join(f'{k} = ["{v}"]\n' for k, v in measurements.items())
    policy = scenario.policy(tmp_path, tdx=False, extra=extra)
    result = as_hardware(appraised(scenario, policy))
    assert result.status is AppraisalStatus.WARNING
    tdx = submod(signed(result, key))
    assert tdx["ear_status"] == "warning"
    assert tdx["ear_trustworthiness_vector"]["executables"] == 32
    assert tdx["ear_trustworthiness_vector"]["hardware"] == 2
    assert tdx["attestd.checks"]["rtmr2"]["reason"] == "reference_value_absent"


def test_a_contraindicated_appraisal_names_its_claims(
    scenario: Scenario, tmp_path: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    measurements = scenario.measurements() | {"mrtd": "00" * 48}
    extra = "[tdx]\n" + "".join(f'{k} = ["{v}"]\n' for k, v in measurements.items())
    policy = scenario.policy(tmp_path, tdx=False, extra=extra)
    wrong_nonce = scenario.evidence(nonce=b"\x01" * 32)
    result = as_hardware(appraised(scenario, policy, wrong_nonce))
    assert result.status is AppraisalStatus.CONTRAINDICATED
    tdx = submod(signed(result, key))
    vector = tdx["ear_trustworthiness_vector"]
    assert tdx["ear_status"] == "contraindicated"
    assert vector["executables"] == 96  # MRTD is not an allowed value
    assert vector["instance-identity"] == 99  # the binding carries another nonce
    assert vector["hardware"] == 2  # the quote itself is genuine
    assert tdx["attestd.checks"]["nonce"]["reason"] == "nonce_mismatch"


def test_a_quote_under_another_root_is_unrecognized_hardware(
    scenario: Scenario, policy: Policy, key: ec.EllipticCurvePrivateKey
) -> None:
    from attestd.verifier.policy import TrustRoot

    intel = dataclasses.replace(
        policy, trust=dataclasses.replace(policy.trust, root=TrustRoot.INTEL)
    )
    result = appraised(scenario, intel)
    assert result.check("quote_signature").reason == "root_of_trust_mismatch"
    tdx = submod(signed(result, key))
    assert tdx["ear_trustworthiness_vector"]["hardware"] == 97
    assert tdx["ear_status"] == "contraindicated"


def test_simulated_evidence_never_yields_affirming_hardware(
    scenario: Scenario, policy: Policy, key: ec.EllipticCurvePrivateKey
) -> None:
    result = appraised(scenario, policy)
    assert result.simulated and result.status is AppraisalStatus.AFFIRMING
    claims = signed(result, key)
    tdx = submod(claims)
    assert tdx["ear_trustworthiness_vector"]["hardware"] == 32
    assert tdx["ear_trustworthiness_vector"]["runtime-opaque"] == 32
    assert tdx["ear_status"] == "warning"
    assert tdx["attestd.tee"]["simulated"] is True
    assert tdx["attestd.tee"]["root-of-trust"]["evidence-simulated"] is True
    assert claims["attestd.result"] == {"status": "warning", "simulated": True}


# -- chains ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    from attestd.tee.snp import _simulated_pki as snp_pki

    tdx: StageAgent = make_tdx_agent(tmp_path_factory.mktemp("tdx"))
    snp = make_snp_agent(tmp_path_factory.mktemp("snp"), snp_pki.generate())
    return Pipeline({"prepare": tdx, "train": snp, "quantize": tdx, "package": snp})


def test_a_chain_result_has_one_submod_per_stage_and_one_for_the_chain(
    pipeline: Pipeline, tmp_path: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    built = pipeline.run()
    layout = pipeline.layout(tmp_path)
    result = verify_chain(attestation_bytes(built), load_layout(layout))
    assert result.status is AppraisalStatus.AFFIRMING
    token = sign_chain_result(result, key, policy_digest=policy_digest(layout.read_bytes()))
    claims = verify_result(token, key.public_key())
    assert list(claims["submods"]) == [*STAGES, "chain"]
    assert "eat_nonce" not in claims
    for stage, tee in zip(STAGES, ["tdx", "sev-snp", "tdx", "sev-snp"], strict=True):
        stage_claims = claims["submods"][stage]
        assert stage_claims["attestd.tee"]["type"] == tee
        assert stage_claims["ear_trustworthiness_vector"]["hardware"] == 32  # simulated
        assert stage_claims["ear_trustworthiness_vector"]["sourced-data"] == 2
        assert stage_claims["ear_status"] == "warning"
        assert "evidence.quote_signature" in stage_claims["attestd.checks"]
    chain = claims["submods"]["chain"]
    assert chain["ear_trustworthiness_vector"] == {"sourced-data": 2}
    assert chain["ear_status"] == "warning"  # no better than its simulated stages
    assert chain["attestd.chain"]["stages"] == list(STAGES)


def test_a_broken_chain_is_contraindicated(
    pipeline: Pipeline, tmp_path: Path, key: ec.EllipticCurvePrivateKey
) -> None:
    built = pipeline.run()
    files = attestation_bytes(built, ["prepare", "train", "package"])  # quantize is missing
    result = verify_chain(files, load_layout(pipeline.layout(tmp_path)))
    claims = verify_result(
        sign_chain_result(result, key, policy_digest=POLICY_ID), key.public_key()
    )
    chain = claims["submods"]["chain"]
    assert chain["ear_status"] == "contraindicated"
    assert chain["ear_trustworthiness_vector"]["sourced-data"] == 96
    assert claims["attestd.result"]["status"] == "contraindicated"


# -- attestctl ---------------------------------------------------------------------------


@pytest.fixture
def keys(tmp_path: Path, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    private, public = tmp_path / "k.pem", tmp_path / "k.pub.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def _verify_args(scenario: Scenario, tmp_path: Path) -> list[str]:
    evidence = tmp_path / "evidence.dsse"
    evidence.write_bytes(scenario.evidence())
    policy_dir = tmp_path / "policy"
    policy_dir.mkdir()
    scenario.policy(policy_dir)
    return [
        "verify", str(evidence), "--nonce", NONCE.hex(),
        "--policy", str(policy_dir / "policy.toml"), "--now", format_rfc3339(scenario.now),
    ]  # fmt: skip


def test_cli_writes_a_result_that_result_verify_accepts_and_rejects_tampered(
    scenario: Scenario,
    tmp_path: Path,
    keys: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    private, public = keys
    out = tmp_path / "r.jwt"
    args = _verify_args(scenario, tmp_path)
    assert main([*args, "--result-key", str(private), "--result-out", str(out)]) == 0
    capsys.readouterr()
    now = ["--now", format_rfc3339(scenario.now)]  # the time the result was issued (--now)
    assert (
        main(["result", "verify", str(out), "--key", str(public), "--nonce", NONCE.hex(), *now])
        == 0
    )
    captured = capsys.readouterr()
    claims = json.loads(captured.out)
    assert claims["submods"]["tdx"]["ear_status"] == "warning"
    assert "tdx=warning" in captured.err
    digest = policy_digest((tmp_path / "policy" / "policy.toml").read_bytes())
    assert claims["submods"]["tdx"]["ear_appraisal_policy_ids"] == [digest]

    header, payload, signature = out.read_text().strip().split(".")
    forged = decode(payload)
    forged["submods"]["tdx"]["ear_status"] = "contraindicated"
    tampered = tmp_path / "tampered.jwt"
    tampered.write_text(f"{header}.{b64(json.dumps(forged).encode())}.{signature}\n")
    assert main(["result", "verify", str(tampered), "--key", str(public), *now]) == 1
    assert "result_signature_invalid" in capsys.readouterr().err


def test_cli_result_lifetime_sets_exp_and_result_verify_refuses_an_expired_result(
    scenario: Scenario,
    tmp_path: Path,
    keys: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    private, public = keys
    out = tmp_path / "r.jwt"
    args = [
        *_verify_args(scenario, tmp_path),
        "--result-key",
        str(private),
        "--result-out",
        str(out),
    ]
    assert main([*args, "--result-lifetime", "120"]) == 0
    capsys.readouterr()
    issued = scenario.now
    verify = ["result", "verify", str(out), "--key", str(public), "--now"]
    assert main([*verify, format_rfc3339(issued + timedelta(seconds=119))]) == 0
    assert json.loads(capsys.readouterr().out)["exp"] == int(issued.timestamp()) + 120
    assert main([*verify, format_rfc3339(issued + timedelta(seconds=120))]) == 1
    assert "result REJECTED: result_expired" in capsys.readouterr().err


def test_cli_result_verify_accepts_a_2023_profile_result(
    tmp_path: Path,
    key: ec.EllipticCurvePrivateKey,
    keys: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, public = keys
    old = tmp_path / "old.jwt"
    old.write_text(_legacy_token(_legacy_claims(), key) + "\n")
    assert main(["result", "verify", str(old), "--key", str(public), "--nonce", NONCE.hex()]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["eat_profile"] == LEGACY_EAR_PROFILE
    assert "tdx=warning" in captured.err


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "soon"])
def test_cli_result_lifetime_must_be_a_positive_whole_number_of_seconds(
    scenario: Scenario, tmp_path: Path, keys: tuple[Path, Path], value: str
) -> None:
    private, _ = keys
    args = [*_verify_args(scenario, tmp_path), "--result-key", str(private), "--result-out",
            str(tmp_path / "r.jwt"), "--result-lifetime", value]  # fmt: skip
    with pytest.raises(SystemExit) as caught:
        main(args)
    assert caught.value.code == 2
    assert not (tmp_path / "r.jwt").exists()


def test_cli_result_verify_refuses_bad_input_with_exit_2(
    tmp_path: Path, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, public = keys
    garbage = tmp_path / "garbage.jwt"
    garbage.write_text("this is not a token\n")
    assert main(["result", "verify", str(garbage), "--key", str(public)]) == 2
    assert main(["result", "verify", str(tmp_path / "absent.jwt"), "--key", str(public)]) == 2
    not_a_key = tmp_path / "not-a-key.pem"
    not_a_key.write_text("hello\n")
    assert main(["result", "verify", str(garbage), "--key", str(not_a_key)]) == 2
    assert "result_key_invalid" in capsys.readouterr().err


def test_cli_result_key_and_out_go_together_and_a_bad_key_stops_early(
    scenario: Scenario, tmp_path: Path, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    private, _ = keys
    args = _verify_args(scenario, tmp_path)
    assert main([*args, "--result-key", str(private)]) == 2
    assert main([*args, "--result-out", str(tmp_path / "r.jwt")]) == 2
    assert main([*args, "--result-lifetime", "60"]) == 2  # a lifetime of no result
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key\n")
    assert main([*args, "--result-key", str(bad), "--result-out", str(tmp_path / "r.jwt")]) == 2
    assert not (tmp_path / "r.jwt").exists()
    assert "go together" in capsys.readouterr().err


def test_cli_chain_verify_writes_a_chain_result(
    pipeline: Pipeline,
    tmp_path: Path,
    keys: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    private, public = keys
    built = pipeline.run()
    files = []
    for name, stage in built.items():
        path = tmp_path / f"{name}.json"
        path.write_bytes(stage.attestation)
        files.append(str(path))
    layout = pipeline.layout(tmp_path)
    out = tmp_path / "chain.jwt"
    argv = ["chain", "verify", *files, "--layout", str(layout)]
    assert main([*argv, "--result-key", str(private), "--result-out", str(out)]) == 0
    capsys.readouterr()
    assert main(["result", "verify", str(out), "--key", str(public)]) == 0
    claims = json.loads(capsys.readouterr().out)
    assert list(claims["submods"]) == [*STAGES, "chain"]
    assert claims["submods"]["chain"]["ear_appraisal_policy_ids"] == [
        policy_digest(layout.read_bytes())
    ]
