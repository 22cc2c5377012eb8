"""Errors of the verifier service that are not about one of its parts' data."""

from __future__ import annotations

from attestd.verifier.errors import VerifierError

__all__ = ["FleetExtraMissingError", "ServiceConfigError"]


class FleetExtraMissingError(VerifierError):
    """attestd-verifier was started without its database libraries (the ``fleet`` extra)."""

    reason = "fleet_extra_missing"

    def __init__(self, module: str) -> None:
        super().__init__(
            f"the verifier service needs {module!r}, which is not installed: "
            "pip install 'attestd[fleet]'"
        )


class ServiceConfigError(VerifierError):
    """The verifier service's configuration file is missing, unreadable or invalid."""

    reason = "service_config_invalid"
