"""Named checks: how one is declared, what it concludes, and the one runner that runs them.

    FRESH = CheckDef(
        "freshness", needs=("evidence_format",), step=lambda a: a.freshness(),
        reasons=("evidence_expired", "evidence_from_future"),
        claims=(Claim("instance-identity", fail=96, warn=-33),),
    )
    runner = Runner()
    runner.run((FORMAT, FRESH), appraisal)      # each check's step gets ``appraisal``
    runner.checks                               # (Check("evidence_format", ...), ...)

A check is declared once, next to its step, as a :class:`CheckDef`: its name,
the checks it needs, its step, the stable reasons it can report and its AR4SI
claims. Appraisal (``verifier/appraisal.py``, ``_tdx.py``, ``_snp.py``), chains
(``verifier/chain.py``) and the quote tool (``verifier/quote.py``) each
declare their suites that way and run them with :class:`Runner`;
``verifier/registry.py`` lists every suite, and ``ear.py`` and the docs'
tables are derived from or checked against it.

The runner fails closed: a check whose needs did not pass is ``skip``, never
guessed, and an exception inside a step is a ``fail`` (its ``reason``, or
``internal_error`` for a bug), never a pass.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from attestd.errors import AttestdError

C = TypeVar("C")


class CheckStatus(enum.StrEnum):
    """The outcome of one check."""

    PASS = "pass"  # noqa: S105 (a check outcome, not a password)
    FAIL = "fail"
    WARN = "warn"
    SKIP = "skip"


# Checks and outcomes are made a few dozen times per appraisal. A frozen dataclass's own
# __init__ sets each field through object.__setattr__; theirs fill the instance dict
# directly, which is what that amounts to for a dataclass without slots. Equality, hash,
# repr, replace() and the refusal of assignment stay the dataclass's.


@dataclass(frozen=True, init=False)
class Check:
    """One named check; ``reason`` is set for ``fail`` and ``warn``, ``None`` otherwise.

    ``stage`` is the pipeline stage a chain check speaks about (``None`` for an
    appraisal, a quote, or the chain as a whole).
    """

    name: str
    status: CheckStatus
    reason: str | None = None
    detail: str = ""
    stage: str | None = None

    def __init__(
        self,
        name: str,
        status: CheckStatus,
        reason: str | None = None,
        detail: str = "",
        stage: str | None = None,
    ) -> None:
        fields = self.__dict__
        fields["name"] = name
        fields["status"] = status
        fields["reason"] = reason
        fields["detail"] = detail
        fields["stage"] = stage

    def to_json(self, *, with_stage: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; ``with_stage`` adds the ``stage`` member chains report."""
        head: dict[str, Any] = {"name": self.name}
        if with_stage:
            head["stage"] = self.stage
        return head | {
            "status": self.status.value,
            "reason": self.reason,
            "detail": self.detail,
        }


# -- what a step concludes ---------------------------------------------------------------


@dataclass(frozen=True, init=False)
class Outcome:
    """What one step concluded, before the runner names it."""

    status: CheckStatus
    reason: str | None
    detail: str

    def __init__(self, status: CheckStatus, reason: str | None, detail: str) -> None:
        fields = self.__dict__  # see Check
        fields["status"] = status
        fields["reason"] = reason
        fields["detail"] = detail


def passed(detail: str) -> Outcome:
    return Outcome(CheckStatus.PASS, None, detail)


def failed(reason: str, detail: str) -> Outcome:
    return Outcome(CheckStatus.FAIL, reason, detail)


def warned(reason: str, detail: str) -> Outcome:
    return Outcome(CheckStatus.WARN, reason, detail)


def not_checked(detail: str) -> Outcome:
    """Nothing to judge (an unset optional reference value, a blocked input): never a verdict."""
    return Outcome(CheckStatus.SKIP, None, detail)


INTERNAL_ERROR = "internal_error"
"""The reason of a step that raised something unexpected: a bug fails closed."""

REFERENCE_VALUE_ABSENT = "reference_value_absent"
"""The warning of a required reference value the policy does not set."""


def allowed_value(
    label: str,
    key: str,
    value: bytes,
    allowed: tuple[str, ...] | None,
    *,
    reason: str,
    required: bool,
) -> Outcome:
    """Compare a measured value with the policy's allowed list (lowercase hex)."""
    shown = value.hex()
    if allowed is None:
        if required:
            return warned(
                REFERENCE_VALUE_ABSENT,
                f"the policy sets no {key}; {label} {shown} was not checked",
            )
        return not_checked(f"the policy sets no {key}; {label} is {shown}")
    if shown not in allowed:
        return failed(reason, f"{label} {shown} is not among the policy's {key}")
    return passed(f"{label} {shown} is allowed by the policy")


# -- AR4SI claims --------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """What one check says about one AR4SI category: a value per outcome (None: no claim).

    ``by_reason`` overrides ``fail`` for specific failure reasons. A skipped
    check says nothing.
    """

    category: str
    fail: int | None
    warn: int | None = 32
    ok: int | None = 2
    by_reason: Mapping[str, int | None] = field(default_factory=dict)

    def code(self, check: Check) -> int | None:
        """The claim value ``check`` contributes to ``category``."""
        if check.status is CheckStatus.PASS:
            return self.ok
        if check.status is CheckStatus.WARN:
            return self.warn
        if check.status is CheckStatus.FAIL:
            if check.reason is not None and check.reason in self.by_reason:
                return self.by_reason[check.reason]
            return self.fail
        return None


def identity(fail: int) -> Claim:
    """An instance-identity claim; AR4SI has no warning there, so -33 is a non-standard one."""
    return Claim("instance-identity", fail=fail, warn=-33)


def claim(category: str, fail: int = 96) -> Claim:
    """A claim with the standard values: 2 on pass, 32 on warn, ``fail`` (96) on fail."""
    return Claim(category, fail=fail)


# -- declaring and running checks ---------------------------------------------------------


@dataclass(frozen=True)
class CheckDef(Generic[C]):
    """One check, declared once: everything the runner, the EAR and the docs need.

    ``step`` gets the suite's context (the appraisal, the stage, ...) and
    returns an :class:`Outcome`. ``needs`` names checks, of this suite or one
    run before it on the same :class:`Runner`, that must have passed.
    ``reasons`` are the stable reasons the check can report (``internal_error``
    aside); ``claims`` its AR4SI claims. ``applies`` decides whether the check
    is reported at all (``None``: always).
    """

    name: str
    step: Callable[[C], Outcome]
    needs: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    claims: tuple[Claim, ...] = ()
    applies: Callable[[C], bool] | None = None


def names(suite: Sequence[CheckDef[Any]]) -> tuple[str, ...]:
    """The check names of ``suite``, in order."""
    return tuple(check.name for check in suite)


class Runner:
    """Runs suites of checks in order and keeps what each concluded.

    ``verdicts`` are the exceptions that are a failed check carrying their
    ``reason``; ``propagate`` those that are the caller's problem (unreadable
    input), re-raised; anything else is an ``internal_error`` failure.
    ``stop_at_failure`` leaves every later check unreported once one fails (the
    quote tool reports up to its first failure). ``stage`` labels the checks.
    """

    def __init__(
        self,
        *,
        verdicts: tuple[type[AttestdError], ...] = (AttestdError,),
        propagate: tuple[type[Exception], ...] = (),
        stop_at_failure: bool = False,
        stage: str | None = None,
    ) -> None:
        self._verdicts = verdicts
        self._propagate = propagate
        self._stop_at_failure = stop_at_failure
        self.stage = stage
        self._checks: dict[str, Check] = {}
        self._passed: set[str] = set()  # the names whose latest check passed

    @property
    def checks(self) -> tuple[Check, ...]:
        """The checks so far, in the order they were first reported."""
        return tuple(self._checks.values())

    def passed(self, name: str) -> bool:
        return name in self._passed

    def failed(self) -> bool:
        return any(c.status is CheckStatus.FAIL for c in self._checks.values())

    def record(self, name: str, outcome: Outcome) -> None:
        """Report ``outcome`` as check ``name``, replacing an earlier one of that name in place."""
        self._checks[name] = Check(name, outcome.status, outcome.reason, outcome.detail, self.stage)
        if outcome.status is CheckStatus.PASS:
            self._passed.add(name)
        else:
            self._passed.discard(name)

    def run(self, suite: Sequence[CheckDef[C]], context: C) -> None:
        """Run each check of ``suite`` on ``context`` whose needs passed; skip the others."""
        for check in suite:
            if self._stop_at_failure and self.failed():
                return
            if check.applies is not None and not check.applies(context):
                continue
            passed = self._passed
            blocked = [need for need in check.needs if need not in passed]
            if blocked:
                self.record(check.name, not_checked(f"skipped: {', '.join(blocked)} did not pass"))
                continue
            self.record(check.name, self._outcome(check, context))

    def _outcome(self, check: CheckDef[C], context: C) -> Outcome:
        try:
            return check.step(context)
        except self._verdicts as err:
            return failed(err.reason, err.message)
        except self._propagate:
            raise
        except Exception as err:  # fail closed: a bug must not turn into a pass
            return failed(INTERNAL_ERROR, f"{type(err).__name__}: {err}")
