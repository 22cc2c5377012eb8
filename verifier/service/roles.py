"""Who may call the verifier service: admin certificates are pinned by their public key.

    pin = certificate_pin(Path("admin.pem").read_bytes())   # "sha256:3f1c..."

The pin is ``sha256:`` + hex SHA-256 of the certificate's DER SubjectPublicKeyInfo,
the form ``attestd.evidence.key_id`` gives an agent key. It is what ``[api]
admin_pins`` lists and what ``attestctl fleet pin --cert`` prints. Pinning the
key, not a name in the certificate, means no other certificate the client CA
issues can claim the role, and re-issuing a certificate for the same key keeps it.
"""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from attestd.verifier.errors import VerifierError

__all__ = ["CertificateUnreadableError", "certificate_pin"]


class CertificateUnreadableError(VerifierError):
    """The bytes given as a certificate are not one PEM X.509 certificate."""

    reason = "certificate_unreadable"


def certificate_pin(pem: bytes) -> str:
    """``sha256:`` + hex SHA-256 of the DER SubjectPublicKeyInfo of the certificate in ``pem``."""
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError as err:
        raise CertificateUnreadableError(f"not a PEM certificate: {err}") from None
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(spki).hexdigest()
