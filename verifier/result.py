"""What an appraisal concludes, check by check.

    result = appraise(evidence, nonce=nonce, policy=policy)
    result.status                    # AppraisalStatus.AFFIRMING, WARNING or CONTRAINDICATED
    result.check("nonce").reason     # None, or e.g. "nonce_mismatch"
    json.dumps(result.to_json())

Each check names itself, and a failed one carries the same stable ``reason``
string that the matching exception carries, so a test, a log line and the JSON
result all say the same thing. The overall status follows from the checks: any
``fail`` is contraindicated, otherwise any ``warn`` is a warning, otherwise the
evidence is affirmed (``skip`` counts for nothing).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from attestd.evidence import format_rfc3339
from attestd.tee.backend import TeeType
from attestd.verifier.checks import Check, CheckStatus

__all__ = [
    "AppraisalResult",
    "AppraisalStatus",
    "Check",
    "CheckStatus",
    "EvidenceSummary",
    "RootOfTrust",
    "overall_status",
]


class AppraisalStatus(enum.StrEnum):
    """The outcome of the whole appraisal (the names follow RATS EAR's trust tiers)."""

    AFFIRMING = "affirming"
    WARNING = "warning"
    CONTRAINDICATED = "contraindicated"


@dataclass(frozen=True)
class RootOfTrust:
    """The root the policy trusted next to the one the evidence claims.

    Both are in every result so that a simulated quote can never pass unseen:
    ``policy`` is "intel" or "simulated"; ``evidence`` is the backend's own
    name for its root (e.g. ``attestd-simulated-tdx-root``), ``None`` if the
    evidence could not be read that far.
    """

    policy: str
    evidence: str | None = None
    evidence_simulated: bool | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "policy": self.policy,
            "evidence": self.evidence,
            "evidenceSimulated": self.evidence_simulated,
        }


@dataclass(frozen=True)
class EvidenceSummary:
    """What the evidence says about itself, as far as it could be parsed.

    These are *claims*: trust them only when the result is not contraindicated.
    ``subjects`` maps each subject name to its digests (algorithm -> hex).
    """

    subjects: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    log_length: int | None = None
    agent_key_id: str | None = None
    agent_version: str | None = None
    issued_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "subjects": [
                {"name": name, "digest": dict(digest)} for name, digest in self.subjects.items()
            ],
            "logLength": self.log_length,
            "agentKeyId": self.agent_key_id,
            "agentVersion": self.agent_version,
            "issuedAt": _timestamp(self.issued_at),
        }


def overall_status(checks: Iterable[Check]) -> AppraisalStatus:
    """Any fail is contraindicated; otherwise any warn is a warning; otherwise affirming."""
    statuses = {check.status for check in checks}
    if CheckStatus.FAIL in statuses:
        return AppraisalStatus.CONTRAINDICATED
    if CheckStatus.WARN in statuses:
        return AppraisalStatus.WARNING
    return AppraisalStatus.AFFIRMING


@dataclass(frozen=True)
class AppraisalResult:
    """The verdict on one piece of evidence.

    ``simulated`` is true when either the policy trusts the simulated root or
    the evidence claims to come from a simulated TEE; a simulated result is
    never evidence of real hardware, whatever its status.
    """

    checks: tuple[Check, ...]
    tee: TeeType | None
    simulated: bool
    root_of_trust: RootOfTrust
    evidence: EvidenceSummary
    appraised_at: datetime

    @property
    def status(self) -> AppraisalStatus:
        """The overall status, derived from the checks."""
        return overall_status(self.checks)

    @property
    def failures(self) -> tuple[Check, ...]:
        """The failed checks, in the order they ran."""
        return tuple(check for check in self.checks if check.status is CheckStatus.FAIL)

    @property
    def affirming(self) -> bool:
        """Whether the evidence is affirmed: no check failed or warned."""
        return self.status is AppraisalStatus.AFFIRMING

    @property
    def failed_names(self) -> frozenset[str]:
        """The names of the failed checks (``evidence_format`` among them: not evidence at all)."""
        return frozenset(check.name for check in self.failures)

    @property
    def reasons(self) -> tuple[str, ...]:
        """The reasons of the failed checks, in order."""
        return tuple(check.reason for check in self.failures if check.reason is not None)

    def check(self, name: str) -> Check:
        """The check called ``name``; ``KeyError`` if no such check ran."""
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (camelCase keys, RFC 3339 timestamps)."""
        return {
            "status": self.status.value,
            "tee": self.tee.value if self.tee is not None else None,
            "simulated": self.simulated,
            "rootOfTrust": self.root_of_trust.to_json(),
            "evidence": self.evidence.to_json(),
            "appraisedAt": _timestamp(self.appraised_at),
            "checks": [check.to_json() for check in self.checks],
        }


def _timestamp(moment: datetime | None) -> str | None:
    return None if moment is None else format_rfc3339(moment)
