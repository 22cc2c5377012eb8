"""Signed attestation results: EAR (EAT Attestation Results) as an ES256 JWT.

    from attestd.verifier import appraise, policy_digest, sign_result, verify_result

    result = appraise(evidence, nonce=nonce, policy=policy)
    token = sign_result(result, verifier_key, policy_digest=policy_digest(policy_bytes),
                        nonce=nonce, lifetime=timedelta(hours=1))
    claims = verify_result(token, verifier_public_key)       # ResultError if not genuine
    claims["submods"]["tdx"]["ear_status"]                   # "affirming", "warning", ...

The claims follow draft-ietf-rats-ear-04 (profile ``tag:ietf.org,2026:rats/ear#04``):
one ``submods`` entry per appraised attester (the TEE for one appraisal, each
stage and the chain itself for a pipeline), each with an ``ear_status`` and an
AR4SI ``ear_trustworthiness_vector`` derived from attestd's named checks by
the claims each check declares (``attestd.verifier.registry``). attestd's own
claims are maps under the ``attestd.`` prefix.
A simulated TEE can never be affirmed: its ``hardware`` and ``runtime-opaque``
claims are at best a warning, so its ``ear_status`` is too. Every token carries
``exp``: ``iat`` plus the lifetime it was issued with.

PyJWT signs and checks the signature; ``verify_result`` adds attestd's strictness
around it: ES256 only, a canonical compact JWS, no header but ``alg``/``typ``/``kid``,
the EAR claims present and well typed, ``exp`` not passed (against an injectable
clock). It also accepts tokens of the 2023 Veraison profile
(``tag:github.com,2023:veraison/ear``, dotted claim names, no ``exp``) that earlier
attestd versions issued. It raises a :class:`ResultError` with a stable reason for
anything else. docs/attestation-results.md describes every claim.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard

import jwt
import pybase64
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

import attestd
from attestd.evidence import format_rfc3339, key_id
from attestd.verifier.chain import ChainResult, StageResult
from attestd.verifier.checks import Check, CheckStatus, Claim
from attestd.verifier.errors import VerifierError
from attestd.verifier.registry import SUITES, claims_table
from attestd.verifier.result import AppraisalResult

EAR_PROFILE = "tag:ietf.org,2026:rats/ear#04"
"""The profile attestd issues: draft-ietf-rats-ear-04, claim names with underscores."""
LEGACY_EAR_PROFILE = "tag:github.com,2023:veraison/ear"
"""The 2023 Veraison profile earlier attestd versions issued (dotted names, no ``exp``).
``verify_result`` still accepts it, so results already handed out stay checkable."""
DEFAULT_RESULT_LIFETIME = timedelta(hours=1)
"""How long a result is valid (``exp - iat``) unless the issuer says otherwise."""
VERIFIER_ID = {"developer": "attestd", "build": f"attestd {attestd.__version__}"}
TRUST_CATEGORIES = (
    "instance-identity",
    "configuration",
    "executables",
    "file-system",
    "hardware",
    "runtime-opaque",
    "storage-opaque",
    "sourced-data",
)
"""The eight AR4SI trustworthiness claims, by their EAR JSON names."""

STATUSES = ("none", "affirming", "warning", "contraindicated")
"""EAR trust tiers, from no claim to the worst."""

MAX_TOKEN_BYTES = 1 << 20

__all__ = [
    "APPRAISAL_CLAIMS",
    "CHAIN_CLAIMS",
    "DEFAULT_RESULT_LIFETIME",
    "EAR_PROFILE",
    "LEGACY_EAR_PROFILE",
    "STAGE_CLAIMS",
    "TRUST_CATEGORIES",
    "ClaimRule",
    "ResultAlgorithmError",
    "ResultClaimsError",
    "ResultError",
    "ResultExpiredError",
    "ResultFormatError",
    "ResultKeyError",
    "ResultSignatureError",
    "SignedResult",
    "load_signing_key",
    "load_verification_key",
    "policy_digest",
    "result_statuses",
    "sign_chain_result",
    "sign_result",
    "sign_result_with_claims",
    "tier",
    "verify_result",
]


# -- errors ------------------------------------------------------------------------------


class ResultError(VerifierError):
    """A signed attestation result that cannot be trusted, or a key that cannot sign one."""

    reason = "result_invalid"


class ResultFormatError(ResultError):
    """The token is not a compact JWS at all (three base64url parts, JSON header and body)."""

    reason = "result_malformed"


class ResultAlgorithmError(ResultError):
    """The header names an algorithm other than ES256, or a header parameter we refuse."""

    reason = "result_algorithm_refused"


class ResultSignatureError(ResultError):
    """The signature does not verify under the verifier's key."""

    reason = "result_signature_invalid"


class ResultClaimsError(ResultError):
    """The signature verifies but the claims are not an EAR attestd can read."""

    reason = "result_claims_invalid"


class ResultExpiredError(ResultError):
    """The token is genuine but its ``exp`` has passed: the verdict is too old to act on."""

    reason = "result_expired"


class ResultKeyError(ResultError):
    """A key that is not an ECDSA P-256 key in PEM."""

    reason = "result_key_invalid"


# -- keys --------------------------------------------------------------------------------


def load_signing_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    """The verifier's P-256 private key from PEM (unencrypted PKCS#8 or SEC1)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise ResultKeyError(f"not an unencrypted PEM private key: {err}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ResultKeyError("the result key must be an ECDSA P-256 key (ES256)")
    return key


def load_verification_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    """The verifier's P-256 public key from PEM; a private key PEM gives its public half."""
    if b"PRIVATE KEY-----" in pem:
        return load_signing_key(pem).public_key()
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise ResultKeyError(f"not a PEM public key: {err}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ResultKeyError("the result key must be an ECDSA P-256 key (ES256)")
    return key


def policy_digest(policy: bytes) -> str:
    """An ``ear_appraisal_policy_ids`` entry: ``sha256:`` + hex SHA-256 of the policy file
    (or layout file)."""
    return "sha256:" + hashlib.sha256(policy).hexdigest()


# -- from checks to AR4SI claims ---------------------------------------------------------


# Each check declares its own claims (verifier/checks.py: Claim); these tables are views.
ClaimRule = Claim

APPRAISAL_CLAIMS = claims_table(SUITES["appraisal"] + SUITES["tdx"] + SUITES["snp"])
"""Each appraisal check (``CHECK_NAMES``, ``TDX_CHECK_NAMES``, ``SNP_CHECK_NAMES``): its claims."""

STAGE_CLAIMS = claims_table(SUITES["stage"])
"""Each stage check (``STAGE_CHECK_NAMES``) to its claims; ``evidence`` makes none of its own."""

CHAIN_CLAIMS = claims_table(SUITES["chain"])
"""Each chain check (``CHAIN_CHECK_NAMES``) to its claims."""

_SIMULATED_CAP = {"hardware": 32, "runtime-opaque": 32}
"""A simulated TEE's root key is a file anyone with its state directory holds: at best a
warning (32: genuine but with a known vulnerability), never affirming."""


def tier(code: int) -> str:
    """The AR4SI trust tier of a claim value (-128..127)."""
    if code in (-1, 0, 1):
        return "none"
    if 2 <= code <= 31 or -32 <= code <= -2:
        return "affirming"
    if 32 <= code <= 95 or -96 <= code <= -33:
        return "warning"
    return "contraindicated"


# The rank in STATUSES of each claim value's tier, by value + 128: _worse runs for every
# rule of every check of every appraisal the service signs.
_TIER_RANK = tuple(STATUSES.index(tier(code)) for code in range(-128, 128))


def _worse(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return b if _rank(b) > _rank(a) else a


def _rank(code: int) -> int:
    # Claim values are int8 (AR4SI); tier() still decides for any other.
    return _TIER_RANK[code + 128] if -128 <= code <= 127 else STATUSES.index(tier(code))


def _vector(
    checks: Iterable[Check], rules: Mapping[str, tuple[Claim, ...]], *, simulated: bool
) -> dict[str, int]:
    # Each category keeps the worst value any rule gave it; a rule with no claim for this
    # outcome (None) leaves the category as it was.
    values: dict[str, int] = {}
    for check in checks:
        for rule in rules.get(check.name, ()):
            code = rule.code(check)
            if code is None:
                continue
            current = values.get(rule.category)
            if current is None or _rank(code) > _rank(current):
                values[rule.category] = code
    if simulated:
        for category, cap in _SIMULATED_CAP.items():
            value = values.get(category)
            if value is not None and tier(value) == "affirming":
                values[category] = cap
    return {c: values[c] for c in TRUST_CATEGORIES if c in values}


def _merge(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    merged = {c: _worse(a.get(c), b.get(c)) for c in TRUST_CATEGORIES}
    return {c: v for c, v in merged.items() if v is not None}


def _status(checks: Sequence[Check], vector: Mapping[str, int]) -> str:
    """The worse of the checks' status and the vector's worst tier (EAR: never better)."""
    seen = {c.status for c in checks}
    if not vector and seen <= {CheckStatus.SKIP}:
        return "none"
    worst = 1  # affirming, by its index in STATUSES
    if CheckStatus.WARN in seen:
        worst = 2
    if CheckStatus.FAIL in seen:
        worst = 3
    for value in vector.values():
        worst = max(worst, _rank(value))
    return STATUSES[worst]


# -- building the claims -----------------------------------------------------------------


# Each status's JSON value, looked up rather than read through the enum's descriptor.
_STATUS_VALUE = {status: status.value for status in CheckStatus}


def _checks_claim(checks: Iterable[Check], prefix: str = "") -> dict[str, Any]:
    value = _STATUS_VALUE
    return {
        prefix + c.name: {"status": value[c.status], "reason": c.reason, "detail": c.detail}
        for c in checks
    }


def _tee_claim(result: AppraisalResult) -> dict[str, Any]:
    root = result.root_of_trust
    return {
        "type": result.tee.value if result.tee is not None else None,
        "simulated": result.simulated,
        "root-of-trust": {
            "policy": root.policy,
            "evidence": root.evidence,
            "evidence-simulated": root.evidence_simulated,
        },
    }


def _evidence_claim(result: AppraisalResult) -> dict[str, Any]:
    summary = result.evidence
    issued = summary.issued_at
    return {
        "agent-key-id": summary.agent_key_id,
        "agent-version": summary.agent_version,
        "issued-at": format_rfc3339(issued) if issued is not None else None,
        "log-length": summary.log_length,
        "subjects": {name: dict(digest) for name, digest in summary.subjects.items()},
        "appraised-at": format_rfc3339(result.appraised_at),
    }


def _appraisal_submod(result: AppraisalResult, policy_id: str) -> dict[str, Any]:
    vector = _vector(result.checks, APPRAISAL_CLAIMS, simulated=result.simulated)
    submod: dict[str, Any] = {"ear_status": _status(result.checks, vector)}
    if vector:
        submod["ear_trustworthiness_vector"] = vector
    submod["ear_appraisal_policy_ids"] = [policy_id]
    submod["attestd.tee"] = _tee_claim(result)
    submod["attestd.evidence"] = _evidence_claim(result)
    submod["attestd.checks"] = _checks_claim(result.checks)
    return submod


def _stage_submod(stage: StageResult, policy_id: str) -> dict[str, Any]:
    appraisal = stage.appraisal
    simulated = appraisal.simulated if appraisal is not None else False
    vector = _vector(stage.checks, STAGE_CLAIMS, simulated=simulated)
    checks: list[Check] = list(stage.checks)
    if appraisal is not None:
        vector = _merge(vector, _vector(appraisal.checks, APPRAISAL_CLAIMS, simulated=simulated))
        checks += appraisal.checks
    submod: dict[str, Any] = {"ear_status": _status(checks, vector)}
    if vector:
        submod["ear_trustworthiness_vector"] = vector
    submod["ear_appraisal_policy_ids"] = [policy_id]
    if appraisal is not None:
        submod["attestd.tee"] = _tee_claim(appraisal)
        submod["attestd.evidence"] = _evidence_claim(appraisal)
    provenance = stage.provenance
    submod["attestd.stage"] = {
        "source": stage.source,
        "provenance-digest": stage.digest,
        "run-id": provenance.run_id if provenance is not None else None,
        "outputs": [a.to_json() for a in provenance.outputs] if provenance is not None else [],
        "slsa-build-level": stage.slsa_level,
    }
    evidence_checks = appraisal.checks if appraisal is not None else ()
    submod["attestd.checks"] = _checks_claim(stage.checks) | _checks_claim(
        evidence_checks, "evidence."
    )
    return submod


def _chain_submod(result: ChainResult, labels: Sequence[str], policy_id: str) -> dict[str, Any]:
    vector = _vector(result.checks, CHAIN_CLAIMS, simulated=False)
    submod: dict[str, Any] = {"ear_status": _status(result.all_checks, vector)}
    if vector:
        submod["ear_trustworthiness_vector"] = vector
    submod["ear_appraisal_policy_ids"] = [policy_id]
    submod["attestd.chain"] = {
        "pipeline": result.pipeline,
        "run-id": result.run_id,
        "stages": list(labels),
        "max-age-seconds": result.max_age_seconds,
        "reasons": list(result.reasons),
        "oms": result.oms,
        "slsa-build-level": result.slsa_level,
    }
    submod["attestd.checks"] = _checks_claim(result.checks)
    return submod


def _unique(label: str, used: set[str]) -> str:
    candidate, n = label, 2
    while candidate in used:
        candidate, n = f"{label}#{n}", n + 1
    used.add(candidate)
    return candidate


def _aware(now: datetime | None) -> datetime:
    moment = now or datetime.now(UTC)
    if moment.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    return moment


def _lifetime_seconds(lifetime: timedelta) -> int:
    seconds = int(lifetime.total_seconds())
    if seconds < 1:
        raise ValueError("a result's lifetime must be at least one second")
    return seconds


def _claims(
    submods: dict[str, Any],
    now: datetime | None,
    nonce: bytes | None,
    simulated: bool,
    lifetime: timedelta,
) -> dict[str, Any]:
    iat = int(_aware(now).timestamp())
    claims: dict[str, Any] = {
        "eat_profile": EAR_PROFILE,
        "iat": iat,
        "exp": iat + _lifetime_seconds(lifetime),
        "ear_verifier_id": dict(VERIFIER_ID),
    }
    if nonce is not None:
        claims["eat_nonce"] = _b64encode(nonce)
    claims["submods"] = submods
    statuses = [str(s["ear_status"]) for s in submods.values()]
    claims["attestd.result"] = {
        "status": max(statuses, key=STATUSES.index),
        "simulated": simulated,
    }
    return claims


def sign_result(
    result: AppraisalResult,
    key: ec.EllipticCurvePrivateKey,
    *,
    policy_digest: str,
    nonce: bytes | None = None,
    now: datetime | None = None,
    lifetime: timedelta = DEFAULT_RESULT_LIFETIME,
) -> str:
    """The EAR of one appraisal as a compact JWS (ES256), one submod named after the TEE.

    ``policy_digest`` is ``policy_digest(policy file bytes)``; ``nonce`` the one the
    evidence was asked for (``eat_nonce``); ``now`` the ``iat`` (aware; default: now);
    ``exp`` is ``iat + lifetime`` (whole seconds, at least one).
    """
    return sign_result_with_claims(
        result, key, policy_digest=policy_digest, nonce=nonce, now=now, lifetime=lifetime
    ).token


@dataclass(frozen=True)
class SignedResult:
    """An EAR as its issuer has it: the compact JWS and the claims it signed.

        signed = sign_result_with_claims(result, key, policy_digest=digest, nonce=nonce)
        signed.token        # what relying parties get (and check with verify_result)
        signed.status       # "affirming", "warning", ...: no decoding of the token

    ``claims`` is the issuer's own copy; anyone else reads them with :func:`verify_result`.
    """

    token: str
    claims: Mapping[str, Any]

    @property
    def status(self) -> str:
        """The overall status: the worst of the submods' (``attestd.result.status``)."""
        return str(self.claims["attestd.result"]["status"])


def sign_result_with_claims(
    result: AppraisalResult,
    key: ec.EllipticCurvePrivateKey,
    *,
    policy_digest: str,
    nonce: bytes | None = None,
    now: datetime | None = None,
    lifetime: timedelta = DEFAULT_RESULT_LIFETIME,
) -> SignedResult:
    """:func:`sign_result`, with the claims it signed, for an issuer that acts on them
    (the verifier service stores the status) without decoding its own token again."""
    label = result.tee.value if result.tee is not None else "unknown"
    submods = {label: _appraisal_submod(result, policy_digest)}
    claims = _claims(submods, now, nonce, result.simulated, lifetime)
    return SignedResult(_sign(claims, key), claims)


def sign_chain_result(
    result: ChainResult,
    key: ec.EllipticCurvePrivateKey,
    *,
    policy_digest: str,
    now: datetime | None = None,
    lifetime: timedelta = DEFAULT_RESULT_LIFETIME,
) -> str:
    """The EAR of a verified chain: one submod per stage (by stage name) and one, ``chain``,
    for the chain's own checks, whose status is also no better than any stage's.
    ``policy_digest`` is that of the layout file; ``now`` and ``lifetime`` as for
    :func:`sign_result`."""
    used = {"chain"}
    submods: dict[str, Any] = {}
    for stage in result.stages:
        label = _unique(stage.stage or f"unknown:{stage.source}", used)
        submods[label] = _stage_submod(stage, policy_digest)
    chain = _chain_submod(result, list(submods), policy_digest)
    # The chain as a whole is no better than its worst stage (a simulated one included).
    statuses = [chain["ear_status"]] + [s["ear_status"] for s in submods.values()]
    chain["ear_status"] = max(statuses, key=STATUSES.index)
    submods["chain"] = chain
    simulated = any(s.appraisal is not None and s.appraisal.simulated for s in result.stages)
    return _sign(_claims(submods, now, None, simulated, lifetime), key)


# -- JWS (PyJWT) and attestd's strictness around it ---------------------------------------


def _b64encode(data: bytes) -> str:
    # pybase64 (SIMD) writes what base64.urlsafe_b64encode does, byte for byte.
    return pybase64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(part: str, what: str) -> bytes:
    try:
        data = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise ResultFormatError(f"the {what} is not base64url") from None
    # Only the canonical, unpadded spelling: one token, one byte string. PyJWT is
    # lenient here (it accepts padding), so this check stays ours.
    if _b64encode(data) != part:
        raise ResultFormatError(f"the {what} is not canonical unpadded base64url")
    return data


def _require_p256(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> None:
    if not isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) or (
        key.curve.name != "secp256r1"
    ):
        raise ResultKeyError("the result key must be an ECDSA P-256 key (ES256)")


# Claims are serialised as PyJWT's encode does (compact separators, ASCII), with one
# encoder built once rather than one per json.dumps call.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))
_ES256 = ec.ECDSA(hashes.SHA256())
_P256_BYTES = 32


def _sign(claims: Mapping[str, Any], key: ec.EllipticCurvePrivateKey) -> str:
    # The JWS compact serialisation PyJWT's encode writes, byte for byte but for the
    # (randomised) signature: the header {"alg": "ES256", "kid": ..., "typ": "JWT"} with
    # sorted keys, and a raw r||s signature (RFC 7518 §3.4), base64url without padding.
    # Written here because the service signs one per appraisal, and PyJWT's per-call key
    # preparation, header validation and kid derivation cost more than the signature.
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ResultKeyError("the result key must be an ECDSA P-256 private key (ES256)")
    header = _jws_header(key)  # checks the curve too, once per key
    body = claims if type(claims) is dict else dict(claims)
    payload = pybase64.urlsafe_b64encode(_COMPACT_JSON.encode(body).encode("utf-8"))
    signing_input = header + b"." + payload.rstrip(b"=")
    r, s = decode_dss_signature(key.sign(signing_input, _ES256))
    signature = r.to_bytes(_P256_BYTES, "big") + s.to_bytes(_P256_BYTES, "big")
    return (signing_input + b"." + pybase64.urlsafe_b64encode(signature).rstrip(b"=")).decode(
        "ascii"
    )


@functools.lru_cache(maxsize=8)
def _jws_header(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The base64url JWS header for ``key``: fixed per key (a service has one or two).

    ResultKeyError, never cached, for a private key on another curve.
    """
    _require_p256(key)
    header = {"alg": "ES256", "kid": key_id(key.public_key()), "typ": "JWT"}
    encoded = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    return _b64encode(encoded).encode("ascii")


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ResultFormatError(f"the {what} repeats a member name")
        return dict(pairs)

    def no_constant(name: str) -> None:
        raise ResultFormatError(f"the {what} holds {name}, which is not JSON")

    try:
        value = json.loads(
            data.decode("utf-8"), object_pairs_hook=no_duplicates, parse_constant=no_constant
        )
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ResultFormatError(f"the {what} is not JSON") from None
    if not isinstance(value, dict):
        raise ResultFormatError(f"the {what} is not a JSON object")
    return value


# PyJWT checks the signature and the algorithm; the clock checks are ours, because
# PyJWT reads the system clock and the verifier takes an injectable ``now``.
_PYJWT_OPTIONS: jwt.types.Options = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
}


def verify_result(
    token: str | bytes,
    public_key: ec.EllipticCurvePublicKey,
    *,
    nonce: bytes | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The claims of an EAR JWT, once its ES256 signature and claims check out.

    ``nonce``, if given, must be the token's ``eat_nonce``; ``now`` (aware; default:
    the current time) must be before its ``exp``. Both the draft-04 profile and the
    2023 Veraison one are accepted; the claims come back as signed (use
    :func:`result_statuses` to read the verdicts of either). Raises a ResultError:
    ResultFormatError, ResultAlgorithmError, ResultSignatureError, ResultClaimsError
    or ResultExpiredError.
    """
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise ResultKeyError("the result key must be an ECDSA P-256 public key (ES256)")
    _require_p256(public_key)
    moment = _aware(now)
    text = _token_text(token)
    parts = text.split(".")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise ResultFormatError("not a compact JWS: expected header.payload.signature")
    header = _json_object(_b64decode(parts[0], "header"), "header")
    _check_header(header)
    _b64decode(parts[1], "payload")
    _b64decode(parts[2], "signature")
    try:
        jwt.decode(text, public_key, algorithms=["ES256"], options=_PYJWT_OPTIONS)
    except jwt.InvalidSignatureError:
        expected = key_id(public_key)
        named = header.get("kid")
        whose = f" (it names key {named}, not {expected})" if named not in (None, expected) else ""
        raise ResultSignatureError(
            f"the signature does not verify under key {expected}{whose}"
        ) from None
    except jwt.InvalidAlgorithmError as err:
        raise ResultAlgorithmError(str(err)) from None
    except jwt.DecodeError as err:
        raise ResultFormatError(f"not a JWT: {err}") from None
    except jwt.InvalidTokenError as err:
        raise ResultClaimsError(str(err)) from None
    # Read the (now authenticated) payload again, strictly: PyJWT tolerates repeated
    # member names and NaN, which would let two readers see different claims.
    claims = _json_object(_b64decode(parts[1], "payload"), "payload")
    _check_claims(claims, nonce, moment)
    return claims


def _token_text(token: str | bytes) -> str:
    if isinstance(token, bytes):
        if len(token) > MAX_TOKEN_BYTES:
            raise ResultFormatError(f"the token is larger than {MAX_TOKEN_BYTES} bytes")
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError:
            raise ResultFormatError("the token is not ASCII text") from None
    if len(token) > MAX_TOKEN_BYTES:
        raise ResultFormatError(f"the token is larger than {MAX_TOKEN_BYTES} bytes")
    return token.strip()


def _check_header(header: Mapping[str, Any]) -> None:
    alg = header.get("alg")
    if alg != "ES256":
        raise ResultAlgorithmError(f"algorithm {alg!r} is refused; only ES256 is accepted")
    extra = sorted(set(header) - {"alg", "typ", "kid"})
    if extra:
        raise ResultAlgorithmError(f"header parameters {', '.join(extra)} are refused")
    if header.get("typ", "JWT") != "JWT":
        raise ResultAlgorithmError(f"typ {header.get('typ')!r} is not JWT")
    if not isinstance(header.get("kid", ""), str):
        raise ResultAlgorithmError("the kid header parameter is not a string")


# -- the claims, in either profile -------------------------------------------------------


@dataclass(frozen=True)
class _Profile:
    """The claim names of one EAR profile, and whether its tokens must expire."""

    verifier_id: str
    status: str
    vector: str
    policy_ids: str
    policy_is_list: bool
    expires: bool


_PROFILES: Mapping[str, _Profile] = {
    EAR_PROFILE: _Profile(
        "ear_verifier_id",
        "ear_status",
        "ear_trustworthiness_vector",
        "ear_appraisal_policy_ids",
        policy_is_list=True,
        expires=True,
    ),
    LEGACY_EAR_PROFILE: _Profile(
        "ear.verifier-id",
        "ear.status",
        "ear.trustworthiness-vector",
        "ear.appraisal-policy-id",
        policy_is_list=False,
        expires=False,
    ),
}


def result_statuses(claims: Mapping[str, Any]) -> dict[str, str]:
    """Each submod's EAR status in claims ``verify_result`` returned, in either profile."""
    names = _PROFILES[claims["eat_profile"]]
    return {str(label): str(s[names.status]) for label, s in claims["submods"].items()}


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ResultClaimsError(message)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_claims(claims: Mapping[str, Any], nonce: bytes | None, now: datetime) -> None:
    profile = claims.get("eat_profile")
    _require(
        isinstance(profile, str) and profile in _PROFILES,
        f"eat_profile is not {EAR_PROFILE} (nor {LEGACY_EAR_PROFILE})",
    )
    names = _PROFILES[str(profile)]
    iat = claims.get("iat")
    if not (_is_int(iat) and iat >= 0):
        raise ResultClaimsError("iat is missing or not a non-negative integer")
    exp = claims.get("exp")
    if (names.expires or exp is not None) and not (_is_int(exp) and exp > iat):
        raise ResultClaimsError("exp is missing or not an integer after iat")
    verifier = claims.get(names.verifier_id)
    _require(
        isinstance(verifier, dict)
        and all(isinstance(verifier.get(k), str) for k in ("developer", "build")),
        f"{names.verifier_id} needs developer and build",
    )
    submods = claims.get("submods")
    _require(isinstance(submods, dict) and bool(submods), "submods is missing or empty")
    assert isinstance(submods, dict)
    for label, submod in submods.items():
        _check_submod(str(label), submod, names)
    if "eat_nonce" in claims or nonce is not None:
        sent = claims.get("eat_nonce")
        _require(isinstance(sent, str), "eat_nonce is missing or not a string")
        assert isinstance(sent, str)
        try:
            carried = _b64decode(sent, "eat_nonce")
        except ResultFormatError as err:
            raise ResultClaimsError(err.message) from None
        if nonce is not None:
            _require(hmac.compare_digest(carried, nonce), "eat_nonce is not the nonce sent")
    if _is_int(exp) and int(now.timestamp()) >= exp:
        expired = format_rfc3339(datetime.fromtimestamp(exp, UTC))
        raise ResultExpiredError(f"the result expired at {expired}; ask for a new appraisal")


def _check_submod(label: str, submod: Any, names: _Profile) -> None:
    _require(isinstance(submod, dict), f"submod {label!r} is not a map")
    status = submod.get(names.status)
    _require(status in STATUSES, f"submod {label!r}: {names.status} {status!r} is not a trust tier")
    vector = submod.get(names.vector, {})
    _require(isinstance(vector, dict), f"submod {label!r}: the trustworthiness vector is not a map")
    for category, value in vector.items():
        _require(category in TRUST_CATEGORIES, f"submod {label!r}: unknown claim {category!r}")
        _require(
            _is_int(value) and -128 <= value <= 127,
            f"submod {label!r}: {category} is not an integer in -128..127",
        )
        _require(
            STATUSES.index(tier(value)) <= STATUSES.index(status),
            f"submod {label!r}: {names.status} {status} is better than its {category} "
            f"claim {value}",
        )
    policy = submod.get(names.policy_ids, [] if names.policy_is_list else "")
    well_typed = (
        isinstance(policy, list) and all(isinstance(p, str) for p in policy)
        if names.policy_is_list
        else isinstance(policy, str)
    )
    _require(well_typed, f"submod {label!r}: {names.policy_ids} is not well typed")
