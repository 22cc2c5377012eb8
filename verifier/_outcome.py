"""What one check concluded, before it is named and added to the result."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from attestd.errors import AttestdError
from attestd.verifier.result import CheckStatus


@dataclass(frozen=True)
class Outcome:
    status: CheckStatus
    reason: str | None
    detail: str


def passed(detail: str) -> Outcome:
    return Outcome(CheckStatus.PASS, None, detail)


def failed(reason: str, detail: str) -> Outcome:
    return Outcome(CheckStatus.FAIL, reason, detail)


def warned(reason: str, detail: str) -> Outcome:
    return Outcome(CheckStatus.WARN, reason, detail)


def not_checked(detail: str) -> Outcome:
    """An optional reference value the policy does not set: reported, never a verdict."""
    return Outcome(CheckStatus.SKIP, None, detail)


def run_step(step: Callable[[], Outcome]) -> Outcome:
    """Run one check; bad input becomes a failure with its reason, and so does a bug."""
    try:
        return step()
    except AttestdError as err:
        return failed(err.reason, err.message)
    except Exception as err:  # fail closed: a bug must not turn into a pass
        return failed("internal_error", f"{type(err).__name__}: {err}")


#: A TEE appraiser's reference checks: (check name, the step that runs it).
NamedSteps = Sequence[tuple[str, Callable[[], Outcome]]]


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
                "reference_value_absent",
                f"the policy sets no {key}; {label} {shown} was not checked",
            )
        return not_checked(f"the policy sets no {key}; {label} is {shown}")
    if shown not in allowed:
        return failed(reason, f"{label} {shown} is not among the policy's {key}")
    return passed(f"{label} {shown} is allowed by the policy")
