"""Exceptions of the verifier.

Bad *evidence* never raises: it becomes a failed check in the appraisal result.
What raises is what the operator controls, such as a policy file that cannot be
trusted to say what it means.
"""

from __future__ import annotations

from attestd.errors import AttestdError


class VerifierError(AttestdError):
    """Anything that went wrong inside the verifier itself."""

    reason = "verifier_error"


class PolicyError(VerifierError):
    """A policy file is missing, unreadable, or says something we do not understand.

    ``path`` is the policy file (or the file it names) the problem was found in.
    """

    reason = "policy_invalid"

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(f"{path}: {message}" if path is not None else message)
        self.path = path
