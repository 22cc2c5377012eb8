"""A simulated SEV-SNP guest: real 1184-byte reports, signed by a simulated AMD PKI.

    >>> from attestd.tee.snp.simulated import SimulatedSnpBackend
    >>> backend = SimulatedSnpBackend.open(state_dir)        # PKI made once (slow), then reloaded
    >>> report, table = backend.get_report_with_certificates(report_data)
    >>> certs = parse_cert_table(table)
    >>> verify_report(report, vcek=load_certificate(certs["vcek"]),
    ...               ask=load_certificate(certs["ask"]), ark=load_certificate(certs["ark"]),
    ...               options=VerifyOptions(now, trusted_arks=[backend.trust_root()]))

Simulated SNP differs from hardware only in its root of trust: reports have
the exact hardware layout (version 3, so the CPUID fields name the product,
Milan) and pass the same verifier, but chain to an ARK generated in the state
directory, never to AMD's. The launch values (measurement, host data, policy,
...) live in ``launch.json``, so they survive an agent restart as a VM's launch
measurement survives one. SEV-SNP has no runtime measurement register: the
runtime log's head is bound through report_data instead.

Like a cloud host, the simulated one can sign with a VLEK instead of the VCEK
(``SimulatedSnpMeasurements(signing_key="vlek")``, ``[tee.simulated]
signing_key = "vlek"`` in the agent's configuration): the report's SIGNING_KEY
then says VLEK, and the certificate table carries the VLEK and the simulated
ASVK (in the ASK's slot, as hosts do) with the ARK. Which key signs is the
host's choice at every start, not a launch value, so it is not kept in the state.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from attestd.tee import _state
from attestd.tee import backend as tee_backend
from attestd.tee._simulated import SimulatedGuest
from attestd.tee.errors import DeviceError, InvalidArgumentError, TeeUnavailableError
from attestd.tee.snp import _simulated_pki as pki
from attestd.tee.snp.abi import (
    POLICY_RESERVED_ONE,
    SIGNATURE_ALGO_ECDSA_P384_SHA384,
    SIGNING_KEY_VCEK,
    SIGNING_KEY_VLEK,
    AttestationReport,
    CertChain,
    CertKind,
    build_cert_table,
    encode_signature,
)

STATE_SUBDIR = Path("tee") / "simulated-snp"
LAUNCH_FILE = "launch.json"
ROOT_OF_TRUST = "attestd-simulated-amd-ark"
BACKEND_NAME = "simulated-snp"
REPORT_VERSION = 3
_STATE_FORMAT = "attestd-simulated-snp-launch/1"
_POLICY_KNOWN = (1 << 26) - 1

# Every launch value a fresh simulated guest starts with. The policy allows SMT
# (bit 16) with the must-be-one bit 17, and has debug and migration off.
MEASUREMENT_DEFAULTS: Mapping[str, bytes | int] = {
    "measurement": hashlib.sha384(b"attestd simulated SEV-SNP guest").digest(),
    "host_data": bytes(32),
    "family_id": bytes(16),
    "image_id": bytes(16),
    "id_key_digest": bytes(48),
    "author_key_digest": bytes(48),
    "policy": 0x30000,
    "guest_svn": 0,
}

_LAUNCH = frozenset(MEASUREMENT_DEFAULTS)

# What the simulated firmware always reports: Milan (family 19h, model 01h,
# stepping 1), firmware 1.55.21, SMT enabled, no migration agent.
_CPUID = (0x19, 0x01, 0x01)
_FIRMWARE = (1, 55, 21)  # major, minor, build
_PLATFORM_INFO = 0x1
_REPORT_ID_MA = b"\xff" * 32

#: The keys the simulated host can sign with, by name, as the report's SIGNING_KEY values.
SIGNING_KEYS: Mapping[str, int] = {"vcek": SIGNING_KEY_VCEK, "vlek": SIGNING_KEY_VLEK}


@dataclass(frozen=True)
class SimulatedSnpMeasurements:
    """Launch values to impose on the simulated guest; ``None`` keeps what the state holds.

    ``signing_key`` is no launch value: it is the key the host signs with this
    time, ``"vcek"`` (the default, also for None) or ``"vlek"``, and is not kept.
    """

    measurement: bytes | None = None
    host_data: bytes | None = None
    family_id: bytes | None = None
    image_id: bytes | None = None
    id_key_digest: bytes | None = None
    author_key_digest: bytes | None = None
    policy: int | None = None
    guest_svn: int | None = None
    signing_key: str | None = None

    def __post_init__(self) -> None:
        if self.signing_key is not None and self.signing_key not in SIGNING_KEYS:
            raise InvalidArgumentError(
                f"signing_key must be one of {', '.join(SIGNING_KEYS)}, not {self.signing_key!r}"
            )
        for name, value in self.given().items():
            default = MEASUREMENT_DEFAULTS[name]
            if isinstance(default, bytes):
                if not isinstance(value, bytes) or len(value) != len(default):
                    raise InvalidArgumentError(
                        f"simulated launch value {name} must be {len(default)} bytes"
                    )
            elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidArgumentError(f"simulated launch value {name} must be an int >= 0")
        if self.guest_svn is not None and self.guest_svn >= 1 << 32:
            raise InvalidArgumentError("guest_svn must fit in 32 bits")
        if self.policy is not None and (
            not self.policy & POLICY_RESERVED_ONE or self.policy & ~_POLICY_KNOWN
        ):
            raise InvalidArgumentError(
                f"policy {self.policy:#x} must set bit 17 and no bit above 25"
            )

    def given(self) -> dict[str, bytes | int]:
        """The launch values that were set, by name (``signing_key`` is none)."""
        values = ((f.name, getattr(self, f.name)) for f in fields(self) if f.name in _LAUNCH)
        return {name: value for name, value in values if value is not None}


#: The launch values a configuration may impose: each one's width in bytes, None for integers.
MEASUREMENT_WIDTHS: Mapping[str, int | None] = {
    name: len(default) if isinstance(default, bytes) else None
    for name, default in MEASUREMENT_DEFAULTS.items()
}


class SimulatedSnpBackend(SimulatedGuest):
    """The TeeBackend of a simulated SEV-SNP guest; open it with :meth:`open`."""

    def __init__(
        self,
        directory: Path,
        platform: pki.SimulatedPki,
        launch: Mapping[str, bytes | int],
        signing_key: str = "vcek",
    ) -> None:
        super().__init__(directory, tee_backend.TeeType.SEV_SNP, ROOT_OF_TRUST, BACKEND_NAME)
        self._pki = platform
        self._launch = dict(launch)
        self._chip_id = platform.chip_id
        self._signing_key = SIGNING_KEYS[signing_key]
        if self._signing_key == SIGNING_KEY_VLEK:
            if platform.vlek is None:
                raise InvalidArgumentError("signing with a VLEK needs a platform with one")
            self._key = platform.vlek.vlek_key
            # Hosts put the ASVK in the ASK's slot: the GHCB table has no GUID of its own for it.
            table: dict[str, bytes] = {
                CertKind.VLEK: _der(platform.vlek.vlek),
                CertKind.ASK: _der(platform.vlek.asvk),
                CertKind.ARK: _der(platform.ark),
            }
        else:
            self._key = platform.vcek_key
            table = {
                CertKind.VCEK: _der(platform.vcek),
                CertKind.ASK: _der(platform.ask),
                CertKind.ARK: _der(platform.ark),
            }
        self._table = build_cert_table(table)

    @classmethod
    def open(
        cls, state_dir: Path, measurements: SimulatedSnpMeasurements | None = None
    ) -> SimulatedSnpBackend:
        """Open (creating on first use) the simulated guest kept under ``state_dir``.

        ``measurements.signing_key = "vlek"`` makes the platform's VLEK half on
        first use (one more RSA-4096 key) and signs with it.
        """
        imposed = measurements or SimulatedSnpMeasurements()
        signing_key = imposed.signing_key or "vcek"
        directory = Path(state_dir) / STATE_SUBDIR
        _state.make_directory(directory, "simulated SEV-SNP state")
        with _state.locked(directory):
            if not pki.exists(directory):
                pki.save(pki.generate(), directory)
            platform = pki.load(directory)
            if signing_key == "vlek" and platform.vlek is None:
                platform = pki.with_vlek(platform)
                assert platform.vlek is not None
                pki.save_vlek(platform.vlek, directory)
            launch = _load_launch(directory) or _fresh_launch()
            launch.update(imposed.given())
            _save_launch(directory, launch)
        return cls(directory, platform, launch, signing_key)

    def get_quote(self, report_data: bytes) -> bytes:
        """A quote over the registers as they are now; the latency is spent after they are read."""
        return self._on_device(self._quote_now, report_data)

    def _quote_now(self, report_data: bytes) -> bytes:
        """A version 3 attestation report with REPORT_DATA = ``report_data``."""
        tee_backend.check_report_data(report_data)
        tcb = pki.TCB.encode(pki.PRODUCT)
        launch = self._launch
        major, minor, build = _FIRMWARE
        unsigned = AttestationReport(
            version=REPORT_VERSION,
            guest_svn=_int(launch["guest_svn"]),
            policy=_int(launch["policy"]),
            family_id=_bytes(launch["family_id"]),
            image_id=_bytes(launch["image_id"]),
            vmpl=0,
            signature_algo=SIGNATURE_ALGO_ECDSA_P384_SHA384,
            current_tcb=tcb,
            platform_info=_PLATFORM_INFO,
            # SIGNING_KEY (bits 2..4) names the VCEK or VLEK; chip key not masked, no author key.
            signer_info=self._signing_key << 2,
            report_data=report_data,
            measurement=_bytes(launch["measurement"]),
            host_data=_bytes(launch["host_data"]),
            id_key_digest=_bytes(launch["id_key_digest"]),
            author_key_digest=_bytes(launch["author_key_digest"]),
            report_id=_bytes(launch["report_id"]),
            report_id_ma=_REPORT_ID_MA,
            reported_tcb=tcb,
            cpuid_fam_id=_CPUID[0],
            cpuid_mod_id=_CPUID[1],
            cpuid_step=_CPUID[2],
            chip_id=self._chip_id,
            committed_tcb=tcb,
            current_build=build,
            current_minor=minor,
            current_major=major,
            committed_build=build,
            committed_minor=minor,
            committed_major=major,
            launch_tcb=tcb,
            launch_mit_vector=0,
            current_mit_vector=0,
            signature=bytes(512),
        )
        der = self._key.sign(unsigned.signed_region, ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(der)
        return unsigned.with_signature(encode_signature(r, s)).to_bytes()

    def get_report_with_certificates(self, report_data: bytes) -> tuple[bytes, bytes]:
        """The report and the GHCB certificate table (VCEK, ASK, ARK; or VLEK, ASVK, ARK),
        as configfs-tsm gives."""
        return self.get_quote(report_data), self._table

    def attest(self, report_data: bytes) -> tee_backend.Attestation:
        """The report and its certificate chain (VCEK, ASK, ARK or VLEK, ASVK, ARK), leaf first."""
        report, table = self.get_report_with_certificates(report_data)
        return tee_backend.Attestation(report, CertChain.from_raw_table(table).ordered())

    def certificate_table(self) -> bytes:
        return self._table

    def extend_runtime_register(self, digest: bytes) -> None:
        """Always refuses: SEV-SNP has no runtime measurement register."""
        raise TeeUnavailableError(
            "SEV-SNP has no runtime measurement register to extend; "
            "the runtime log's head is bound through report_data"
        )

    def read_runtime_register(self) -> bytes | None:
        """None: the runtime log's head travels in report_data, not in a register."""
        return None

    def trust_root(self) -> x509.Certificate:
        """The simulated ARK that every report of this backend chains to."""
        return self._pki.ark

    def trust_root_pem(self) -> bytes:
        return self._pki.ark.public_bytes(serialization.Encoding.PEM)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _int(value: bytes | int) -> int:
    assert isinstance(value, int)
    return value


def _bytes(value: bytes | int) -> bytes:
    assert isinstance(value, bytes)
    return value


def _fresh_launch() -> dict[str, bytes | int]:
    # REPORT_ID is the guest's own random identity, made once per guest.
    return {**MEASUREMENT_DEFAULTS, "report_id": secrets.token_bytes(32)}


def _load_launch(directory: Path) -> dict[str, bytes | int] | None:
    """The saved launch values, or None before the first save; damage is a DeviceError."""
    path = directory / LAUNCH_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise DeviceError(f"simulated SEV-SNP launch state in {path} is unreadable: {e}") from e
    try:
        if document["format"] != _STATE_FORMAT:
            raise ValueError(f"unknown format {document['format']!r}")
        saved = document["launch"]
        report_id = bytes.fromhex(saved["report_id"])
        if len(report_id) != 32:
            raise ValueError("report_id is not 32 bytes")
        values: dict[str, bytes | int] = {"report_id": report_id}
        given: dict[str, bytes | int] = {}
        for name, default in MEASUREMENT_DEFAULTS.items():
            given[name] = bytes.fromhex(saved[name]) if isinstance(default, bytes) else saved[name]
        values.update(SimulatedSnpMeasurements(**given).given())  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError, InvalidArgumentError) as e:
        raise DeviceError(f"simulated SEV-SNP launch state in {path} is damaged: {e}") from e
    return values


def _save_launch(directory: Path, launch: Mapping[str, bytes | int]) -> None:
    document = {
        "format": _STATE_FORMAT,
        "launch": {
            name: value.hex() if isinstance(value, bytes) else value
            for name, value in launch.items()
        },
    }
    data = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
    _state.write_atomic(directory / LAUNCH_FILE, data, 0o600)
