"""The one certificate builder behind the simulated PKIs and the development TLS PKI.

    from attestd.tee._certs import SIGNING, Profile, issue, name

    root = issue(SIGNING, name("Root"), root_key.public_key(), None, root_key,
                 valid=(start, end), ca=True, path_length=1)
    leaf = issue(SIGNING, name("Leaf"), leaf_key.public_key(), root, root_key,
                 valid=(start, end), extensions=[x509.ExtendedKeyUsage([...])])

A :class:`Profile` says how one PKI shapes its certificates (signature hash and
padding, which extensions a leaf carries, key identifiers), so the simulated
Intel and AMD PKIs look like the vendors' and the TLS one like a plain CA.
Every extension is built with ``cryptography``'s x509 and ASN.1 types; the
vendor-specific extension values are encoded with its declarative DER
(:mod:`cryptography.hazmat.asn1`) by the modules that define them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Profile:
    """How one PKI shapes its certificates."""

    hash_algorithm: hashes.SHA256 | hashes.SHA384 = field(default_factory=hashes.SHA256)
    rsa_padding: padding.PSS | None = None
    """RSA-PSS parameters when the issuer key is RSA (AMD signs with PSS); None: PKCS#1 v1.5."""
    leaf_basic_constraints: bool = True
    """Leaves carry ``BasicConstraints(ca=False)`` (AMD's VCEK carries none)."""
    leaf_key_usage: bool = False
    """Leaves carry ``KeyUsage(digital_signature)`` (Intel's PCK does)."""
    key_identifiers: bool = False
    """Certificates carry subject and authority key identifiers (Intel's do)."""


#: A plain PKI: SHA-256, constraints on every certificate, key usage on CAs only.
SIGNING = Profile()


def name(common_name: str, organization: str | None = None) -> x509.Name:
    """A subject or issuer name: CN, and O when given."""
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def issue(
    profile: Profile,
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    issuer: x509.Certificate | None,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    *,
    valid: tuple[datetime, datetime],
    ca: bool = False,
    path_length: int | None = None,
    extensions: Sequence[x509.ExtensionType] = (),
) -> x509.Certificate:
    """A certificate for ``public_key`` signed by ``issuer_key``; ``issuer=None`` is self-signed.

    ``extensions`` are added non-critical, after the profile's own.
    """
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
    )
    if ca or profile.leaf_basic_constraints:
        constraints = x509.BasicConstraints(ca=ca, path_length=path_length if ca else None)
        builder = builder.add_extension(constraints, critical=True)
    if ca or profile.leaf_key_usage:
        builder = builder.add_extension(_key_usage(ca=ca), critical=True)
    if profile.key_identifiers:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        ).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(issuer_key, profile.hash_algorithm, rsa_padding=profile.rsa_padding)
