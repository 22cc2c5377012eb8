"""The TCP listener's TLS material, checked whole before any listener starts.

    material = load_server_tls(config.listen.tls)
    credentials = material.credentials()

gRPC reads TLS files lazily and reports problems late or never (an empty
client CA is accepted and then refuses every client), so the agent parses each
file itself: the certificate, the key that must match it, and the client CA.
Every key must meet :data:`MINIMUM_KEY_STRENGTH`; the same rule is applied to
each verifier's certificate on every call (``server.py``), because gRPC offers
no hook into the handshake.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from attestd._files import FileRefusedError, read_regular_file
from attestd.agent.config import TlsConfig
from attestd.agent.errors import ListenError, TlsInvalidError, WeakKeyError

#: The weakest keys accepted anywhere in mutual TLS (docs/configuration.md).
MINIMUM_RSA_BITS = 2048
MINIMUM_EC_BITS = 256
MINIMUM_KEY_STRENGTH = f"RSA {MINIMUM_RSA_BITS} bits, EC P-256, Ed25519"
#: A TLS file larger than this is not a certificate bundle or a key.
MAX_TLS_FILE_BYTES = 1 << 20


@dataclass(frozen=True)
class ServerTls:
    """Checked PEM bytes of the agent's certificate, its key and the client CA."""

    cert_pem: bytes
    key_pem: bytes
    client_ca_pem: bytes

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key_pem, self.cert_pem)],
            root_certificates=self.client_ca_pem,
            require_client_auth=True,
        )


def key_weakness(key: object) -> str | None:
    """Why a public key is below the minimum strength, or None when it is strong enough."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MINIMUM_RSA_BITS:
            return f"RSA key of {key.key_size} bits (at least {MINIMUM_RSA_BITS} are required)"
        return None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.key_size < MINIMUM_EC_BITS:
            return f"EC key on {key.curve.name} (P-256 or stronger is required)"
        return None
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return None
    return f"{type(key).__name__.removeprefix('_')} keys are not accepted"


def load_server_tls(tls: TlsConfig) -> ServerTls:
    """Read and check the three TLS files; the error names the file and what is wrong."""
    cert_pem, key_pem, ca_pem = (_read(p) for p in (tls.cert, tls.key, tls.client_ca))
    chain = _certificates(tls.cert, cert_pem)
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as err:
        # TypeError: an encrypted key; the agent has no way to ask for its password.
        raise TlsInvalidError(f"{tls.key} is not an unencrypted PEM private key") from err
    if key.public_key() != chain[0].public_key():
        raise TlsInvalidError(f"the key {tls.key} does not belong to the certificate {tls.cert}")
    for path, certs in ((tls.cert, chain), (tls.client_ca, _certificates(tls.client_ca, ca_pem))):
        for cert in certs:
            weakness = key_weakness(cert.public_key())
            if weakness is not None:
                raise WeakKeyError(f"{path}: {cert.subject.rfc4514_string()} has a {weakness}")
    return ServerTls(cert_pem=cert_pem, key_pem=key_pem, client_ca_pem=ca_pem)


def _read(path: Path) -> bytes:
    try:
        return read_regular_file(path, MAX_TLS_FILE_BYTES, "TLS file")
    except FileRefusedError as err:
        raise ListenError(str(err)) from err


def _certificates(path: Path, pem: bytes) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as err:
        raise TlsInvalidError(f"{path} holds no PEM certificate") from err
    if not certs:
        raise TlsInvalidError(f"{path} holds no PEM certificate")
    return certs
