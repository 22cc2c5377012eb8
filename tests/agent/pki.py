"""A test PKI like attestd.cli.devpki's, but with a chosen key type per certificate.

``None`` means an EC P-256 key (devpki's); a number means an RSA key of that
many bits, so tests can present keys below the minimum strength.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _key(rsa_bits: int | None) -> _Key:
    if rsa_bits is None:
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str, key: _Key, issuer_key: _Key, *, ca: bool, usage: x509.ObjectIdentifier | None
) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name("test CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        names = [x509.DNSName("localhost")] if usage == ExtendedKeyUsageOID.SERVER_AUTH else []
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(directory: Path, name: str, cert: x509.Certificate, key: _Key | None) -> None:
    (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        (directory / f"{name}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


def write_pki(
    directory: Path,
    *,
    ca_rsa_bits: int | None = None,
    server_rsa_bits: int | None = None,
    clients: Mapping[str, int | None] | None = None,
) -> None:
    """Write ca.pem, server.pem/.key and one NAME.pem/.key per client (default: "client")."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_key = _key(ca_rsa_bits)
    _write(directory, "ca", _certificate("test CA", ca_key, ca_key, ca=True, usage=None), None)
    server_key = _key(server_rsa_bits)
    server = _certificate(
        "server", server_key, ca_key, ca=False, usage=ExtendedKeyUsageOID.SERVER_AUTH
    )
    _write(directory, "server", server, server_key)
    for name, bits in (clients or {"client": None}).items():
        key = _key(bits)
        cert = _certificate(name, key, ca_key, ca=False, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
        _write(directory, name, cert, key)
