"""Appraisal of real simulated evidence: the happy path, and every broken link by name."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from attestd.evidence import Subject, public_key_pem
from attestd.tee.tdx.simulated import SimulatedTdMeasurements
from attestd.verifier import (
    CHECK_NAMES,
    TDX_CHECK_NAMES,
    AppraisalResult,
    AppraisalStatus,
    CheckStatus,
    Policy,
    PolicyError,
    appraise,
    load_policy,
)
from tests.verifier.simulated_evidence import (
    DATASET,
    MODEL,
    NONCE,
    Scenario,
    fresh_nonce,
    make_scenario,
    replace_log,
)


def assert_rejected(result: AppraisalResult, check: str, reason: str) -> None:
    """Contraindicated, and ``check`` is the first failure, with ``reason``."""
    assert result.status is AppraisalStatus.CONTRAINDICATED
    first = result.failures[0]
    assert (first.name, first.reason) == (check, reason), result.to_json()["checks"]


# -- the happy path -------------------------------------------------------------


def test_genuine_evidence_is_affirmed_and_names_every_check(
    scenario: Scenario, policy: Policy
) -> None:
    result = appraise(scenario.evidence(), nonce=NONCE, policy=policy, now=scenario.now)
    expected = [*CHECK_NAMES[:-1], *TDX_CHECK_NAMES, CHECK_NAMES[-1]]
    assert [check.name for check in result.checks] == expected
    # Optional reference values the policy leaves out are reported, not judged.
    optional = {"mr_config_id", "mr_owner", "mr_owner_config", "tee_tcb_svn", "ccel"}
    for check in result.checks:
        wanted = CheckStatus.SKIP if check.name in optional else CheckStatus.PASS
        assert check.status is wanted, result.to_json()
    assert result.status is AppraisalStatus.AFFIRMING
    assert result.simulated is True
    assert result.root_of_trust.policy == "simulated"
    assert result.root_of_trust.evidence_simulated is True
    document = result.to_json()
    assert document["status"] == "affirming"
    assert document["tee"] == "tdx"
    assert document["evidence"]["logLength"] == 3
    assert {s["name"] for s in document["evidence"]["subjects"]} == {MODEL.name, DATASET.name}


def test_policy_without_reference_values_gives_a_warning(
    scenario: Scenario, tmp_path: Path
) -> None:
    policy = scenario.policy(tmp_path, tdx=False)
    result = appraise(scenario.evidence(), nonce=NONCE, policy=policy, now=scenario.now)
    assert result.status is AppraisalStatus.WARNING
    for register in ("mrtd", "rtmr0", "rtmr1", "rtmr2"):
        assert result.check(register).status is CheckStatus.WARN
        assert result.check(register).reason == "reference_value_absent"


# -- each broken link names itself ----------------------------------------------


def test_wrong_nonce_is_rejected(scenario: Scenario, policy: Policy) -> None:
    result = appraise(scenario.evidence(), nonce=fresh_nonce(), policy=policy, now=scenario.now)
    assert_rejected(result, "nonce", "nonce_mismatch")


def test_modified_subject_digest_is_rejected(scenario: Scenario, policy: Policy) -> None:
    statement = scenario.statement()
    tampered = Subject(DATASET.name, {"sha256": "33" * 32})
    statement = dataclasses.replace(statement, subjects=(MODEL, tampered))
    result = appraise(scenario.sign(statement), nonce=NONCE, policy=policy, now=scenario.now)
    assert_rejected(result, "subjects", "subjects_digest_mismatch")


def test_modified_log_event_is_rejected(scenario: Scenario, policy: Policy) -> None:
    events = list(scenario.events)
    events[1] = dataclasses.replace(events[1], content=b"/srv/models/other")
    statement = replace_log(scenario.statement(), events)
    result = appraise(scenario.sign(statement), nonce=NONCE, policy=policy, now=scenario.now)
    assert_rejected(result, "runtime_log", "runtime_log_mismatch")


def test_dropped_log_event_is_rejected(scenario: Scenario, policy: Policy) -> None:
    statement = replace_log(scenario.statement(), scenario.events[:-1])
    result = appraise(scenario.sign(statement), nonce=NONCE, policy=policy, now=scenario.now)
    assert_rejected(result, "runtime_log", "runtime_log_mismatch")


def test_reordered_log_events_are_rejected(scenario: Scenario, policy: Policy) -> None:
    first, second, third = scenario.events
    # Renumbered, so the sequence check alone cannot catch it: only the hashes do.
    reordered = [
        dataclasses.replace(second, sequence=0),
        dataclasses.replace(first, sequence=1),
        third,
    ]
    statement = replace_log(scenario.statement(), reordered)
    result = appraise(scenario.sign(statement), nonce=NONCE, policy=policy, now=scenario.now)
    assert_rejected(result, "runtime_log", "runtime_log_mismatch")


def test_reordered_log_events_keeping_their_numbers_are_rejected(
    scenario: Scenario, policy: Policy
) -> None:
    first, second, third = scenario.events
    statement = replace_log(scenario.statement(), [second, first, third])
    result = appraise(scenario.sign(statement), nonce=NONCE, policy=policy, now=scenario.now)
    assert_rejected(result, "runtime_log", "runtime_log_mismatch")


def test_agent_key_other_than_the_bound_one_is_rejected(scenario: Scenario, policy: Policy) -> None:
    # The binding (and so the quote) names the genuine key; an impostor swaps in
    # its own key and signs with it.
    impostor = ec.generate_private_key(ec.SECP256R1())
    statement = scenario.statement()
    predicate = dataclasses.replace(
        statement.predicate, agent_key_pem=public_key_pem(impostor.public_key())
    )
    evidence = scenario.sign(dataclasses.replace(statement, predicate=predicate), impostor)
    result = appraise(evidence, nonce=NONCE, policy=policy, now=scenario.now)
    assert_rejected(result, "agent_key", "agent_key_mismatch")
    assert result.check("envelope_signature").status is CheckStatus.SKIP


def test_envelope_resigned_with_another_key_is_rejected(scenario: Scenario, policy: Policy) -> None:
    other_key = ec.generate_private_key(ec.SECP256R1())
    evidence = scenario.sign(scenario.statement(), other_key)
    result = appraise(evidence, nonce=NONCE, policy=policy, now=scenario.now)
    assert_rejected(result, "envelope_signature", "envelope_signature_invalid")


def test_quote_from_other_evidence_is_rejected(scenario: Scenario, policy: Policy) -> None:
    donor = scenario.statement(nonce=fresh_nonce())
    statement = scenario.statement()
    predicate = dataclasses.replace(statement.predicate, quote=donor.predicate.quote)
    statement = dataclasses.replace(statement, predicate=predicate)
    result = appraise(scenario.sign(statement), nonce=NONCE, policy=policy, now=scenario.now)
    assert_rejected(result, "report_data", "report_data_mismatch")


def test_quote_under_another_root_is_rejected(
    scenario: Scenario, policy: Policy, tmp_path: Path
) -> None:
    other = make_scenario(tmp_path / "other-td")
    other = dataclasses.replace(other, key=scenario.key)
    result = appraise(other.evidence(), nonce=NONCE, policy=policy, now=scenario.now)
    assert_rejected(result, "quote_signature", "untrusted_root")
    assert result.check("report_data").status is CheckStatus.SKIP


def test_mrtd_not_in_policy_is_rejected(scenario: Scenario, tmp_path: Path) -> None:
    policy = scenario.policy(tmp_path)
    policy = dataclasses.replace(policy, tdx=dataclasses.replace(policy.tdx, mrtd=("ab" * 48,)))
    result = appraise(scenario.evidence(), nonce=NONCE, policy=policy, now=scenario.now)
    assert_rejected(result, "mrtd", "mrtd_not_allowed")


def test_evidence_older_than_max_age_is_rejected(scenario: Scenario, policy: Policy) -> None:
    later = scenario.issued_at + timedelta(seconds=policy.freshness.max_age_seconds + 1)
    result = appraise(scenario.evidence(), nonce=NONCE, policy=policy, now=later)
    assert_rejected(result, "freshness", "evidence_expired")


def test_evidence_from_the_future_is_rejected(scenario: Scenario, policy: Policy) -> None:
    earlier = scenario.issued_at - timedelta(seconds=policy.freshness.max_clock_skew_seconds + 1)
    result = appraise(scenario.evidence(), nonce=NONCE, policy=policy, now=earlier)
    assert_rejected(result, "freshness", "evidence_from_future")


@pytest.mark.parametrize(
    "evidence",
    [b"", b"not json", b"{}", b'{"payload": "", "payloadType": "x", "signatures": []}'],
)
def test_malformed_evidence_is_a_failed_check_not_an_exception(
    scenario: Scenario, policy: Policy, evidence: bytes
) -> None:
    result = appraise(evidence, nonce=NONCE, policy=policy, now=scenario.now)
    assert_rejected(result, "evidence_format", "evidence_malformed")
    assert [c.status for c in result.checks[1:]] == [CheckStatus.SKIP] * (len(CHECK_NAMES) - 1)
    assert result.evidence.agent_key_id is None


def test_policy_file_with_unknown_key_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[trust]\nroot = "intel"\n[freshness]\nmax_age = 60\n')
    with pytest.raises(PolicyError, match=r"freshness\.max_age") as caught:
        load_policy(path)
    assert caught.value.reason == "policy_invalid"
    assert str(path) in str(caught.value)


# -- the root of trust is never silent -------------------------------------------


def test_simulated_evidence_under_intel_policy_is_a_root_mismatch(
    scenario: Scenario, tmp_path: Path
) -> None:
    path = tmp_path / "intel.toml"
    path.write_text('[trust]\nroot = "intel"\n')
    result = appraise(scenario.evidence(), nonce=NONCE, policy=load_policy(path), now=scenario.now)
    assert_rejected(result, "quote_signature", "root_of_trust_mismatch")
    assert result.simulated is True
    assert result.to_json()["rootOfTrust"]["policy"] == "intel"
    assert result.to_json()["rootOfTrust"]["evidenceSimulated"] is True


def test_required_artifact_missing_is_rejected(scenario: Scenario, policy: Policy) -> None:
    evidence = scenario.evidence(subjects=(DATASET,))
    result = appraise(evidence, nonce=NONCE, policy=policy, now=scenario.now)
    assert_rejected(result, "artifacts", "artifact_missing")


def test_artifact_with_other_digest_is_rejected(scenario: Scenario, policy: Policy) -> None:
    other_model = Subject(MODEL.name, {"sha256": "44" * 32})
    evidence = scenario.evidence(subjects=(other_model, DATASET))
    result = appraise(evidence, nonce=NONCE, policy=policy, now=scenario.now)
    assert_rejected(result, "artifacts", "artifact_digest_mismatch")


def test_optional_artifact_may_be_absent(scenario: Scenario, policy: Policy) -> None:
    evidence = scenario.evidence(subjects=(MODEL,))
    result = appraise(evidence, nonce=NONCE, policy=policy, now=scenario.now)
    assert result.status is AppraisalStatus.AFFIRMING


# -- debug TDs --------------------------------------------------------------------

DEBUG_ATTRIBUTES = (1).to_bytes(8, "little")


@pytest.fixture(scope="module")
def debug_scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    measurements = SimulatedTdMeasurements(td_attributes=DEBUG_ATTRIBUTES)
    return make_scenario(tmp_path_factory.mktemp("debug-td"), measurements)


def test_debug_td_is_rejected(debug_scenario: Scenario, tmp_path: Path) -> None:
    policy = debug_scenario.policy(tmp_path)
    result = appraise(debug_scenario.evidence(), nonce=NONCE, policy=policy, now=debug_scenario.now)
    # The TCB rating refuses first (dcap-qvl rates no debug TD), then the debug check.
    assert_rejected(result, "tcb_status", "debug_td")
    assert result.check("debug").reason == "debug_td"


def test_debug_td_allowed_by_policy_is_a_warning(debug_scenario: Scenario, tmp_path: Path) -> None:
    policy = debug_scenario.policy(tmp_path)
    policy = dataclasses.replace(policy, tdx=dataclasses.replace(policy.tdx, allow_debug=True))
    result = appraise(debug_scenario.evidence(), nonce=NONCE, policy=policy, now=debug_scenario.now)
    assert result.status is AppraisalStatus.WARNING
    assert result.check("debug").reason == "debug_td"
