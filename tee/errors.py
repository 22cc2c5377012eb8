"""Exceptions of the TEE layer."""

from __future__ import annotations

from attestd.errors import AttestdError


class TeeError(AttestdError):
    """Anything that went wrong inside the TEE layer."""

    reason = "tee_error"


class TeeUnavailableError(TeeError):
    """The requested TEE is not present on this machine, or not usable."""

    reason = "tee_unavailable"


class DeviceError(TeeError):
    """The kernel interface (configfs-tsm, ioctl, sysfs) failed or misbehaved."""

    reason = "tee_device_error"


class QuoteFormatError(TeeError):
    """Bytes that claim to be a quote or report are malformed.

    ``field`` names the structure member and ``offset`` its byte offset in the
    input, so a person with a hex dump can find the problem.
    """

    reason = "quote_malformed"

    def __init__(self, message: str, *, field: str, offset: int) -> None:
        super().__init__(f"{field} at offset {offset:#x}: {message}")
        self.field = field
        self.offset = offset


class QuoteVerificationError(TeeError):
    """A quote failed a cryptographic check; ``reason`` says which one."""

    reason = "quote_verification_failed"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason  # type: ignore[misc]


class InvalidArgumentError(TeeError, ValueError):
    """A caller passed a value the TEE cannot take, e.g. report_data that is not 64 bytes."""

    reason = "tee_invalid_argument"


class CcelFormatError(TeeError):
    """Bytes that claim to be an ACPI CCEL table or a CC event log are malformed.

    ``field`` names the structure member and ``offset`` its byte offset in the
    input, as in QuoteFormatError.
    """

    reason = "ccel_malformed"

    def __init__(self, message: str, *, field: str, offset: int) -> None:
        super().__init__(f"{field} at offset {offset:#x}: {message}")
        self.field = field
        self.offset = offset
