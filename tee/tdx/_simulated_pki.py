"""The simulated Intel PKI: root CA, platform CA, PCK leaf, the QE attestation key, and collateral.

Shaped like Intel's (P-256 everywhere, a three-certificate PCK chain, a PCK
leaf carrying Intel's SGX extension, TCB info and QE identity signed by a TCB
signing certificate, CRLs from the root and the platform CA) so that the same
verifier code, dcap-qvl's included, runs over it; but every name says NOT
INTEL and the root is generated per state directory, so nothing it signs
chains to Intel. Keys are stored as unencrypted PKCS#8 PEM, 0600, in a 0700
directory: the simulator protects nothing a real TEE would, and says so.

The collateral is issued once, next to the keys, in dcap-qvl's
``QuoteCollateralV3`` JSON (``collateral.json``); the TCB signing key signs it
and is then dropped, since nothing needs to sign with it again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat import asn1
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from attestd.tee._certs import Profile, issue, name
from attestd.tee._state import load_ec_private_key, private_key_pem, write_atomic
from attestd.tee.errors import DeviceError

ROOT_CA_NAME = "attestd Simulated TDX Root CA \u2014 NOT INTEL"
PLATFORM_CA_NAME = "attestd Simulated TDX PCK Platform CA \u2014 NOT INTEL"
PCK_NAME = "attestd Simulated TDX PCK Certificate \u2014 NOT INTEL"
TCB_SIGNING_NAME = "attestd Simulated TDX TCB Signing \u2014 NOT INTEL"
ORGANIZATION = "attestd (simulated)"

# A fixed window, like Intel's long-lived root, so that one `now` serves both
# simulated and recorded real quotes in tests.
NOT_VALID_BEFORE = datetime(2024, 1, 1, tzinfo=UTC)
NOT_VALID_AFTER = datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC)

_CERT_STEMS = ("root_ca", "platform_ca", "pck")
_ATTESTATION_KEY_FILE = "attestation_key.pem"
COLLATERAL_FILE = "collateral.json"

#: Intel's SGX extension in a PCK certificate, and its members (Intel's "SGX PCK
#: Certificate and CRL Profile"): PPID, TCB (16 component SVNs, PCESVN, CPUSVN),
#: PCE-ID, FMSPC, SGX type, and for platform CA leaves the platform instance ID
#: and configuration.
SGX_EXTENSION_OID = "1.2.840.113741.1.13.1"
_SGX_TYPE_SCALABLE = 1


@dataclass(frozen=True)
class PlatformTcb:
    """The TCB the simulated platform reports: in its PCK certificate and in its quotes."""

    fmspc: bytes  # 6 bytes: family, model, stepping, platform type, custom SKU
    pce_id: bytes  # 2 bytes
    cpu_svn: bytes  # 16 SGX TCB component SVNs, one byte each
    pce_svn: int
    tee_tcb_svn: bytes  # 16 TDX TCB component SVNs, as the TD report's TEE_TCB_SVN
    ppid: bytes  # 16 bytes
    platform_instance_id: bytes  # 16 bytes


#: The simulated platform. The FMSPC is made up, so it never names a real Intel part.
PLATFORM_TCB = PlatformTcb(
    fmspc=bytes.fromhex("A77E5D000000"),
    pce_id=bytes(2),
    cpu_svn=bytes.fromhex("03030202040100050000000000000000"),
    pce_svn=11,
    tee_tcb_svn=bytes.fromhex("04010700000000000000000000000000"),
    ppid=hashlib.sha256(b"attestd simulated PPID").digest()[:16],
    platform_instance_id=hashlib.sha256(b"attestd simulated platform").digest()[:16],
)


@dataclass(frozen=True)
class QuotingEnclave:
    """What the simulated quoting enclave reports, and so what its QE identity names."""

    mr_signer: bytes  # 32 bytes
    isv_prod_id: int
    isv_svn: int
    attributes: bytes  # 16 bytes
    misc_select: int


SIMULATED_QE = QuotingEnclave(
    mr_signer=hashlib.sha256(b"attestd simulated quoting enclave signer").digest(),
    isv_prod_id=2,
    isv_svn=6,
    attributes=bytes.fromhex("1500000000000000e700000000000000"),
    misc_select=0,
)
# Intel's TD_QE identity masks: every attribute but bit 2 (MODE64BIT) of the flags.
_QE_ATTRIBUTES_MASK = bytes.fromhex("FBFFFFFFFFFFFFFF0000000000000000")


@dataclass(frozen=True)
class SimulatedPki:
    """The keys and certificates of one simulated platform."""

    root_ca_key: ec.EllipticCurvePrivateKey
    root_ca: x509.Certificate
    platform_ca_key: ec.EllipticCurvePrivateKey
    platform_ca: x509.Certificate
    pck_key: ec.EllipticCurvePrivateKey
    pck: x509.Certificate
    attestation_key: ec.EllipticCurvePrivateKey

    def chain_pem(self) -> bytes:
        """PCK chain as quoted: leaf, platform CA, root."""
        return b"".join(
            c.public_bytes(serialization.Encoding.PEM)
            for c in (self.pck, self.platform_ca, self.root_ca)
        )


#: Intel's shape: SHA-256, key usage on leaves too, and key identifiers everywhere.
_INTEL = Profile(leaf_key_usage=True, key_identifiers=True)


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    path_length: int | None,
    is_ca: bool,
    *,
    extra_extensions: Sequence[x509.ExtensionType] = (),
) -> x509.Certificate:
    return issue(
        _INTEL,
        name(subject, ORGANIZATION),
        key.public_key(),
        issuer,
        issuer_key,
        valid=(NOT_VALID_BEFORE, NOT_VALID_AFTER),
        ca=is_ca,
        path_length=path_length,
        extensions=extra_extensions,
    )


def generate() -> SimulatedPki:
    """A fresh simulated platform: root → platform CA → PCK leaf, plus an attestation key."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _certificate(ROOT_CA_NAME, root_key, None, root_key, path_length=1, is_ca=True)
    platform_key = ec.generate_private_key(ec.SECP256R1())
    platform = _certificate(PLATFORM_CA_NAME, platform_key, root, root_key, 0, is_ca=True)
    pck_key = ec.generate_private_key(ec.SECP256R1())
    pck = _pck_certificate(pck_key, platform, platform_key)
    attestation_key = ec.generate_private_key(ec.SECP256R1())
    return SimulatedPki(root_key, root, platform_key, platform, pck_key, pck, attestation_key)


def _pck_certificate(
    pck_key: ec.EllipticCurvePrivateKey,
    platform: x509.Certificate,
    platform_key: ec.EllipticCurvePrivateKey,
    tcb: PlatformTcb = PLATFORM_TCB,
) -> x509.Certificate:
    extension = x509.UnrecognizedExtension(
        x509.ObjectIdentifier(SGX_EXTENSION_OID), sgx_extension_der(tcb)
    )
    return _certificate(
        PCK_NAME, pck_key, platform, platform_key, None, is_ca=False, extra_extensions=[extension]
    )


def has_sgx_extension(cert: x509.Certificate) -> bool:
    oid = x509.ObjectIdentifier(SGX_EXTENSION_OID)
    return any(e.oid == oid for e in cert.extensions)


def with_sgx_extension(pki: SimulatedPki) -> SimulatedPki:
    """The same platform, its PCK re-issued (same key) with the SGX extension where it lacks one.

    State directories made before the simulator issued collateral have a bare PCK leaf.
    """
    if has_sgx_extension(pki.pck):
        return pki
    pck = _pck_certificate(pki.pck_key, pki.platform_ca, pki.platform_ca_key)
    return SimulatedPki(
        pki.root_ca_key,
        pki.root_ca,
        pki.platform_ca_key,
        pki.platform_ca,
        pki.pck_key,
        pck,
        pki.attestation_key,
    )


# --- Intel's SGX extension, in cryptography's declarative ASN.1 ----------------------------


def _oid(suffix: str) -> x509.ObjectIdentifier:
    return x509.ObjectIdentifier(f"{SGX_EXTENSION_OID}.{suffix}")


@asn1.sequence
class _Octets:
    oid: x509.ObjectIdentifier
    value: bytes


@asn1.sequence
class _TcbComponent:
    oid: x509.ObjectIdentifier
    value: int | bytes  # a component SVN or PCESVN (INTEGER), the CPUSVN (OCTET STRING)


@asn1.sequence
class _Tcb:
    oid: x509.ObjectIdentifier
    value: list[_TcbComponent]


@asn1.sequence
class _Enumerated:
    oid: x509.ObjectIdentifier
    value: asn1.TLV


@asn1.sequence
class _Flag:
    oid: x509.ObjectIdentifier
    value: bool


@asn1.sequence
class _Configuration:
    oid: x509.ObjectIdentifier
    value: list[_Flag]


@asn1.sequence
class _SgxExtension:
    """SEQUENCE OF (OID, value), member by member as in Intel's PCK certificates."""

    ppid: _Octets
    tcb: _Tcb
    pce_id: _Octets
    fmspc: _Octets
    sgx_type: _Enumerated
    platform_instance_id: _Octets
    configuration: _Configuration


def _enumerated(value: int) -> asn1.TLV:
    """A DER ENUMERATED 0..127, the only value built by hand here.

    cryptography's declarative ASN.1 has no ENUMERATED type (tag 10); the three
    bytes are parsed back as a TLV so the encoder places them, length and all.
    """
    if not 0 <= value < 0x80:
        raise ValueError("ENUMERATED value out of range")
    tlv: asn1.TLV = asn1.decode_der(asn1.TLV, bytes((0x0A, 1, value)))
    return tlv


def sgx_extension_der(tcb: PlatformTcb) -> bytes:
    """The SGX extension's value, member by member as in Intel's PCK certificates."""
    components = [
        _TcbComponent(oid=_oid(f"2.{i + 1}"), value=svn) for i, svn in enumerate(tcb.cpu_svn)
    ]
    components.append(_TcbComponent(oid=_oid("2.17"), value=tcb.pce_svn))
    components.append(_TcbComponent(oid=_oid("2.18"), value=tcb.cpu_svn))
    # Dynamic platform, cached keys, SMT enabled.
    flags = [_Flag(oid=_oid(f"7.{i}"), value=True) for i in (1, 2, 3)]
    extension = _SgxExtension(
        ppid=_Octets(oid=_oid("1"), value=tcb.ppid),
        tcb=_Tcb(oid=_oid("2"), value=components),
        pce_id=_Octets(oid=_oid("3"), value=tcb.pce_id),
        fmspc=_Octets(oid=_oid("4"), value=tcb.fmspc),
        sgx_type=_Enumerated(oid=_oid("5"), value=_enumerated(_SGX_TYPE_SCALABLE)),
        platform_instance_id=_Octets(oid=_oid("6"), value=tcb.platform_instance_id),
        configuration=_Configuration(oid=_oid("7"), value=flags),
    )
    der: bytes = asn1.encode_der(extension)
    return der


def save(pki: SimulatedPki, directory: Path) -> None:
    """Write every key (0600) and certificate; the caller makes ``directory`` 0700."""
    pairs = {
        "root_ca": (pki.root_ca_key, pki.root_ca),
        "platform_ca": (pki.platform_ca_key, pki.platform_ca),
        "pck": (pki.pck_key, pki.pck),
    }
    for stem, (key, cert) in pairs.items():
        write_atomic(directory / f"{stem}.key.pem", private_key_pem(key), 0o600)
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        write_atomic(directory / f"{stem}.pem", cert_pem, 0o644)
    # Written last: its presence is what `exists` tests, so a crash mid-way regenerates all.
    write_atomic(directory / _ATTESTATION_KEY_FILE, private_key_pem(pki.attestation_key), 0o600)


def save_certificate(cert: x509.Certificate, path: Path) -> None:
    write_atomic(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def exists(directory: Path) -> bool:
    return (directory / _ATTESTATION_KEY_FILE).exists()


def load(directory: Path) -> SimulatedPki:
    """Read what :func:`save` wrote; a missing or damaged file is a DeviceError."""
    try:
        keys = {stem: load_ec_private_key(directory / f"{stem}.key.pem") for stem in _CERT_STEMS}
        certs = {
            stem: x509.load_pem_x509_certificate((directory / f"{stem}.pem").read_bytes())
            for stem in _CERT_STEMS
        }
        attestation_key = load_ec_private_key(directory / _ATTESTATION_KEY_FILE)
    except (OSError, ValueError, TypeError) as e:
        raise DeviceError(f"simulated TDX PKI in {directory} is unreadable: {e}") from e
    return SimulatedPki(
        keys["root_ca"],
        certs["root_ca"],
        keys["platform_ca"],
        certs["platform_ca"],
        keys["pck"],
        certs["pck"],
        attestation_key,
    )


# --- collateral --------------------------------------------------------------------------


def issue_collateral(
    pki: SimulatedPki,
    *,
    issue_date: datetime,
    next_update: datetime,
    tcb: PlatformTcb = PLATFORM_TCB,
    qe: QuotingEnclave = SIMULATED_QE,
    tcb_status: str = "UpToDate",
) -> dict[str, str]:
    """DCAP collateral for ``pki``'s platform, in dcap-qvl's ``QuoteCollateralV3`` JSON shape.

    Like Intel's: TCB info (v3, id TDX) and QE identity (v2, id TD_QE) as compact
    JSON, each signed (raw r||s, hex) by a fresh TCB signing certificate under the
    root; the root CA CRL and the PCK (platform CA) CRL as hex DER; issuer chains
    as PEM. The platform's own TCB has ``tcb_status``; anything lower is OutOfDate.
    """
    signing_key = ec.generate_private_key(ec.SECP256R1())
    signing = _certificate(
        TCB_SIGNING_NAME, signing_key, pki.root_ca, pki.root_ca_key, None, is_ca=False
    )
    tcb_info = _compact_json(_tcb_info(tcb, issue_date, next_update, tcb_status))
    qe_identity = _compact_json(_qe_identity(qe, issue_date, next_update))
    signing_chain = _pem(signing, pki.root_ca)
    return {
        "pck_crl_issuer_chain": _pem(pki.platform_ca, pki.root_ca),
        "root_ca_crl": _crl(pki.root_ca, pki.root_ca_key, issue_date, next_update).hex(),
        "pck_crl": _crl(pki.platform_ca, pki.platform_ca_key, issue_date, next_update).hex(),
        "tcb_info_issuer_chain": signing_chain,
        "tcb_info": tcb_info,
        "tcb_info_signature": raw_signature(signing_key, tcb_info.encode()).hex(),
        "qe_identity_issuer_chain": signing_chain,
        "qe_identity": qe_identity,
        "qe_identity_signature": raw_signature(signing_key, qe_identity.encode()).hex(),
    }


def raw_signature(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA-P256-SHA256 as Intel's formats carry it: r||s, 32 bytes each, big-endian."""
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _compact_json(document: Mapping[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"))


def _svns(values: bytes) -> list[dict[str, int]]:
    return [{"svn": v} for v in values]


def _tcb_info(
    tcb: PlatformTcb, issue_date: datetime, next_update: datetime, status: str
) -> dict[str, Any]:
    issued = _timestamp(issue_date)
    zero_signer = bytes(48).hex().upper()
    module = {"mrsigner": zero_signer, "attributes": "0000000000000000"}
    return {
        "id": "TDX",
        "version": 3,
        "issueDate": issued,
        "nextUpdate": _timestamp(next_update),
        "fmspc": tcb.fmspc.hex().upper(),
        "pceId": tcb.pce_id.hex().upper(),
        "tcbType": 0,
        "tcbEvaluationDataNumber": 1,
        "tdxModule": {**module, "attributesMask": "FFFFFFFFFFFFFFFF"},
        "tdxModuleIdentities": [
            {
                # TEE_TCB_SVN[1] is the TDX module's major version, [0] its SVN.
                "id": f"TDX_{tcb.tee_tcb_svn[1]:02X}",
                **module,
                "attributesMask": "FFFFFFFFFFFFFFFF",
                "tcbLevels": [
                    {
                        "tcb": {"isvsvn": tcb.tee_tcb_svn[0]},
                        "tcbDate": issued,
                        "tcbStatus": "UpToDate",
                    }
                ],
            }
        ],
        "tcbLevels": [
            {
                "tcb": {
                    "sgxtcbcomponents": _svns(tcb.cpu_svn),
                    "pcesvn": tcb.pce_svn,
                    "tdxtcbcomponents": _svns(tcb.tee_tcb_svn),
                },
                "tcbDate": issued,
                "tcbStatus": status,
            },
            {
                "tcb": {
                    "sgxtcbcomponents": _svns(bytes(16)),
                    "pcesvn": 0,
                    "tdxtcbcomponents": _svns(bytes(16)),
                },
                "tcbDate": "2018-01-04T00:00:00Z",
                "tcbStatus": "OutOfDate",
                "advisoryIDs": ["ATTESTD-SIMULATED-SA-0001"],
            },
        ],
    }


def _qe_identity(qe: QuotingEnclave, issue_date: datetime, next_update: datetime) -> dict[str, Any]:
    issued = _timestamp(issue_date)
    return {
        "id": "TD_QE",
        "version": 2,
        "issueDate": issued,
        "nextUpdate": _timestamp(next_update),
        "tcbEvaluationDataNumber": 1,
        "miscselect": qe.misc_select.to_bytes(4, "big").hex().upper(),
        "miscselectMask": "FFFFFFFF",
        "attributes": bytes(a & m for a, m in zip(qe.attributes, _QE_ATTRIBUTES_MASK, strict=True))
        .hex()
        .upper(),
        "attributesMask": _QE_ATTRIBUTES_MASK.hex().upper(),
        "mrsigner": qe.mr_signer.hex().upper(),
        "isvprodid": qe.isv_prod_id,
        "tcbLevels": [{"tcb": {"isvsvn": qe.isv_svn}, "tcbDate": issued, "tcbStatus": "UpToDate"}],
    }


def _crl(
    issuer: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    issue_date: datetime,
    next_update: datetime,
) -> bytes:
    """An empty CRL from ``issuer``, DER, valid from ``issue_date`` to ``next_update``."""
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(issue_date)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())
    )
    return crl.public_bytes(serialization.Encoding.DER)


def _pem(*certs: x509.Certificate) -> str:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs).decode()


def save_collateral(collateral: Mapping[str, str], directory: Path) -> None:
    data = (json.dumps(dict(collateral), indent=2) + "\n").encode()
    write_atomic(directory / COLLATERAL_FILE, data, 0o644)


def load_collateral(directory: Path) -> dict[str, str] | None:
    """What :func:`save_collateral` wrote, or None before it ran; damage is a DeviceError."""
    path = directory / COLLATERAL_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise DeviceError(f"simulated TDX collateral in {path} is unreadable: {e}") from e
    if not isinstance(document, dict) or not all(
        isinstance(document.get(k), str) for k in COLLATERAL_KEYS
    ):
        raise DeviceError(f"simulated TDX collateral in {path} is damaged")
    return {k: document[k] for k in COLLATERAL_KEYS}


COLLATERAL_KEYS = (
    "pck_crl_issuer_chain",
    "root_ca_crl",
    "pck_crl",
    "tcb_info_issuer_chain",
    "tcb_info",
    "tcb_info_signature",
    "qe_identity_issuer_chain",
    "qe_identity",
    "qe_identity_signature",
)
