"""Appraisal of attestd evidence against a policy.

    from pathlib import Path
    from attestd.verifier import AppraisalStatus, appraise, load_policy

    policy = load_policy(Path("policy.toml"))          # PolicyError if the file is wrong
    result = appraise(evidence, nonce=nonce_sent, policy=policy)
    if result.status is not AppraisalStatus.AFFIRMING:
        for check in result.failures:
            print(check.name, check.reason, check.detail)
    print(json.dumps(result.to_json()))

``appraise`` (module ``attestd.verifier.appraisal``) never raises for bad
evidence: every broken link is a failed, named check with a stable reason.
Every check is declared once, with its needs, step, reasons and AR4SI claims,
and run by one runner (``attestd.verifier.checks``); ``attestd.verifier.registry``
lists them all. Quote signatures are verified by
``attestd.tee.tdx.verify``; this package compares what they vouch for with the
policy. docs/policy.md describes every policy option, check and reason.

A pipeline's stage attestations are verified as a chain against a layout::

    result = verify_chain(attestation_files, load_layout(Path("layout.toml")))
    result.status, result.reasons          # e.g. ("stage_missing",)

docs/layout.md describes the layout file and every chain check and reason.

A result is signed for relying parties as an EAR JWT (ES256)::

    token = sign_result(result, verifier_key, policy_digest=policy_digest(policy_bytes))
    claims = verify_result(token, verifier_public_key)   # ResultError if not genuine

docs/attestation-results.md describes the claims and the trust-vector mapping.
A bare TDX quote or SEV-SNP report (no evidence around it) is inspected and
verified by ``attestd.verifier.quote`` (``attestctl quote``, docs/quote-tools.md).
"""

from attestd.verifier.appraisal import CHECK_NAMES, SNP_CHECK_NAMES, TDX_CHECK_NAMES, appraise
from attestd.verifier.chain import (
    CHAIN_CHECK_NAMES,
    STAGE_CHECK_NAMES,
    ChainResult,
    StageResult,
    verify_chain,
)
from attestd.verifier.checks import Check, CheckStatus
from attestd.verifier.ear import (
    DEFAULT_RESULT_LIFETIME,
    EAR_PROFILE,
    LEGACY_EAR_PROFILE,
    ResultAlgorithmError,
    ResultClaimsError,
    ResultError,
    ResultExpiredError,
    ResultFormatError,
    ResultKeyError,
    ResultSignatureError,
    load_signing_key,
    load_verification_key,
    policy_digest,
    result_statuses,
    sign_chain_result,
    sign_result,
    verify_result,
)
from attestd.verifier.errors import PolicyError, VerifierError
from attestd.verifier.layout import ArtifactRule, Layout, LayoutError, StageRule, load_layout
from attestd.verifier.oms import (
    OmsClosing,
    OmsError,
    OmsSignature,
    OmsSignatureError,
    OmsUnavailableError,
    verify_oms_bundle,
)
from attestd.verifier.policy import (
    ArtifactPolicy,
    FreshnessPolicy,
    Policy,
    TdxPolicy,
    TrustPolicy,
    TrustRoot,
    load_policy,
)
from attestd.verifier.result import AppraisalResult, AppraisalStatus, EvidenceSummary, RootOfTrust

__all__ = [
    "CHAIN_CHECK_NAMES",
    "CHECK_NAMES",
    "DEFAULT_RESULT_LIFETIME",
    "EAR_PROFILE",
    "LEGACY_EAR_PROFILE",
    "SNP_CHECK_NAMES",
    "STAGE_CHECK_NAMES",
    "TDX_CHECK_NAMES",
    "AppraisalResult",
    "AppraisalStatus",
    "ArtifactPolicy",
    "ArtifactRule",
    "ChainResult",
    "Check",
    "CheckStatus",
    "EvidenceSummary",
    "FreshnessPolicy",
    "Layout",
    "LayoutError",
    "OmsClosing",
    "OmsError",
    "OmsSignature",
    "OmsSignatureError",
    "OmsUnavailableError",
    "Policy",
    "PolicyError",
    "ResultAlgorithmError",
    "ResultClaimsError",
    "ResultError",
    "ResultExpiredError",
    "ResultFormatError",
    "ResultKeyError",
    "ResultSignatureError",
    "RootOfTrust",
    "StageResult",
    "StageRule",
    "TdxPolicy",
    "TrustPolicy",
    "TrustRoot",
    "VerifierError",
    "appraise",
    "load_layout",
    "load_policy",
    "load_signing_key",
    "load_verification_key",
    "policy_digest",
    "result_statuses",
    "sign_chain_result",
    "sign_result",
    "verify_chain",
    "verify_oms_bundle",
    "verify_result",
]
