"""A throwaway TLS PKI for demos and tests: NOT for production.

Creates one CA that issues the agent's server certificate and the verifiers'
client certificates, so the agent's mutual TLS listener can be tried without an
existing PKI. Production deployments use their own CA (docs/configuration.md).
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from attestd._files import write_atomic
from attestd.tee._certs import SIGNING, issue, name
from attestd.tee._state import private_key_pem


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    usage: x509.ObjectIdentifier | None = None,
    hosts: tuple[str, ...] = (),
) -> x509.Certificate:
    """A 30-day certificate; ``issuer=None`` is the self-signed CA."""
    now = datetime.now(UTC)
    extensions: list[x509.ExtensionType] = []
    if usage is not None:
        extensions.append(x509.ExtendedKeyUsage([usage]))
    if hosts:
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        extensions.append(x509.SubjectAlternativeName(names))
    return issue(
        SIGNING,
        name(subject),
        key.public_key(),
        issuer,
        issuer_key,
        valid=(now - timedelta(minutes=5), now + timedelta(days=30)),
        ca=issuer is None,
        path_length=0,
        extensions=extensions,
    )


def create_dev_pki(directory: Path, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> None:
    """Write ca.pem, server.pem/.key (for ``hosts``) and client.pem/.key into ``directory``."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _issue("attestd development CA (not for production)", ca_key, None, ca_key)
    (directory / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    for role, usage, role_hosts in (
        ("server", ExtendedKeyUsageOID.SERVER_AUTH, hosts),
        ("client", ExtendedKeyUsageOID.CLIENT_AUTH, ()),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(f"attestd dev {role}", key, ca_cert, ca_key, usage=usage, hosts=role_hosts)
        (directory / f"{role}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_atomic(directory / f"{role}.key", private_key_pem(key), mode=0o600)
