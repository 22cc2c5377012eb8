"""The overall status follows from the checks, and the JSON says everything."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from attestd.tee.backend import TeeType
from attestd.verifier.result import (
    AppraisalResult,
    AppraisalStatus,
    Check,
    CheckStatus,
    EvidenceSummary,
    RootOfTrust,
    overall_status,
)


def _check(name: str, status: CheckStatus, reason: str | None = None) -> Check:
    return Check(name=name, status=status, reason=reason, detail="")


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], AppraisalStatus.AFFIRMING),
        ([CheckStatus.PASS, CheckStatus.SKIP], AppraisalStatus.AFFIRMING),
        ([CheckStatus.PASS, CheckStatus.WARN], AppraisalStatus.WARNING),
        ([CheckStatus.WARN, CheckStatus.FAIL], AppraisalStatus.CONTRAINDICATED),
        ([CheckStatus.FAIL, CheckStatus.SKIP], AppraisalStatus.CONTRAINDICATED),
    ],
)
def test_overall_status_is_worst_of_checks(
    statuses: list[CheckStatus], expected: AppraisalStatus
) -> None:
    checks = [_check(f"c{i}", status) for i, status in enumerate(statuses)]
    assert overall_status(checks) is expected


def test_result_to_json_names_status_root_of_trust_and_checks() -> None:
    issued = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    result = AppraisalResult(
        checks=(
            _check("evidence_format", CheckStatus.PASS),
            _check("nonce", CheckStatus.FAIL, "nonce_mismatch"),
        ),
        tee=TeeType.TDX,
        simulated=True,
        root_of_trust=RootOfTrust(
            policy="simulated", evidence="attestd-simulated-tdx-root", evidence_simulated=True
        ),
        evidence=EvidenceSummary(
            subjects={"model": {"sha256": "00" * 32}},
            log_length=3,
            agent_key_id="sha256:ab",
            agent_version="0.1.0",
            issued_at=issued,
        ),
        appraised_at=issued,
    )
    assert result.status is AppraisalStatus.CONTRAINDICATED
    assert result.reasons == ("nonce_mismatch",)
    assert result.check("nonce").reason == "nonce_mismatch"
    with pytest.raises(KeyError):
        result.check("absent")
    document = result.to_json()
    json.dumps(document)  # serialisable as is
    assert document["status"] == "contraindicated"
    assert document["tee"] == "tdx"
    assert document["simulated"] is True
    assert document["rootOfTrust"] == {
        "policy": "simulated",
        "evidence": "attestd-simulated-tdx-root",
        "evidenceSimulated": True,
    }
    assert document["evidence"]["issuedAt"] == "2025-01-02T03:04:05.000000Z"
    assert document["evidence"]["subjects"] == [{"name": "model", "digest": {"sha256": "00" * 32}}]
    assert document["checks"][1] == {
        "name": "nonce",
        "status": "fail",
        "reason": "nonce_mismatch",
        "detail": "",
    }


@pytest.mark.parametrize(
    ("statuses", "affirming", "failed"),
    [
        ((CheckStatus.PASS, CheckStatus.SKIP), True, frozenset()),
        ((CheckStatus.PASS, CheckStatus.WARN), False, frozenset()),
        ((CheckStatus.FAIL, CheckStatus.SKIP), False, frozenset({"evidence_format"})),
    ],
)
def test_affirming_and_failed_names_follow_the_checks(
    statuses: tuple[CheckStatus, CheckStatus], affirming: bool, failed: frozenset[str]
) -> None:
    when = dt.datetime(2025, 1, 2, tzinfo=dt.UTC)
    result = AppraisalResult(
        checks=(_check("evidence_format", statuses[0]), _check("nonce", statuses[1])),
        tee=None,
        simulated=False,
        root_of_trust=RootOfTrust(policy="intel"),
        evidence=EvidenceSummary(),
        appraised_at=when,
    )
    assert result.affirming is affirming
    assert result.failed_names == failed
