"""The Intel root of trust: a real hardware quote verifies, and simulation cannot pass for it."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from attestd.evidence import (
    Binding,
    EvidencePredicate,
    Statement,
    TeeClaims,
    key_id,
    public_key_pem,
    replay,
    sign_statement,
    subjects_digest,
)
from attestd.tee.backend import TeeDescription, TeeType
from attestd.verifier import AppraisalStatus, CheckStatus, Policy, appraise, load_policy
from tests.verifier.simulated_evidence import MODEL, NONCE, Scenario

# The real quotes' PCK chains are valid on this date (see ../shared/vectors/README.md).
VECTOR_NOW = datetime(2025, 6, 23, tzinfo=UTC)
HARDWARE = TeeClaims.of(TeeDescription(TeeType.TDX, False, "intel-sgx-root-ca", "configfs-tsm"))


def _intel_policy(tmp_path: Path) -> Policy:
    path = tmp_path / "intel.toml"
    path.write_text('[trust]\nroot = "intel"\n')
    return load_policy(path)


def _hardware_evidence(quote: bytes, issued_at: datetime, tee: TeeClaims = HARDWARE) -> bytes:
    """Evidence around ``quote`` as a hardware agent sends it; the quote binds other data."""
    key = ec.generate_private_key(ec.SECP256R1())
    binding = Binding(
        NONCE, subjects_digest([MODEL]), replay([]), key_id(key.public_key()), issued_at
    )
    predicate = EvidencePredicate(
        binding, tee, quote, (), public_key_pem(key.public_key()), "0.1.0", {}
    )
    return sign_statement(Statement((MODEL,), predicate), key)


def test_real_quote_verifies_to_intel_but_binds_other_data(
    vectors_dir: Path, tmp_path: Path
) -> None:
    quote = (vectors_dir / "tdx" / "dcapqvl_quote_v4.bin").read_bytes()
    evidence = _hardware_evidence(quote, VECTOR_NOW)
    result = appraise(evidence, nonce=NONCE, policy=_intel_policy(tmp_path), now=VECTOR_NOW)
    assert result.check("quote_signature").status is CheckStatus.PASS
    assert result.check("report_data").reason == "report_data_mismatch"
    assert result.status is AppraisalStatus.CONTRAINDICATED
    assert result.simulated is False
    assert result.root_of_trust.policy == "intel"
    assert result.root_of_trust.evidence == "intel-sgx-root-ca"


def test_hardware_evidence_under_simulated_policy_is_a_root_mismatch(
    vectors_dir: Path, scenario: Scenario, policy: Policy
) -> None:
    quote = (vectors_dir / "tdx" / "dcapqvl_quote_v4.bin").read_bytes()
    result = appraise(
        _hardware_evidence(quote, VECTOR_NOW), nonce=NONCE, policy=policy, now=VECTOR_NOW
    )
    assert result.check("quote_signature").reason == "root_of_trust_mismatch"
    assert result.simulated is True  # the policy trusts a simulator, so the result says so


def test_simulated_quote_claiming_hardware_is_an_untrusted_root(
    scenario: Scenario, tmp_path: Path
) -> None:
    # The evidence lies about being simulated; the quote's chain gives it away.
    statement = scenario.statement()
    issued_at = statement.predicate.binding.issued_at
    evidence = _hardware_evidence(statement.predicate.quote, issued_at)
    now = issued_at + timedelta(seconds=1)
    result = appraise(evidence, nonce=NONCE, policy=_intel_policy(tmp_path), now=now)
    assert result.check("quote_signature").reason == "untrusted_root"
    assert result.status is AppraisalStatus.CONTRAINDICATED


def test_snp_evidence_is_refused_by_a_tdx_policy(scenario: Scenario, policy: Policy) -> None:
    statement = scenario.statement()
    tee = dataclasses.replace(statement.predicate.tee, tee=TeeType.SEV_SNP)
    evidence = _hardware_evidence(statement.predicate.quote, scenario.issued_at, tee)
    result = appraise(evidence, nonce=NONCE, policy=policy, now=scenario.now)
    assert result.check("quote_signature").reason == "tee_not_allowed"
