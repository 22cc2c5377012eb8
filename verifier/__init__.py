"""Appraisal of attestd evidence against a policy.

    from pathlib import Path
    from attestd.verifier import AppraisalStatus, appraise, load_policy

    policy = load_policy(Path("policy.toml"))          # PolicyError if the file is wrong
    result = appraise(evidence, nonce=nonce_sent, policy=policy)
    if result.status is not AppraisalStatus.AFFIRMING:
        for check in result.failures:
            print(check.name, check.reason, check.detail)
    print(json.dumps(result.to_json()))

``appraise`` never raises for bad evidence: every broken link is a failed,
named check with a stable reason. Quote signatures are verified by
``attestd.tee.tdx.verify``; this package compares what they vouch for with the
policy. docs/policy.md describes every policy option, check and reason.
"""

from attestd.verifier.appraise import CHECK_NAMES, SNP_CHECK_NAMES, TDX_CHECK_NAMES, appraise
from attestd.verifier.errors import PolicyError, VerifierError
from attestd.verifier.policy import (
    ArtifactPolicy,
    FreshnessPolicy,
    Policy,
    TdxPolicy,
    TrustPolicy,
    TrustRoot,
    load_policy,
)
from attestd.verifier.result import (
    AppraisalResult,
    AppraisalStatus,
    Check,
    CheckStatus,
    EvidenceSummary,
    RootOfTrust,
)

__all__ = [
    "CHECK_NAMES",
    "SNP_CHECK_NAMES",
    "TDX_CHECK_NAMES",
    "AppraisalResult",
    "AppraisalStatus",
    "ArtifactPolicy",
    "Check",
    "CheckStatus",
    "EvidenceSummary",
    "FreshnessPolicy",
    "Policy",
    "PolicyError",
    "RootOfTrust",
    "TdxPolicy",
    "TrustPolicy",
    "TrustRoot",
    "VerifierError",
    "appraise",
    "load_policy",
]
