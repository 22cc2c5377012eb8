"""The one runner: dependencies, fail-closed errors, and what each caller may ask of it."""

from __future__ import annotations

import dataclasses

import pytest

from attestd.errors import AttestdError
from attestd.verifier.checks import (
    Check,
    CheckDef,
    CheckStatus,
    Claim,
    Outcome,
    Runner,
    failed,
    passed,
)


class _Refused(AttestdError):
    reason = "refused"


class _Unreadable(AttestdError):
    reason = "unreadable"


def _raise(error: Exception) -> Outcome:
    raise error


def _statuses(runner: Runner) -> dict[str, tuple[CheckStatus, str | None]]:
    return {c.name: (c.status, c.reason) for c in runner.checks}


def test_a_check_whose_need_did_not_pass_is_skipped_not_run() -> None:
    ran: list[str] = []

    def step(name: str) -> Outcome:
        ran.append(name)
        return passed(name)

    suite: tuple[CheckDef[None], ...] = (
        CheckDef("a", lambda _: failed("a_bad", "no")),
        CheckDef("b", lambda _: step("b"), ("a",)),
        CheckDef("c", lambda _: step("c")),
        CheckDef("d", lambda _: step("d"), ("c",)),
    )
    runner = Runner()
    runner.run(suite, None)
    assert ran == ["c", "d"]
    assert _statuses(runner) == {
        "a": (CheckStatus.FAIL, "a_bad"),
        "b": (CheckStatus.SKIP, None),
        "c": (CheckStatus.PASS, None),
        "d": (CheckStatus.PASS, None),
    }
    assert runner.checks[1].detail == "skipped: a did not pass"


def test_a_need_from_an_earlier_suite_counts() -> None:
    runner = Runner()
    runner.run((CheckDef("a", lambda _: failed("a_bad", "no")),), None)
    runner.run((CheckDef("b", lambda _: passed("ran"), ("a",)),), 0)
    assert runner.checks[-1].status is CheckStatus.SKIP


def test_errors_fail_closed_with_their_reason_and_bugs_as_internal_error() -> None:
    suite: tuple[CheckDef[None], ...] = (
        CheckDef("verdict", lambda _: _raise(_Refused("refused here"))),
        CheckDef("bug", lambda _: _raise(KeyError("oops"))),
    )
    runner = Runner()
    runner.run(suite, None)
    assert _statuses(runner) == {
        "verdict": (CheckStatus.FAIL, "refused"),
        "bug": (CheckStatus.FAIL, "internal_error"),
    }
    assert runner.checks[0].detail == "refused here"


def test_a_caller_may_keep_some_errors_for_itself() -> None:
    runner = Runner(verdicts=(_Refused,), propagate=(_Unreadable,))
    with pytest.raises(_Unreadable):
        runner.run((CheckDef("input", lambda _: _raise(_Unreadable("bad file"))),), None)
    runner.run((CheckDef("verdict", lambda _: _raise(_Refused("no"))),), None)
    assert runner.checks[-1].reason == "refused"


def test_stop_at_failure_reports_up_to_the_first_failure() -> None:
    suite: tuple[CheckDef[None], ...] = (
        CheckDef("a", lambda _: failed("a_bad", "no")),
        CheckDef("b", lambda _: passed("never"), ("a",)),
    )
    runner = Runner(stop_at_failure=True)
    runner.run(suite, None)
    assert [c.name for c in runner.checks] == ["a"]


def test_a_check_that_does_not_apply_is_not_reported() -> None:
    suite: tuple[CheckDef[bool], ...] = (
        CheckDef("maybe", lambda _: passed("ran"), applies=lambda on: on),
    )
    runner = Runner()
    runner.run(suite, False)
    assert runner.checks == ()
    runner.run(suite, True)
    assert [c.name for c in runner.checks] == ["maybe"]


def test_recording_again_replaces_a_check_in_place_with_the_stage() -> None:
    runner = Runner(stage="train")
    runner.record("a", passed("first"))
    runner.record("b", passed("second"))
    runner.record("a", failed("a_dup", "again"))
    assert runner.checks == (
        Check("a", CheckStatus.FAIL, "a_dup", "again", "train"),
        Check("b", CheckStatus.PASS, None, "second", "train"),
    )
    assert runner.checks[0].to_json(with_stage=True) == {
        "name": "a", "stage": "train", "status": "fail", "reason": "a_dup", "detail": "again",
    }  # fmt: skip
    assert "stage" not in runner.checks[0].to_json()


@pytest.mark.parametrize(
    ("status", "reason", "code"),
    [(CheckStatus.PASS, None, 2), (CheckStatus.WARN, "w", 32), (CheckStatus.FAIL, "x", 96),
     (CheckStatus.FAIL, "special", 97), (CheckStatus.SKIP, None, None)],
)  # fmt: skip
def test_a_claim_gives_one_value_per_outcome(
    status: CheckStatus, reason: str | None, code: int | None
) -> None:
    claim = Claim("hardware", fail=96, by_reason={"special": 97})
    assert claim.code(Check("c", status, reason)) == code


def test_checks_and_outcomes_stay_frozen_values() -> None:
    check = Check("nonce", CheckStatus.PASS, detail="ok")
    assert check == Check("nonce", CheckStatus.PASS, None, "ok", None)
    assert hash(check) == hash(Check("nonce", CheckStatus.PASS, None, "ok"))
    assert check != Check("nonce", CheckStatus.FAIL, "nonce_mismatch", "ok")
    assert dataclasses.replace(check, stage="train").stage == "train"
    assert repr(check).startswith("Check(name='nonce', status=")
    outcome = Outcome(CheckStatus.WARN, "debug_td", "x")
    for value, field in ((check, "status"), (outcome, "reason")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, field, None)


def test_a_check_recorded_again_as_failed_no_longer_lets_its_dependents_run() -> None:
    runner = Runner()
    runner.record("a", passed("first"))
    runner.record("a", failed("refused", "then refused"))
    ran: list[str] = []
    runner.run((CheckDef("b", lambda _: ran.append("b") or passed("ran"), ("a",)),), None)
    assert not ran and not runner.passed("a")
    assert runner.checks[1].status is CheckStatus.SKIP
