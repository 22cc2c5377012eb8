"""What one check concluded, before it is named and added to the result."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

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
