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
    """A quote failed a cryptographic check; each subclass is one check, its ``reason`` fixed.

    Catch this base to catch them all. The subclasses every TEE shares are
    below; each TEE's own are in its ``verify`` module (and ``tdx.dcap``).
    """

    reason = "quote_verification_failed"


class UntrustedRootError(QuoteVerificationError):
    """The certificate chain ends at a root that verification was not told to trust."""

    reason = "untrusted_root"


class CertificateExpiredError(QuoteVerificationError):
    """A certificate of the chain is not valid at the verification time."""

    reason = "certificate_expired"


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
