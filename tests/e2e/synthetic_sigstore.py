"""A keyless Sigstore bundle of given DSSE payload bytes, under a throw-away Sigstore instance.

Keyless signing needs Fulcio and Rekor, which tests cannot reach. So this
plays both, with keys made in memory: a CA issues a short-lived certificate
for an OIDC identity (with an SCT from a CT log key), the certificate's key
signs the DSSE envelope, and a log key signs the entry's timestamp (SET) and
a one-leaf checkpoint. The trusted root names those three keys. Every
signature is real and no verifier step is patched, so a stock verifier given
this trusted root checks exactly what it checks for the public instance;
only the roots differ.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

IDENTITY = "https://github.com/acme/llm/.github/workflows/release.yml@refs/heads/main"
ISSUER = "https://token.actions.githubusercontent.com"
_FULCIO_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
_LOG_ORIGIN = "log.example"


@dataclass(frozen=True)
class KeylessBundle:
    """A keyless bundle (JSON) and the trusted root (JSON) of the instance that made it."""

    bundle: bytes
    trusted_root: bytes


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _spki(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _der_octet_string(data: bytes) -> bytes:
    length = len(data)
    if length < 0x80:
        return b"\x04" + bytes([length]) + data
    size = (length.bit_length() + 7) // 8
    return b"\x04" + bytes([0x80 | size]) + length.to_bytes(size, "big") + data


def _pae(payload_type: str, payload: bytes) -> bytes:
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _ca(key: ec.EllipticCurvePrivateKey, now: datetime) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "throw-away fulcio")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )


def _leaf(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    ct_key: ec.EllipticCurvePrivateKey,
    signer: ec.EllipticCurvePrivateKey,
    now: datetime,
) -> x509.Certificate:
    """A Fulcio-style code-signing certificate for IDENTITY, with an embedded SCT (RFC 6962)."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca.subject)
        .public_key(signer.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(minutes=10))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(IDENTITY)]), True
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.UnrecognizedExtension(_FULCIO_ISSUER_V1, ISSUER.encode()), False)
    )
    # The CT log signs the precertificate: the TBS certificate without the SCT list.
    precert_tbs = builder.sign(ca_key, hashes.SHA256()).tbs_certificate_bytes
    millis = int(now.timestamp() * 1000)
    signed = (
        struct.pack("!BBQH", 0, 0, millis, 1)  # v1, certificate_timestamp, time, precert_entry
        + hashlib.sha256(_spki(ca_key)).digest()
        + len(precert_tbs).to_bytes(3, "big")
        + precert_tbs
        + b"\x00\x00"  # no extensions
    )
    signature = ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
    sct = (
        b"\x00"
        + hashlib.sha256(_spki(ct_key)).digest()
        + struct.pack("!QH", millis, 0)
        + struct.pack("!BBH", 4, 3, len(signature))  # SHA-256, ECDSA
        + signature
    )
    sct_list = struct.pack("!HH", len(sct) + 2, len(sct)) + sct
    return builder.add_extension(
        x509.UnrecognizedExtension(
            ExtensionOID.PRECERT_SIGNED_CERTIFICATE_TIMESTAMPS, _der_octet_string(sct_list)
        ),
        False,
    ).sign(ca_key, hashes.SHA256())


def _log_instance(key: ec.EllipticCurvePrivateKey, url: str) -> dict[str, Any]:
    return {
        "baseUrl": url,
        "hashAlgorithm": "SHA2_256",
        "publicKey": {
            "rawBytes": _b64(_spki(key)),
            "keyDetails": "PKIX_ECDSA_P256_SHA_256",
            "validFor": {"start": "2020-01-01T00:00:00Z"},
        },
        "logId": {"keyId": _b64(hashlib.sha256(_spki(key)).digest())},
    }


def keyless_bundle(payload_type: str, payload: bytes) -> KeylessBundle:
    """``payload`` signed keylessly for IDENTITY (issuer ISSUER) and logged once."""
    now = datetime.fromtimestamp(int(time.time()), UTC)
    ca_key, ct_key, log_key, signer = (ec.generate_private_key(ec.SECP256R1()) for _ in range(4))
    ca = _ca(ca_key, now)
    leaf = _leaf(ca, ca_key, ct_key, signer, now)
    signature = signer.sign(_pae(payload_type, payload), ec.ECDSA(hashes.SHA256()))
    envelope = {
        "payload": _b64(payload),
        "payloadType": payload_type,
        "signatures": [{"sig": _b64(signature)}],
    }
    # Rekor's dsse v0.0.1 entry, as Rekor would canonicalise it.
    body = rfc8785.dumps(
        {
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(json.dumps(envelope).encode()).hexdigest(),
                },
                "payloadHash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(payload).hexdigest(),
                },
                "signatures": [
                    {
                        "signature": _b64(signature),
                        "verifier": _b64(leaf.public_bytes(serialization.Encoding.PEM)),
                    }
                ],
            },
        }
    )
    log_id = hashlib.sha256(_spki(log_key)).digest()
    integrated = int(now.timestamp())
    entry_timestamp = log_key.sign(
        rfc8785.dumps(
            {"body": _b64(body), "integratedTime": integrated, "logID": log_id.hex(), "logIndex": 0}
        ),
        ec.ECDSA(hashes.SHA256()),
    )
    # A one-leaf tree: the root is the leaf hash, and the checkpoint is a signed note over it.
    root_hash = hashlib.sha256(b"\x00" + body).digest()
    note = f"{_LOG_ORIGIN}\n1\n{_b64(root_hash)}\n"
    note_signature = log_key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
    checkpoint = f"{note}\n\u2014 {_LOG_ORIGIN} {_b64(log_id[:4] + note_signature)}\n"
    bundle = {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {
            "certificate": {"rawBytes": _b64(leaf.public_bytes(serialization.Encoding.DER))},
            "tlogEntries": [
                {
                    "logIndex": "0",
                    "logId": {"keyId": _b64(log_id)},
                    "kindVersion": {"kind": "dsse", "version": "0.0.1"},
                    "integratedTime": str(integrated),
                    "inclusionPromise": {"signedEntryTimestamp": _b64(entry_timestamp)},
                    "inclusionProof": {
                        "logIndex": "0",
                        "rootHash": _b64(root_hash),
                        "treeSize": "1",
                        "hashes": [],
                        "checkpoint": {"envelope": checkpoint},
                    },
                    "canonicalizedBody": _b64(body),
                }
            ],
        },
        "dsseEnvelope": envelope,
    }
    trusted_root = {
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": [_log_instance(log_key, f"https://{_LOG_ORIGIN}")],
        "certificateAuthorities": [
            {
                "subject": {"organization": "attestd tests", "commonName": "throw-away fulcio"},
                "uri": "https://fulcio.example",
                "certChain": {
                    "certificates": [
                        {"rawBytes": _b64(ca.public_bytes(serialization.Encoding.DER))}
                    ]
                },
                "validFor": {"start": "2020-01-01T00:00:00Z"},
            }
        ],
        "ctlogs": [_log_instance(ct_key, "https://ct.example")],
        "timestampAuthorities": [],
    }
    return KeylessBundle(json.dumps(bundle).encode(), json.dumps(trusted_root).encode())
