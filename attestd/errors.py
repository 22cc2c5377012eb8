"""The root of every exception attestd raises on purpose.

Each package derives its own types from :class:`AttestdError`. A type carries a
stable, machine-readable ``reason`` (the same string the verifier puts in its
results and the agent puts in its logs) and a sentence meant for people.
"""

from __future__ import annotations

from typing import ClassVar


class AttestdError(Exception):
    """Base class of all attestd errors.

    ``reason`` is stable and machine-readable; ``str(err)`` is for people.
    """

    reason: ClassVar[str] = "attestd_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def diagnostics(self) -> str:
        """A one-line text for a user: what failed and why, prefixed by the reason."""
        return f"{self.reason}: {self.message}"
