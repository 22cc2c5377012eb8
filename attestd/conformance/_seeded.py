"""Reproducible randomness for the suite's generator, and nowhere else.

    with seeded(b"attestd-conformance-v1"):
        build_cases(...)          # same seed: same keys, serials and signatures

attestd's simulators draw their keys, certificate serials and guest ids from
the operating system, and sign with randomized ECDSA: right for a platform,
wrong for a suite whose bytes must be reproducible. Inside :func:`seeded`,
and only there, those draws come from a counter-mode SHA-256 stream of the
seed: EC keys are derived from it (``ec.derive_private_key``), serials and
``secrets.token_bytes`` read it, and ECDSA signs deterministically (RFC 6979).
Nothing outside the generator runs under it; the patch is undone on exit,
even on error. RSA has neither a seeded key generation nor a deterministic
PSS in ``cryptography``, so the generator does not use SEV-SNP's RSA PKI under
it (docs/conformance.md, "Reproducibility").
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["SeededStream", "seeded"]

# One generator at a time: the patch is process-wide.
_LOCK = threading.Lock()


class SeededStream:
    """SHA-256 in counter mode over ``seed``: the suite's only source of randomness."""

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self._counter = 0

    def read(self, size: int) -> bytes:
        out = b""
        while len(out) < size:
            block = self._counter.to_bytes(8, "big")
            out += hashlib.sha256(self._seed + block).digest()
            self._counter += 1
        return out[:size]

    def ec_key(self, curve: ec.EllipticCurve) -> ec.EllipticCurvePrivateKey:
        """A private key on ``curve``, a scalar in [1, n-1] read from the stream."""
        order = _ORDERS[curve.name]
        width = (order.bit_length() + 7) // 8 + 8  # 64 extra bits: the bias is negligible
        scalar = int.from_bytes(self.read(width), "big") % (order - 1) + 1
        return ec.derive_private_key(scalar, curve)

    def signing_key(self) -> DeterministicKey:
        """A P-256 key from the stream that always signs deterministically."""
        return DeterministicKey(self.ec_key(ec.SECP256R1()))


_ORDERS = {
    "secp256r1": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "secp384r1": int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
        16,
    ),
}


_ORIGINAL_ECDSA = ec.ECDSA


class DeterministicKey(ec.EllipticCurvePrivateKey):
    """An EC private key whose ``sign`` is always RFC 6979, whatever ECDSA object it is given.

    For the generator's own keys (agent keys, the EAR signer): libraries that
    sign with an ``ECDSA`` imported before :func:`seeded` (securesystemslib,
    PyJWT) still get deterministic signatures. X.509 builders need the real
    key, which :attr:`inner` is.
    """

    def __init__(self, inner: ec.EllipticCurvePrivateKey) -> None:
        self.inner = inner

    @property
    def curve(self) -> ec.EllipticCurve:
        return self.inner.curve

    @property
    def key_size(self) -> int:
        return self.inner.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.inner.public_key()

    def sign(
        self,
        data: bytes | bytearray | memoryview,
        signature_algorithm: ec.EllipticCurveSignatureAlgorithm,
    ) -> bytes:
        assert isinstance(signature_algorithm, _ORIGINAL_ECDSA)
        algorithm = _ORIGINAL_ECDSA(signature_algorithm.algorithm, deterministic_signing=True)
        return self.inner.sign(data, algorithm)

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        return self.inner.exchange(algorithm, peer_public_key)

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        return self.inner.private_numbers()

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        return self.inner.private_bytes(encoding, format, encryption_algorithm)

    def __copy__(self) -> DeterministicKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> DeterministicKey:
        return self


class _DeterministicEcdsa(ec.ECDSA):
    """``ec.ECDSA`` signing per RFC 6979 whatever the caller asked."""

    def __init__(self, algorithm: Any, deterministic_signing: bool = True) -> None:
        super().__init__(algorithm, deterministic_signing=True)


@contextmanager
def seeded(seed: bytes) -> Iterator[SeededStream]:
    """Run the body with every random draw of attestd's simulators taken from ``seed``."""
    stream = SeededStream(seed)

    def generate_private_key(
        curve: ec.EllipticCurve, backend: Any = None
    ) -> ec.EllipticCurvePrivateKey:
        return stream.ec_key(curve)

    def random_serial_number() -> int:
        return int.from_bytes(stream.read(19), "big") >> 1 or 1  # positive, < 2**159

    def token_bytes(nbytes: int | None = None) -> bytes:
        return stream.read(32 if nbytes is None else nbytes)

    # cryptography's Rust side looks ``ec.ECDSA`` up once, on first use, and keeps it:
    # sign once with the real class first, so that it never caches the subclass
    # (which would refuse every plain ECDSA object made by code imported earlier).
    warm = ec.derive_private_key(1, ec.SECP256R1())
    warm.sign(b"", ec.ECDSA(hashes.SHA256()))
    certificate_sign = x509.CertificateBuilder.sign
    crl_sign = x509.CertificateRevocationListBuilder.sign

    def sign_certificate(self: x509.CertificateBuilder, key: Any, *args: Any, **kw: Any) -> Any:
        return certificate_sign(self, key, *args, **_deterministic(key, kw))

    def sign_crl(
        self: x509.CertificateRevocationListBuilder, key: Any, *args: Any, **kw: Any
    ) -> Any:
        return crl_sign(self, key, *args, **_deterministic(key, kw))

    patches: list[tuple[object, str, object]] = [
        (ec, "generate_private_key", generate_private_key),
        (ec, "ECDSA", _DeterministicEcdsa),
        (x509, "random_serial_number", random_serial_number),
        (secrets, "token_bytes", token_bytes),
        (x509.CertificateBuilder, "sign", sign_certificate),
        (x509.CertificateRevocationListBuilder, "sign", sign_crl),
    ]
    with _LOCK:
        saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
        try:
            for owner, name, value in patches:
                setattr(owner, name, value)
            yield stream
        finally:
            for owner, name, value in saved:
                setattr(owner, name, value)


def _deterministic(key: object, kwargs: dict[str, Any]) -> dict[str, Any]:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return kwargs | {"ecdsa_deterministic": True}
    return kwargs
