"""``attestctl dev-pki``: a throwaway TLS PKI for demos and tests, NOT for production.

Creates one CA that issues the agent's server certificate and the verifiers'
client certificates, so the agent's mutual TLS listener can be tried without an
existing PKI. Production deployments use their own CA (docs/configuration.md).
Tests and the demo call :func:`create_dev_pki` directly::

    from attestd.cli.devpki import create_dev_pki

    create_dev_pki(Path("pki"), hosts=("localhost", "127.0.0.1"))
"""

from __future__ import annotations

import argparse
import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from attestd._files import write_atomic
from attestd.cli._common import EXIT_OK, Commands, add_command
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


def cmd_dev_pki(args: argparse.Namespace) -> int:
    """Write the PKI into the directory given."""
    create_dev_pki(args.directory, tuple(args.host) if args.host else ("localhost", "127.0.0.1"))
    print(f"wrote ca.pem, server.pem/.key and client.pem/.key to {args.directory}")
    return EXIT_OK


def add_dev_pki(commands: Commands) -> None:
    sub = add_command(
        commands, "dev-pki", cmd_dev_pki, "create a throwaway mTLS PKI for demos (not production)"
    )
    sub.add_argument("directory", type=Path)
    sub.add_argument("--host", action="append", help="server name or IP (repeatable)")
