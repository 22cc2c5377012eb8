"""Make the suite's committed fixtures that the seed cannot: run once, then commit.

    python -m attestd.conformance._fixtures conformance/fixtures/

The simulated SEV-SNP ASK signs with randomized RSA-PSS, which ``cryptography``
cannot make deterministic (docs/conformance.md, "Reproducibility"), so a
certificate it issues is made here once and committed, never by ``make
conformance``. What is made:

- ``snp-vcek-unknown-product.pem``: the committed platform's VCEK (same key,
  subject, validity, TCB and hwID extensions) whose ``productName`` is
  ``Unknown-B0``, a product attestd does not know; signed by the simulated ASK.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from attestd.tee.snp import _simulated_pki as snp_pki
from attestd.tee.snp.verify import OID_PRODUCT_NAME

__all__ = ["UNKNOWN_PRODUCT_VCEK", "unknown_product_vcek"]

UNKNOWN_PRODUCT_VCEK = "snp-vcek-unknown-product.pem"
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)  # as the simulator's


def unknown_product_vcek(platform: snp_pki.SimulatedPki) -> x509.Certificate:
    """``platform``'s VCEK naming the product ``Unknown-B0``, signed again by its ASK."""
    vcek = platform.vcek
    builder = (
        x509.CertificateBuilder()
        .subject_name(vcek.subject)
        .issuer_name(vcek.issuer)
        .public_key(vcek.public_key())
        .serial_number(vcek.serial_number)
        .not_valid_before(vcek.not_valid_before_utc)
        .not_valid_after(vcek.not_valid_after_utc)
    )
    for extension in vcek.extensions:
        value = extension.value
        if extension.oid == OID_PRODUCT_NAME:
            # DER IA5String: tag 0x16, a short length, the name.
            name = b"Unknown-B0"
            value = x509.UnrecognizedExtension(OID_PRODUCT_NAME, bytes([0x16, len(name)]) + name)
        builder = builder.add_extension(value, critical=extension.critical)
    return builder.sign(platform.ask_key, hashes.SHA384(), rsa_padding=_PSS)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Make the suite's unseedable fixtures.")
    parser.add_argument("fixtures", type=Path)
    args = parser.parse_args(argv)
    platform = snp_pki.load(args.fixtures / "snp")
    vcek = unknown_product_vcek(platform)
    path = args.fixtures / UNKNOWN_PRODUCT_VCEK
    path.write_bytes(vcek.public_bytes(serialization.Encoding.PEM))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
