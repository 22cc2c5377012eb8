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


class StageAlreadyOpenError(AgentError):
    """BeginStage while a stage is open (or being opened or closed)."""

    reason = "stage_already_open"


class NoStageOpenError(AgentError):
    """EndStage or AbortStage with no stage open (never begun, already ended or aborted)."""

    reason = "stage_not_open"


class PreviousAttestationError(RequestInvalidError):
    """BeginStage was given a previous attestation that is not one, or not of this run."""

    reason = "previous_attestation_invalid"
