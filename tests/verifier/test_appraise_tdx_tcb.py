"""TDX TCB appraisal: the DCAP status and its advisories, where collateral comes from, and
the TD's owner registers and TEE_TCB_SVN against the policy."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from pathlib import Path

import pytest

from attestd.tee.tdx import _simulated_pki as tdx_pki
from attestd.tee.tdx.simulated import SimulatedTdMeasurements
from attestd.verifier import (
    AppraisalResult,
    AppraisalStatus,
    CheckStatus,
    Policy,
    appraise,
    load_policy,
)
from tests.verifier.simulated_evidence import NONCE, Scenario, make_scenario, replace_predicate

ADVISORY = "ATTESTD-SIMULATED-SA-0001"
"""The advisory the simulated collateral lists on its OutOfDate (all-zero) TCB level."""


def assert_rejected(result: AppraisalResult, check: str, reason: str) -> None:
    """Contraindicated, and ``check`` is the first failure, with ``reason``."""
    assert result.status is AppraisalStatus.CONTRAINDICATED
    first = result.failures[0]
    assert (first.name, first.reason) == (check, reason), result.to_json()["checks"]


def with_tdx(policy: Policy, **changes: object) -> Policy:
    return dataclasses.replace(policy, tdx=dataclasses.replace(policy.tdx, **changes))  # type: ignore[arg-type]


# -- the TCB status and its advisories -----------------------------------------------


@pytest.fixture(scope="module")
def outdated(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    """A TD whose TDX module SVN (TEE_TCB_SVN[2]) is below the platform's UpToDate level.

    The simulated collateral rates anything below the platform's own TCB OutOfDate,
    with one advisory.
    """
    svn = bytearray(tdx_pki.PLATFORM_TCB.tee_tcb_svn)
    svn[2] -= 1
    measurements = SimulatedTdMeasurements(tee_tcb_svn=bytes(svn))
    return make_scenario(tmp_path_factory.mktemp("outdated-td"), measurements)


def test_collateral_rating_the_platform_out_of_date_is_rejected_by_default(
    scenario: Scenario, policy: Policy
) -> None:
    collateral = scenario.issue_collateral(tcb_status="OutOfDate")
    statement = replace_predicate(scenario.statement(), collateral=collateral)
    result = appraise(scenario.sign(statement), nonce=NONCE, policy=policy, now=scenario.now)
    assert_rejected(result, "tcb_status", "tcb_status_not_allowed")
    assert "OutOfDate" in result.check("tcb_status").detail


def test_out_of_date_allowed_by_policy_passes(scenario: Scenario, policy: Policy) -> None:
    collateral = scenario.issue_collateral(tcb_status="OutOfDate")
    statement = replace_predicate(scenario.statement(), collateral=collateral)
    allowing = with_tdx(policy, allowed_tcb_statuses=("UpToDate", "OutOfDate"))
    result = appraise(scenario.sign(statement), nonce=NONCE, policy=allowing, now=scenario.now)
    assert result.check("tcb_status").status is CheckStatus.PASS
    assert result.status is AppraisalStatus.AFFIRMING, result.to_json()["checks"]


def test_lower_tee_tcb_svn_is_out_of_date_with_an_advisory(
    outdated: Scenario, tmp_path: Path
) -> None:
    policy = outdated.policy(tmp_path)
    result = appraise(outdated.evidence(), nonce=NONCE, policy=policy, now=outdated.now)
    assert_rejected(result, "tcb_status", "tcb_status_not_allowed")
    assert ADVISORY in result.check("tcb_status").detail

    allowing = with_tdx(policy, allowed_tcb_statuses=("OutOfDate",))
    result = appraise(outdated.evidence(), nonce=NONCE, policy=allowing, now=outdated.now)
    assert result.check("tcb_status").status is CheckStatus.PASS, result.to_json()["checks"]


def test_rejected_advisory_is_rejected(outdated: Scenario, tmp_path: Path) -> None:
    policy = with_tdx(
        outdated.policy(tmp_path),
        allowed_tcb_statuses=("OutOfDate",),
        rejected_advisories=(ADVISORY,),
    )
    result = appraise(outdated.evidence(), nonce=NONCE, policy=policy, now=outdated.now)
    assert_rejected(result, "tcb_status", "advisory_rejected")


def test_advisory_not_among_accepted_ones_is_rejected(outdated: Scenario, tmp_path: Path) -> None:
    policy = with_tdx(
        outdated.policy(tmp_path),
        allowed_tcb_statuses=("OutOfDate",),
        accepted_advisories=("INTEL-SA-00837",),
    )
    result = appraise(outdated.evidence(), nonce=NONCE, policy=policy, now=outdated.now)
    assert_rejected(result, "tcb_status", "advisory_not_accepted")

    covering = with_tdx(policy, accepted_advisories=("INTEL-SA-00837", ADVISORY))
    result = appraise(outdated.evidence(), nonce=NONCE, policy=covering, now=outdated.now)
    assert result.check("tcb_status").status is CheckStatus.PASS, result.to_json()["checks"]


# -- where the collateral comes from ----------------------------------------------------


def test_evidence_without_collateral_is_unrated_by_default(
    scenario: Scenario, policy: Policy
) -> None:
    statement = replace_predicate(scenario.statement(), collateral=None)
    result = appraise(scenario.sign(statement), nonce=NONCE, policy=policy, now=scenario.now)
    assert_rejected(result, "tcb_status", "collateral_unavailable")


def test_collateral_from_a_file_rates_evidence_without_collateral(
    scenario: Scenario, tmp_path: Path
) -> None:
    (tmp_path / "collateral.json").write_text(scenario.backend.collateral_json())
    policy = scenario.policy(
        tmp_path, extra='[tdx.collateral]\nsource = "file"\npath = "collateral.json"\n'
    )
    statement = replace_predicate(scenario.statement(), collateral=None)
    result = appraise(scenario.sign(statement), nonce=NONCE, policy=policy, now=scenario.now)
    assert result.check("tcb_status").status is CheckStatus.PASS, result.to_json()["checks"]
    assert result.status is AppraisalStatus.AFFIRMING


def test_collateral_file_of_another_platform_is_unavailable(
    scenario: Scenario, vectors_dir: Path, tmp_path: Path
) -> None:
    # Intel's real collateral is for another FMSPC than the simulated platform's.
    intel = json.loads((vectors_dir / "tdx" / "dcapqvl_quote_v4.collateral.json").read_text())
    (tmp_path / "collateral.json").write_text(json.dumps(intel))
    policy = scenario.policy(
        tmp_path, extra='[tdx.collateral]\nsource = "file"\npath = "collateral.json"\n'
    )
    statement = replace_predicate(scenario.statement(), collateral=None)
    result = appraise(scenario.sign(statement), nonce=NONCE, policy=policy, now=scenario.now)
    assert_rejected(result, "tcb_status", "collateral_unavailable")


def test_collateral_past_its_next_update_is_expired(scenario: Scenario, policy: Policy) -> None:
    collateral = scenario.issue_collateral(next_update=scenario.issued_at - timedelta(days=1))
    statement = replace_predicate(scenario.statement(), collateral=collateral)
    result = appraise(scenario.sign(statement), nonce=NONCE, policy=policy, now=scenario.now)
    assert_rejected(result, "tcb_status", "collateral_expired")


# -- TEE_TCB_SVN and the owner registers -------------------------------------------------


def test_tee_tcb_svn_below_minimum_is_rejected(scenario: Scenario, policy: Policy) -> None:
    above = bytearray(tdx_pki.PLATFORM_TCB.tee_tcb_svn)
    above[2] += 1
    result = appraise(
        scenario.evidence(),
        nonce=NONCE,
        policy=with_tdx(policy, min_tee_tcb_svn=bytes(above)),
        now=scenario.now,
    )
    assert_rejected(result, "tee_tcb_svn", "tee_tcb_svn_too_low")


def test_tee_tcb_svn_at_minimum_passes(scenario: Scenario, tmp_path: Path) -> None:
    scenario.policy(tmp_path)  # writes policy.toml and the root; the minimum goes into [tdx]
    path = tmp_path / "policy.toml"
    svn = tdx_pki.PLATFORM_TCB.tee_tcb_svn.hex()
    path.write_text(path.read_text().replace("[tdx]\n", f'[tdx]\nmin_tee_tcb_svn = "{svn}"\n', 1))
    policy = load_policy(path)
    assert policy.tdx.min_tee_tcb_svn == tdx_pki.PLATFORM_TCB.tee_tcb_svn
    result = appraise(scenario.evidence(), nonce=NONCE, policy=policy, now=scenario.now)
    assert result.check("tee_tcb_svn").status is CheckStatus.PASS
    assert result.status is AppraisalStatus.AFFIRMING


@pytest.mark.parametrize("register", ["mr_owner", "mr_config_id"])
def test_owner_register_other_than_the_policy_is_rejected(
    scenario: Scenario, policy: Policy, register: str
) -> None:
    result = appraise(
        scenario.evidence(),
        nonce=NONCE,
        policy=with_tdx(policy, **{register: ("ab" * 48,)}),
        now=scenario.now,
    )
    assert_rejected(result, register, "mr_not_allowed")


@pytest.mark.parametrize("register", ["mr_owner", "mr_config_id"])
def test_owner_register_equal_to_the_policy_passes(
    scenario: Scenario, policy: Policy, register: str
) -> None:
    # The simulated TD leaves its owner registers zero, as a TD launched without them.
    result = appraise(
        scenario.evidence(),
        nonce=NONCE,
        policy=with_tdx(policy, **{register: ("00" * 48,)}),
        now=scenario.now,
    )
    assert result.check(register).status is CheckStatus.PASS
    assert result.status is AppraisalStatus.AFFIRMING
