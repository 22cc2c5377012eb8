"""A simulated TDX backend: real quote v4 bytes, signed by a simulated Intel-like PKI.

    >>> from attestd.tee.tdx.simulated import SimulatedTdxBackend
    >>> backend = SimulatedTdxBackend.open(state_dir)       # PKI made once, then reloaded
    >>> backend.extend_runtime_register(hashlib.sha384(event).digest())
    >>> quote = backend.get_quote(report_data)               # 64 bytes in, quote v4 out
    >>> verify_quote(quote, VerifyOptions([backend.trust_root()], now))

Simulated TDX differs from hardware only in its root of trust: quotes have the
exact hardware layout and pass the same verifier, but chain to a root generated
in the state directory, never to Intel's.

The measurement registers live in ``registers.bin``, a fixed-size binary file
(:mod:`attestd.tee.tdx._simulated_registers`): created whole when the TD is
first opened, then only written in place, one 64-byte record per register with
one ``pwrite`` and no fsync, so an extension costs a few microseconds, about
what an RTMR extension costs. The page cache keeps them across an agent restart
or SIGKILL, as hardware keeps registers within a TD's life; like hardware
registers they need not survive power loss. Every opening (any thread, any
process) reads and writes the same file under the state directory's lock, so a
quote always sees every extension that has returned. A ``registers.json`` of
an older attestd is converted on open.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path

import dcap_qvl
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attestd.tee import _state
from attestd.tee import backend as tee_backend
from attestd.tee._simulated import SimulatedGuest
from attestd.tee.errors import DeviceError, InvalidArgumentError
from attestd.tee.tdx import _simulated_pki as pki
from attestd.tee.tdx import _simulated_registers as registers_file
from attestd.tee.tdx import rtmr
from attestd.tee.tdx.abi import (
    ATTESTATION_KEY_TYPE_ECDSA_P256,
    INTEL_QE_VENDOR_ID,
    QUOTE_VERSION_4,
    TEE_TYPE_TDX,
    EnclaveReport,
    QeReportCertificationData,
    Quote,
    QuoteHeader,
    QuoteSignatureData,
    TdReport10,
    signed_region,
)

STATE_SUBDIR = Path("tee") / "simulated-tdx"
REGISTERS_FILE = registers_file.REGISTERS_FILE
ROOT_OF_TRUST = "attestd-simulated-tdx-root"
BACKEND_NAME = "simulated-tdx"
_RUNTIME_LOG_REGISTER = f"rtmr{rtmr.RUNTIME_LOG_RTMR}"


def _label(text: str) -> bytes:
    return hashlib.sha384(text.encode()).digest()


# Every value a fresh simulated TD starts with, and its width. RTMR3 starts at
# zero because the runtime log replays from 48 zero bytes; the TD attributes
# have DEBUG off (SEPT_VE_DISABLE on, as production TDs run).
MEASUREMENT_DEFAULTS: Mapping[str, bytes] = {
    "mr_td": _label("attestd simulated TD"),
    "rtmr0": _label("attestd simulated TD firmware (RTMR0)"),
    "rtmr1": _label("attestd simulated TD OS loader and kernel (RTMR1)"),
    "rtmr2": _label("attestd simulated TD kernel command line and initrd (RTMR2)"),
    _RUNTIME_LOG_REGISTER: rtmr.INITIAL_VALUE,
    "mr_config_id": bytes(48),
    "mr_owner": bytes(48),
    "mr_owner_config": bytes(48),
    "td_attributes": bytes.fromhex("0000001000000000"),
    "xfam": bytes.fromhex("e702060000000000"),
    "tee_tcb_svn": pki.PLATFORM_TCB.tee_tcb_svn,
    "mr_seam": _label("attestd simulated TDX module"),
}

# What the simulated TDX module and quoting enclave always report. The QE
# identity is its own, so a simulated QE never matches Intel's QE identity.
_MR_SIGNER_SEAM = bytes(48)
_SEAM_ATTRIBUTES = bytes(8)
_QE_USER_DATA = hashlib.sha256(b"attestd simulated QE").digest()[:16] + bytes(4)
_QE_AUTH_DATA = bytes(range(32))
_QE_CPU_SVN = bytes.fromhex("0707ff1a03ff00050000000000000000")
_QE_MR_ENCLAVE = hashlib.sha256(b"attestd simulated quoting enclave").digest()
_QE = pki.SIMULATED_QE  # what the QE identity in the simulated collateral names


@dataclass(frozen=True)
class SimulatedTdMeasurements:
    """Measurements to impose on the simulated TD; ``None`` keeps what the state holds."""

    mr_td: bytes | None = None
    rtmr0: bytes | None = None
    rtmr1: bytes | None = None
    rtmr2: bytes | None = None
    mr_config_id: bytes | None = None
    mr_owner: bytes | None = None
    mr_owner_config: bytes | None = None
    td_attributes: bytes | None = None
    xfam: bytes | None = None
    tee_tcb_svn: bytes | None = None
    mr_seam: bytes | None = None

    def __post_init__(self) -> None:
        for name, value in self.given().items():
            size = len(MEASUREMENT_DEFAULTS[name])
            if not isinstance(value, bytes) or len(value) != size:
                raise InvalidArgumentError(f"simulated measurement {name} must be {size} bytes")

    def given(self) -> dict[str, bytes]:
        """The measurements that were set, by name."""
        values = ((f.name, getattr(self, f.name)) for f in fields(self))
        return {name: value for name, value in values if value is not None}


#: The measurements a configuration may impose, and each one's width in bytes.
MEASUREMENT_WIDTHS: Mapping[str, int] = {
    f.name: len(MEASUREMENT_DEFAULTS[f.name]) for f in fields(SimulatedTdMeasurements)
}

_raw_signature = pki.raw_signature


def _raw_public_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    """x||y, the uncompressed point without its 0x04 prefix."""
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return point[1:]


class SimulatedTdxBackend(SimulatedGuest):
    """The TeeBackend of a simulated TD; open it with :meth:`open`."""

    def __init__(self, directory: Path, platform: pki.SimulatedPki) -> None:
        super().__init__(directory, tee_backend.TeeType.TDX, ROOT_OF_TRUST, BACKEND_NAME)
        self._pki = platform
        self._attestation_key = _raw_public_key(platform.attestation_key)
        self._certification_data = self._quoting_enclave_proof()
        self._device = registers_file.RegisterDevice(directory)

    @classmethod
    def open(
        cls, state_dir: Path, measurements: SimulatedTdMeasurements | None = None
    ) -> SimulatedTdxBackend:
        """Open (creating on first use) the simulated TD kept under ``state_dir``."""
        directory = Path(state_dir) / STATE_SUBDIR
        _state.make_directory(directory, "simulated TDX state")
        with _state.locked(directory):
            if not pki.exists(directory):
                pki.save(pki.generate(), directory)
            platform = pki.load(directory)
            collateral = pki.load_collateral(directory)
            if collateral is None:
                platform = _issue_collateral(directory, platform)
            imposed = (measurements or SimulatedTdMeasurements()).given()
            registers_file.prepare(directory, MEASUREMENT_DEFAULTS, imposed)
        return cls(directory, platform)

    def get_quote(self, report_data: bytes) -> bytes:
        """A quote over the registers as they are now; the latency is spent after they are read."""
        return self._quote(report_data)[0]

    def _quote(self, report_data: bytes) -> tuple[bytes, bytes]:
        """The quote, and the runtime-log register it carries."""
        return self._on_device(self._quote_now, report_data)

    def _quote_now(self, report_data: bytes) -> tuple[bytes, bytes]:
        """A TDX quote v4 over the current registers with REPORTDATA = ``report_data``,
        and the runtime-log register's value in it (the quote's RTMR3)."""
        tee_backend.check_report_data(report_data)
        registers = self._device.read_all()
        header = QuoteHeader(
            version=QUOTE_VERSION_4,
            attestation_key_type=ATTESTATION_KEY_TYPE_ECDSA_P256,
            tee_type=TEE_TYPE_TDX,
            qe_svn=0,
            pce_svn=0,
            qe_vendor_id=INTEL_QE_VENDOR_ID,
            user_data=_QE_USER_DATA,
        )
        body = TdReport10(
            tee_tcb_svn=registers["tee_tcb_svn"],
            mr_seam=registers["mr_seam"],
            mr_signer_seam=_MR_SIGNER_SEAM,
            seam_attributes=_SEAM_ATTRIBUTES,
            td_attributes=registers["td_attributes"],
            xfam=registers["xfam"],
            mr_td=registers["mr_td"],
            mr_config_id=registers["mr_config_id"],
            mr_owner=registers["mr_owner"],
            mr_owner_config=registers["mr_owner_config"],
            rtmrs=(registers["rtmr0"], registers["rtmr1"], registers["rtmr2"], registers["rtmr3"]),
            report_data=report_data,
        )
        signature = _raw_signature(self._pki.attestation_key, signed_region(header, body))
        signature_data = QuoteSignatureData(
            signature, self._attestation_key, self._certification_data
        )
        return Quote(header, body, signature_data).to_bytes(), body.rtmrs[rtmr.RUNTIME_LOG_RTMR]

    def attest(self, report_data: bytes) -> tee_backend.Attestation:
        """A quote with this platform's DCAP collateral; a simulated TD has no CCEL of its own."""
        # The register is taken from the quote as it was built, not parsed back out of
        # its bytes (half of a simulated quote's cost): Quote.to_bytes writes the body's
        # RTMRs verbatim, and tests parse the quotes this backend makes against it.
        quote, runtime_register = self._quote(report_data)
        return tee_backend.Attestation(
            quote, collateral=self._collateral_object, runtime_register=runtime_register
        )

    @cached_property
    def _collateral_object(self) -> Mapping[str, object]:
        # Issued once per state directory, so read once per backend.
        document: dict[str, object] = json.loads(self.collateral_json())
        return document

    def extend_runtime_register(self, digest: bytes) -> None:
        """Extend the runtime-log register (:data:`rtmr.RUNTIME_LOG_RTMR`) by ``digest``."""
        self.extend_rtmr(rtmr.RUNTIME_LOG_RTMR, digest)

    def read_runtime_register(self) -> bytes:
        return self.rtmrs()[rtmr.RUNTIME_LOG_RTMR]

    def runtime_register_batch(self) -> AbstractContextManager[None]:
        """Extensions by this thread inside it are written once, at its end (a group commit)."""
        return self._device.batch()

    def extend_rtmr(self, index: int, digest: bytes) -> None:
        """RTMR[index] = SHA-384(RTMR[index] ‖ digest), saved before this returns."""
        if index not in range(rtmr.RTMR_COUNT):
            raise InvalidArgumentError(f"RTMR index must be 0..3, not {index!r}")
        if not isinstance(digest, bytes) or len(digest) != rtmr.RTMR_SIZE:
            raise InvalidArgumentError(
                f"an RTMR extension is a {rtmr.RTMR_SIZE}-byte SHA-384 digest"
            )
        # One pread and one pwrite of this register's record, no fsync: the page cache
        # outlives a SIGKILL of the agent as an RTMR outlives a process crash, and like
        # an RTMR it need not outlive power loss (see _simulated_registers).
        self._device.extend(f"rtmr{index}", digest)

    def rtmrs(self) -> tuple[bytes, bytes, bytes, bytes]:
        r = self._device.read_all()
        return r["rtmr0"], r["rtmr1"], r["rtmr2"], r["rtmr3"]

    def trust_root(self) -> x509.Certificate:
        """The simulated root CA that every quote of this backend chains to."""
        return self._pki.root_ca

    def trust_root_pem(self) -> bytes:
        return self._pki.root_ca.public_bytes(serialization.Encoding.PEM)

    def trust_root_der(self) -> bytes:
        """The simulated root in DER, as ``dcap_qvl.verify_with_root_ca`` takes it."""
        return self._pki.root_ca.public_bytes(serialization.Encoding.DER)

    def collateral_json(self) -> str:
        """This platform's DCAP collateral in dcap-qvl's ``QuoteCollateralV3`` JSON."""
        with _state.locked(self._dir):
            collateral = pki.load_collateral(self._dir)
        if collateral is None:
            raise DeviceError(f"simulated TDX collateral vanished from {self._dir}")
        return json.dumps(collateral)

    def collateral(self) -> dcap_qvl.QuoteCollateralV3:
        """This platform's DCAP collateral, ready for ``dcap_qvl.verify_with_root_ca``.

        TCB info and QE identity list this platform's TCB and quoting enclave as
        UpToDate until 2049; the CRLs are empty. Issued once per state directory.
        """
        return dcap_qvl.QuoteCollateralV3.from_json(self.collateral_json())

    def _quoting_enclave_proof(self) -> QeReportCertificationData:
        """The QE report binding the attestation key, signed by the PCK key; fixed per platform."""
        binding = hashlib.sha256(self._attestation_key + _QE_AUTH_DATA).digest() + bytes(32)
        qe_report = EnclaveReport(
            cpu_svn=_QE_CPU_SVN,
            misc_select=_QE.misc_select,
            reserved1=bytes(28),
            attributes=_QE.attributes,
            mr_enclave=_QE_MR_ENCLAVE,
            reserved2=bytes(32),
            mr_signer=_QE.mr_signer,
            reserved3=bytes(96),
            isv_prod_id=_QE.isv_prod_id,
            isv_svn=_QE.isv_svn,
            reserved4=bytes(60),
            report_data=binding,
        )
        return QeReportCertificationData(
            qe_report=qe_report,
            qe_report_signature=_raw_signature(self._pki.pck_key, qe_report.to_bytes()),
            qe_auth_data=_QE_AUTH_DATA,
            pck_chain_pem=self._pki.chain_pem(),
        )


def _issue_collateral(directory: Path, platform: pki.SimulatedPki) -> pki.SimulatedPki:
    """Issue and save the collateral (first use, or a state made before collateral existed).

    Older states have a PCK leaf without Intel's SGX extension: it is re-issued
    with the same key first, so quotes and collateral agree.
    """
    upgraded = pki.with_sgx_extension(platform)
    if upgraded is not platform:
        pki.save_certificate(upgraded.pck, directory / "pck.pem")
    collateral = pki.issue_collateral(
        upgraded, issue_date=pki.NOT_VALID_BEFORE, next_update=pki.NOT_VALID_AFTER
    )
    pki.save_collateral(collateral, directory)
    return upgraded
