"""Exceptions of the agent daemon."""

from __future__ import annotations

from attestd.errors import AttestdError


class AgentError(AttestdError):
    """Anything the agent refuses or fails to do."""

    reason = "agent_error"


class ConfigError(AgentError):
    """The configuration file is unreadable or says something invalid."""

    reason = "config_invalid"


class RuntimeLogCorruptError(AgentError):
    """The runtime log on disk is damaged beyond a torn final record."""

    reason = "runtime_log_corrupt"


class NotServingError(AgentError):
    """The agent refuses evidence because its log does not match the register."""

    reason = "agent_not_serving"


class ArtifactNotMeasuredError(AgentError):
    """Evidence was asked for an artifact that no pipeline has measured."""

    reason = "artifact_not_measured"


class RequestInvalidError(AgentError):
    """A request broke a documented limit (size, count, reserved name)."""

    reason = "request_invalid"


class ListenError(AgentError):
    """A listener could not be set up (socket in use, bad TLS files)."""

    reason = "listen_failed"


class EvidenceTooLargeError(AgentError):
    """The evidence would exceed what verifiers accept (the log is too long)."""

    reason = "evidence_too_large"


class CheckpointUnknownError(AgentError):
    """A verifier's log checkpoint is not a point of this agent's runtime log."""

    reason = "checkpoint_unknown"


class StageAlreadyOpenError(AgentError):
    """BeginStage while a stage is open (or being opened or closed)."""

    reason = "stage_already_open"


class NoStageOpenError(AgentError):
    """EndStage or AbortStage with no stage open (never begun, already ended or aborted)."""

    reason = "stage_not_open"


class PreviousAttestationError(RequestInvalidError):
    """BeginStage was given a previous attestation that is not one, or not of this run."""

    reason = "previous_attestation_invalid"


class StateDirError(AgentError):
    """The state directory cannot be created, opened or locked (it is a file, say)."""

    reason = "state_dir_invalid"


class StateDirLockedError(AgentError):
    """Another agent holds the state directory; two agents would corrupt one runtime log."""

    reason = "state_dir_locked"

    def __init__(self, message: str, holder_pid: int | None) -> None:
        super().__init__(message)
        self.holder_pid = holder_pid


class TlsInvalidError(ListenError):
    """A TLS file is readable but not what it must be (garbage, empty, key and cert differ)."""

    reason = "tls_invalid"


class WeakKeyError(ListenError):
    """A TLS key (the agent's, or a certificate's in the chain) is below the minimum strength."""

    reason = "tls_key_too_weak"


class ClientKeyTooWeakError(AgentError):
    """A verifier's client certificate key is below the minimum strength."""

    reason = "client_key_too_weak"


#: The most characters of an outside value an error message repeats. gRPC sends
#: the message as a header, and an oversized one replaces the whole refusal
#: (reason included) with RESOURCE_EXHAUSTED.
MAX_ECHO_CHARS = 200


def truncate(text: str, limit: int, *, length: str | None = None) -> str:
    """``text`` cut to ``limit`` characters; a cut text ends in an ellipsis and its length.

    ``length`` says how to state the length when it is not ``text``'s own (a value's).
    """
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({length or f'{len(text)} characters'})"


def echo(value: object, limit: int = MAX_ECHO_CHARS) -> str:
    """``repr(value)`` for an error message, cut by :func:`truncate`.

    Use it wherever a message repeats a value a client sent (a name, a path):
    a cut value says how long it was, so the reader knows it saw a prefix.
    """
    if isinstance(value, bytes):
        return truncate(repr(value), limit, length=f"{len(value)} bytes")
    if isinstance(value, str):
        return truncate(repr(value), limit, length=f"{len(value)} characters")
    return truncate(repr(value), limit)
