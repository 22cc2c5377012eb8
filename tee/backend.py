"""What every TEE backend offers the agent.

A backend turns 64 bytes of report data into a hardware quote and, where the
hardware has runtime measurement registers (TDX RTMRs), extends and reads the
register that carries the runtime log. Backends know nothing of gRPC, evidence
or policy.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from attestd.tee.errors import InvalidArgumentError

REPORT_DATA_SIZE = 64


def check_report_data(report_data: bytes) -> None:
    """Refuse anything but exactly :data:`REPORT_DATA_SIZE` bytes, as every backend must."""
    if not isinstance(report_data, bytes) or len(report_data) != REPORT_DATA_SIZE:
        raise InvalidArgumentError(f"report_data must be exactly {REPORT_DATA_SIZE} bytes")


class TeeType(enum.StrEnum):
    """The hardware families attestd speaks to."""

    TDX = "tdx"
    SEV_SNP = "sev-snp"


@dataclass(frozen=True)
class TeeDescription:
    """What a backend says about itself; copied into every piece of evidence.

    ``root_of_trust`` names the root the quote chains to (``intel-sgx-root-ca``
    on hardware, ``attestd-simulated-tdx-root`` for the simulator), so that no
    simulated evidence can pass for real.
    """

    tee: TeeType
    simulated: bool
    root_of_trust: str
    backend: str


@runtime_checkable
class TeeBackend(Protocol):
    """The interface the agent uses; one implementation per TEE and transport."""

    def describe(self) -> TeeDescription:
        """Which TEE this is, and which root of trust its quotes rest on."""
        ...

    def get_quote(self, report_data: bytes) -> bytes:
        """A quote (TDX) or report (SNP) whose REPORTDATA is ``report_data`` (64 bytes)."""
        ...

    def extend_runtime_register(self, digest: bytes) -> None:
        """Extend the runtime-log register (TDX RTMR3) by a 48-byte SHA-384 digest."""
        ...

    def read_runtime_register(self) -> bytes | None:
        """The current runtime-log register, or None where the TEE has none (SNP)."""
        ...


@runtime_checkable
class ReportWithCertificates(Protocol):
    """A backend (SNP) whose host hands out the signing certificates with each report."""

    def get_report_with_certificates(self, report_data: bytes) -> tuple[bytes, bytes | None]:
        """The report and the raw GHCB certificate table (None when the host gave none)."""
        ...


@runtime_checkable
class CollateralProvider(Protocol):
    """A backend (the TDX simulator) that can hand out the DCAP collateral of its quotes."""

    def collateral_json(self) -> str:
        """dcap-qvl's QuoteCollateralV3 JSON for this platform's quotes."""
        ...
