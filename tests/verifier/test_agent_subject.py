"""Evidence with no artifact names the agent: affirmed when it is the agent, refused when forged."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from attestd.evidence import key_id
from attestd.evidence.subjects import agent_subject
from attestd.verifier import AppraisalStatus, Policy, appraise
from tests.verifier.simulated_evidence import MODEL, NONCE, Scenario
from tests.verifier.test_appraise import assert_rejected


def test_evidence_without_artifacts_names_the_agent_and_is_affirmed(
    scenario: Scenario, tmp_path: Path
) -> None:
    statement = scenario.statement(subjects=())
    expected = agent_subject(key_id(scenario.key.public_key()))
    assert list(statement.subjects) == [expected]
    # No required artifact: only the one optional dataset, absent, so nothing to miss.
    policy = scenario.policy(tmp_path)
    result = appraise(scenario.sign(statement), nonce=NONCE, policy=policy, now=scenario.now)
    assert result.check("subjects").reason is None, result.to_json()["checks"]
    assert result.check("artifacts").reason == "artifact_missing"  # the model is required


def test_a_forged_agent_subject_bound_in_the_quote_is_refused(
    scenario: Scenario, policy: Policy
) -> None:
    other = key_id(ec.generate_private_key(ec.SECP256R1()).public_key())
    statement = scenario.statement(subjects=(agent_subject(other),), exact_subjects=True)
    result = appraise(scenario.sign(statement), nonce=NONCE, policy=policy, now=scenario.now)
    assert_rejected(result, "subjects", "agent_subject_mismatch")


def test_an_agent_subject_beside_artifacts_is_refused(scenario: Scenario, policy: Policy) -> None:
    mine = agent_subject(key_id(scenario.key.public_key()))
    statement = scenario.statement(subjects=(MODEL, mine), exact_subjects=True)
    result = appraise(scenario.sign(statement), nonce=NONCE, policy=policy, now=scenario.now)
    assert_rejected(result, "subjects", "agent_subject_mismatch")


def test_the_agent_subject_is_never_a_required_artifact(scenario: Scenario, tmp_path: Path) -> None:
    mine = agent_subject(key_id(scenario.key.public_key()))
    extra = f'[[artifacts]]\nsha256 = "{mine.digest["sha256"]}"\n'
    policy = scenario.policy(tmp_path, extra=extra)
    statement = scenario.statement(subjects=(), exact_subjects=False)
    result = appraise(scenario.sign(statement), nonce=NONCE, policy=policy, now=scenario.now)
    assert result.status is AppraisalStatus.CONTRAINDICATED
    artifacts = result.check("artifacts")
    assert artifacts.reason == "artifact_missing"
    assert f"sha256:{mine.digest['sha256']}" in (artifacts.detail or "")
