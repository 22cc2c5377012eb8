"""A TEE backend in memory, for testing the agent without any TEE or simulator.

The runtime register lives in a ``FakeRegister`` that outlives the backend, the
way RTMR3 outlives the agent process: ``reopen()`` gives a new backend over the
same register, as a restarted agent would see it. ``fail_next_extend`` makes
the next extension raise before it changes anything, to stand for a crash
between the log append and the register extension.

    backend = FakeTeeBackend()
    backend.fail_next_extend = True
    restarted = backend.reopen()   # same register, no pending failure
"""

from __future__ import annotations

from dataclasses import dataclass, field

from attestd.tee.backend import REPORT_DATA_SIZE, Attestation, Ccel, TeeDescription, TeeType
from attestd.tee.tdx import rtmr

REGISTER_SIZE = rtmr.RTMR_SIZE
QUOTE_PREFIX = b"FAKE-QUOTE:"


class FakeTeeError(RuntimeError):
    """The fake backend's stand-in for a failed ioctl."""


@dataclass
class FakeRegister:
    """RTMR3: starts at zero; changes only by extension (or a test's deliberate write)."""

    value: bytes = rtmr.INITIAL_VALUE
    extensions: list[bytes] = field(default_factory=list)

    def extend(self, digest: bytes) -> None:
        self.value = rtmr.extend(self.value, digest)
        self.extensions.append(digest)


class FakeTeeBackend:
    """Implements attestd.tee.backend.TeeBackend with an in-memory RTMR3."""

    def __init__(self, register: FakeRegister | None = None, *, has_register: bool = True) -> None:
        self.register = register if register is not None else FakeRegister()
        self.has_register = has_register
        self.fail_next_extend = False
        self.report_data: list[bytes] = []
        # What attest() ships beside the quote; a test sets them to stand for SNP or TDX.
        self.certificates: tuple[bytes, ...] = ()
        self.collateral: dict[str, object] | None = None
        self.ccel: Ccel | None = None

    def reopen(self) -> FakeTeeBackend:
        """A fresh backend over the same register, as after an agent restart."""
        return FakeTeeBackend(self.register, has_register=self.has_register)

    def describe(self) -> TeeDescription:
        return TeeDescription(
            tee=TeeType.TDX, simulated=True, root_of_trust="fake-root", backend="fake-tdx"
        )

    def get_quote(self, report_data: bytes) -> bytes:
        if len(report_data) != REPORT_DATA_SIZE:
            raise ValueError(f"report_data must be {REPORT_DATA_SIZE} bytes")
        self.report_data.append(report_data)
        return QUOTE_PREFIX + self.register.value + report_data

    def quoted_runtime_register(self, quote: bytes) -> bytes:
        """The register a fake quote carries (after its prefix), as a TDX quote carries RTMR3."""
        return quote[len(QUOTE_PREFIX) : len(QUOTE_PREFIX) + len(self.register.value)]

    def attest(self, report_data: bytes) -> Attestation:
        """The fake quote, with whatever certificates, collateral and CCEL the test set."""
        quote = self.get_quote(report_data)
        register = self.quoted_runtime_register(quote)
        return Attestation(quote, self.certificates, self.collateral, self.ccel, register)

    def extend_runtime_register(self, digest: bytes) -> None:
        if not self.has_register:
            raise FakeTeeError("this TEE has no runtime register (as SNP)")
        if len(digest) != REGISTER_SIZE:
            raise ValueError(f"an extension is a {REGISTER_SIZE}-byte digest")
        if self.fail_next_extend:
            self.fail_next_extend = False
            raise FakeTeeError("simulated failure extending RTMR3")
        self.register.extend(digest)

    def read_runtime_register(self) -> bytes | None:
        return self.register.value if self.has_register else None
