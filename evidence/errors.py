"""Exceptions of the evidence formats.

Every error names what is wrong in words a person can act on; format errors
also carry ``path``, the JSON path (``$.predicate.binding.nonce``) of the value
that failed, so a log line points at the exact field.
"""

from __future__ import annotations

from attestd.errors import AttestdError


class EvidenceError(AttestdError):
    """Anything wrong with evidence, its envelope, statement or runtime log."""

    reason = "evidence_invalid"


class EvidenceFormatError(EvidenceError):
    """Bytes or JSON that do not follow docs/evidence-format.md.

    ``path`` is the JSON path of the offending value (``$`` for the whole
    document); the message starts with it.
    """

    reason = "evidence_malformed"

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class NonceError(EvidenceFormatError):
    """A nonce is missing, of the wrong type, or outside the permitted length."""

    reason = "nonce_invalid"


class EventFormatError(EvidenceError):
    """A runtime event's domain, operation or content breaks the event rules."""

    reason = "event_invalid"


class EnvelopeSignatureError(EvidenceError):
    """The DSSE envelope carries no valid signature by the expected key."""

    reason = "envelope_signature_invalid"


class LogReplayError(EvidenceError):
    """The runtime log does not replay: a gap in sequences, or a head mismatch."""

    reason = "runtime_log_invalid"


class SubjectsMismatchError(EvidenceError):
    """The statement's subjects do not hash to the digest in the binding."""

    reason = "subjects_digest_mismatch"


class AgentKeyMismatchError(EvidenceError):
    """The agent key in the statement is not the key the binding names."""

    reason = "agent_key_mismatch"


class LogPrefixError(EvidenceError):
    """Runtime-log pages fetched from the agent do not chain to the checkpoint they should reach."""

    reason = "log_prefix_mismatch"
