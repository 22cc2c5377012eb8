"""The simulated Intel PKI: root CA, platform CA, PCK leaf, and the QE attestation key.

Shaped like Intel's (P-256 everywhere, a three-certificate PCK chain) so that
the same verifier code runs over it, but every name says NOT INTEL and the
root is generated per state directory, so nothing it signs chains to Intel.
Keys are stored as unencrypted PKCS#8 PEM, 0600, in a 0700 directory: the
simulator protects nothing a real TEE would, and says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from attestd.tee.errors import DeviceError

ROOT_CA_NAME = "attestd Simulated TDX Root CA \u2014 NOT INTEL"
PLATFORM_CA_NAME = "attestd Simulated TDX PCK Platform CA \u2014 NOT INTEL"
PCK_NAME = "attestd Simulated TDX PCK Certificate \u2014 NOT INTEL"
ORGANIZATION = "attestd (simulated)"

# A fixed window, like Intel's long-lived root, so that one `now` serves both
# simulated and recorded real quotes in tests.
NOT_VALID_BEFORE = datetime(2024, 1, 1, tzinfo=UTC)
NOT_VALID_AFTER = datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC)

_CERT_STEMS = ("root_ca", "platform_ca", "pck")
_ATTESTATION_KEY_FILE = "attestation_key.pem"


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


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
        ]
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    path_length: int | None,
    is_ca: bool,
) -> x509.Certificate:
    issuer_name = issuer.subject if issuer is not None else _name(subject)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOT_VALID_BEFORE)
        .not_valid_after(NOT_VALID_AFTER)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not is_ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=is_ca,
                crl_sign=is_ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    return builder.sign(issuer_key, hashes.SHA256())


def generate() -> SimulatedPki:
    """A fresh simulated platform: root → platform CA → PCK leaf, plus an attestation key."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _certificate(ROOT_CA_NAME, root_key, None, root_key, path_length=1, is_ca=True)
    platform_key = ec.generate_private_key(ec.SECP256R1())
    platform = _certificate(PLATFORM_CA_NAME, platform_key, root, root_key, 0, is_ca=True)
    pck_key = ec.generate_private_key(ec.SECP256R1())
    pck = _certificate(PCK_NAME, pck_key, platform, platform_key, None, is_ca=False)
    attestation_key = ec.generate_private_key(ec.SECP256R1())
    return SimulatedPki(root_key, root, platform_key, platform, pck_key, pck, attestation_key)


def save(pki: SimulatedPki, directory: Path) -> None:
    """Write every key (0600) and certificate; the caller makes ``directory`` 0700."""
    pairs = {
        "root_ca": (pki.root_ca_key, pki.root_ca),
        "platform_ca": (pki.platform_ca_key, pki.platform_ca),
        "pck": (pki.pck_key, pki.pck),
    }
    for stem, (key, cert) in pairs.items():
        write_atomic(directory / f"{stem}.key.pem", _key_pem(key), 0o600)
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        write_atomic(directory / f"{stem}.pem", cert_pem, 0o644)
    # Written last: its presence is what `exists` tests, so a crash mid-way regenerates all.
    write_atomic(directory / _ATTESTATION_KEY_FILE, _key_pem(pki.attestation_key), 0o600)


def exists(directory: Path) -> bool:
    return (directory / _ATTESTATION_KEY_FILE).exists()


def load(directory: Path) -> SimulatedPki:
    """Read what :func:`save` wrote; a missing or damaged file is a DeviceError."""
    try:
        keys = {stem: _load_key(directory / f"{stem}.key.pem") for stem in _CERT_STEMS}
        certs = {
            stem: x509.load_pem_x509_certificate((directory / f"{stem}.pem").read_bytes())
            for stem in _CERT_STEMS
        }
        attestation_key = _load_key(directory / _ATTESTATION_KEY_FILE)
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


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{path.name} is not an EC private key")
    return key


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file, whole.

    Write a temporary file, fsync it, rename it over the target, fsync the directory.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(fd, mode)  # exactly this mode, whatever the umask
        f.write(data)
        f.flush()
        os.fsync(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
