"""What every TEE backend offers the agent.

A backend turns 64 bytes of report data into a hardware quote, together with
everything a verifier needs beside it (:class:`Attestation`), and, where the
hardware has runtime measurement registers (TDX RTMRs), extends and reads the
register that carries the runtime log. Backends know nothing of gRPC, evidence
or policy::

    attestation = backend.attest(report_data)
    attestation.quote, attestation.certificates, attestation.collateral, attestation.ccel
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from contextlib import AbstractContextManager
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


@dataclass(frozen=True)
class Ccel:
    """A TD's CC event log as the firmware left it: the ACPI CCEL table and the log area."""

    table: bytes
    log: bytes


@dataclass(frozen=True)
class Attestation:
    """A quote and what a verifier needs beside it, as one backend call returns them.

    ``certificates`` are the DER certificates the quote needs and does not
    embed, leaf first (SEV-SNP: :class:`attestd.tee.snp.abi.CertChain` order);
    ``collateral`` is the TDX DCAP collateral (dcap-qvl's QuoteCollateralV3 JSON
    object) where the backend has it; ``ccel`` the machine's CC event log where
    the firmware published one; ``runtime_register`` the register that carries
    the runtime log (TDX RTMR3) as this quote holds it, which the agent matches
    to a prefix of its log. Each is empty or None where the TEE has none.
    """

    quote: bytes
    certificates: tuple[bytes, ...] = ()
    collateral: Mapping[str, object] | None = None
    ccel: Ccel | None = None
    runtime_register: bytes | None = None


@runtime_checkable
class TeeBackend(Protocol):
    """The interface the agent uses; one implementation per TEE and transport."""

    def describe(self) -> TeeDescription:
        """Which TEE this is, and which root of trust its quotes rest on."""
        ...

    def get_quote(self, report_data: bytes) -> bytes:
        """A quote (TDX) or report (SNP) whose REPORTDATA is ``report_data`` (64 bytes)."""
        ...

    def attest(self, report_data: bytes) -> Attestation:
        """The quote for ``report_data`` with the certificates, collateral and CCEL it needs."""
        ...

    def extend_runtime_register(self, digest: bytes) -> None:
        """Extend the runtime-log register (TDX RTMR3) by a 48-byte SHA-384 digest."""
        ...

    def read_runtime_register(self) -> bytes | None:
        """The current runtime-log register, or None where the TEE has none (SNP)."""
        ...


@runtime_checkable
class BatchedRuntimeRegister(Protocol):
    """A backend that can apply a run of runtime-register extensions as one write.

        with backend.runtime_register_batch():      # other readers wait meanwhile
            for digest in digests:
                backend.extend_runtime_register(digest)   # in order, as always
        # leaving the block writes the register; if that raises, none of them happened

    The agent's group commit uses it when a backend has it (the simulated TD).
    """

    def runtime_register_batch(self) -> AbstractContextManager[None]:
        """Hold the register for this thread's extensions; write it once at the end."""
        ...
