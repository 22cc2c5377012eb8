"""Quote verification: real quotes pass with Intel's root, and every broken link names itself."""

from __future__ import annotations

import dataclasses
import hashlib
import random
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from attestd.tee.errors import QuoteFormatError, QuoteVerificationError
from attestd.tee.tdx import _simulated_pki
from attestd.tee.tdx.abi import Quote, parse_quote
from attestd.tee.tdx.simulated import SimulatedTdxBackend
from attestd.tee.tdx.verify import VerifyOptions, intel_sgx_root_ca, verify_quote

from .conftest import VECTORS_NOW, RealQuote

INTEL_ROOT_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"

# Offsets inside a v4 quote (Intel's layout), independent of the parser.
SIG = 0x27C
ATT_KEY = SIG + 64
QE_REPORT = ATT_KEY + 64 + 6
QE_SIG = QE_REPORT + 384
AUTH = QE_SIG + 64 + 2


def intel(now: datetime = VECTORS_NOW) -> VerifyOptions:
    return VerifyOptions(trusted_roots=[intel_sgx_root_ca()], now=now)


def reason_of(raw: bytes | Quote, options: VerifyOptions) -> str:
    with pytest.raises(QuoteVerificationError) as e:
        verify_quote(raw, options)
    return e.value.reason


def with_chain(quote: Quote, pem: bytes) -> Quote:
    cert = dataclasses.replace(quote.certification_data, pck_chain_pem=pem)
    sig = dataclasses.replace(quote.signature_data, certification_data=cert)
    return dataclasses.replace(quote, signature_data=sig)


def pem_of(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def test_intel_root_is_pinned() -> None:
    root = intel_sgx_root_ca()
    assert root.fingerprint(hashes.SHA256()).hex() == INTEL_ROOT_SHA256
    assert root.subject == root.issuer
    assert "CN=Intel SGX Root CA" in root.subject.rfc4514_string()


def test_real_quotes_verify_with_the_intel_root(real_quote: RealQuote) -> None:
    quote = verify_quote(real_quote.quote, intel())
    assert quote.pck_chain()[-1] == intel_sgx_root_ca()
    assert verify_quote(quote, intel()) is quote


def test_real_quotes_are_untrusted_under_a_simulated_root(
    real_quote: RealQuote, simulated: SimulatedTdxBackend
) -> None:
    options = VerifyOptions([simulated.trust_root()], VECTORS_NOW)
    assert reason_of(real_quote.quote, options) == "untrusted_root"
    assert reason_of(real_quote.quote, VerifyOptions([], VECTORS_NOW)) == "untrusted_root"


def test_any_of_several_roots_is_enough(
    real_quote: RealQuote, simulated: SimulatedTdxBackend
) -> None:
    options = VerifyOptions([simulated.trust_root(), intel_sgx_root_ca()], VECTORS_NOW)
    verify_quote(real_quote.quote, options)
    verify_quote(simulated.get_quote(bytes(64)), options)


@pytest.mark.parametrize(
    "now",
    [datetime(2018, 1, 1, tzinfo=UTC), datetime(2034, 1, 1, tzinfo=UTC)],
    ids=["before-the-root", "after-the-platform-ca"],
)
def test_certificates_outside_their_validity_fail(real_quote: RealQuote, now: datetime) -> None:
    assert reason_of(real_quote.quote, intel(now)) == "certificate_expired"


def test_now_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        VerifyOptions([intel_sgx_root_ca()], datetime(2025, 6, 23))


def test_malformed_bytes_raise_format_errors(real_quote: RealQuote) -> None:
    with pytest.raises(QuoteFormatError):
        verify_quote(real_quote.quote[:100], intel())


def test_broken_chains_are_invalid(real_quote: RealQuote, simulated: SimulatedTdxBackend) -> None:
    quote = parse_quote(real_quote.quote)
    leaf, platform, root = quote.pck_chain()
    broken = {
        "leaf only": pem_of(leaf),
        "platform CA skipped": pem_of(leaf, root),
        "reversed": pem_of(root, platform, leaf),
        "simulated root under Intel CAs": pem_of(leaf, platform, simulated.trust_root()),
        "leaf as root": pem_of(leaf, platform, root, leaf),
    }
    for name, pem in broken.items():
        assert reason_of(with_chain(quote, pem), intel()) == "pck_chain_invalid", name


def test_an_issuer_that_is_not_a_ca_breaks_the_chain(simulated: SimulatedTdxBackend) -> None:
    root_key, middle_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    make = _simulated_pki._certificate
    root = make("test root", root_key, None, root_key, path_length=1, is_ca=True)
    middle = make("not a CA", middle_key, root, root_key, None, is_ca=False)
    leaf = make("leaf", leaf_key, middle, middle_key, None, is_ca=False)
    quote = with_chain(parse_quote(simulated.get_quote(bytes(64))), pem_of(leaf, middle, root))
    assert reason_of(quote, VerifyOptions([root], VECTORS_NOW)) == "pck_chain_invalid"


def test_a_self_made_attestation_key_is_caught_at_the_qe_report(real_quote: RealQuote) -> None:
    """Re-sign the quote with our own key and a consistent binding: only the PCK key is missing."""
    quote = parse_quote(real_quote.quote)
    key = ec.generate_private_key(ec.SECP256R1())
    raw_key = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )[1:]
    cert = quote.certification_data
    binding = hashlib.sha256(raw_key + cert.qe_auth_data).digest() + bytes(32)
    qe_report = dataclasses.replace(cert.qe_report, report_data=binding)
    body = dataclasses.replace(quote.body, report_data=b"\xff" * 64)
    forged = dataclasses.replace(quote, body=body)
    r, s = decode_dss_signature(key.sign(forged.signed_region, ec.ECDSA(hashes.SHA256())))
    signature_data = dataclasses.replace(
        quote.signature_data,
        signature=r.to_bytes(32, "big") + s.to_bytes(32, "big"),
        attestation_key=raw_key,
        certification_data=dataclasses.replace(cert, qe_report=qe_report),
    )
    forged = dataclasses.replace(forged, signature_data=signature_data)
    assert reason_of(forged, intel()) == "qe_report_signature_invalid"


def _regions(raw: bytes) -> dict[str, tuple[range, str | None]]:
    """Where a flipped bit lands, and the reason it must produce (None: a format error)."""
    auth_size = int.from_bytes(raw[AUTH - 2 : AUTH], "little")
    return {
        "header format fields": (range(0, 8), None),
        "header and body": (range(8, 0x278), "quote_signature_invalid"),
        "quote signature": (range(SIG, ATT_KEY), "quote_signature_invalid"),
        "attestation key": (range(ATT_KEY, ATT_KEY + 64), "attestation_key_binding_invalid"),
        "QE report": (range(QE_REPORT, QE_SIG), "qe_report_signature_invalid"),
        "QE report signature": (range(QE_SIG, QE_SIG + 64), "qe_report_signature_invalid"),
        "QE auth data": (range(AUTH, AUTH + auth_size), "attestation_key_binding_invalid"),
    }


def _flip(raw: bytes, position: int, bit: int) -> bytes:
    b = bytearray(raw)
    b[position] ^= 1 << bit
    return bytes(b)


@pytest.fixture(params=["real", "simulated"])
def signed_quote(
    request: pytest.FixtureRequest, real_quote: RealQuote, simulated: SimulatedTdxBackend
) -> tuple[bytes, VerifyOptions]:
    if request.param == "real":
        return real_quote.quote, intel()
    options = VerifyOptions([simulated.trust_root()], datetime.now(UTC))
    return simulated.get_quote(hashlib.sha512(b"nonce").digest()), options


def test_a_flipped_bit_in_any_signed_part_is_caught(
    signed_quote: tuple[bytes, VerifyOptions],
) -> None:
    raw, options = signed_quote
    verify_quote(raw, options)
    rng = random.Random(raw[:64])
    for region, (positions, reason) in _regions(raw).items():
        for position in rng.sample(positions, min(24, len(positions))):
            mutated = _flip(raw, position, rng.randrange(8))
            if reason is None:
                with pytest.raises(QuoteFormatError):
                    verify_quote(mutated, options)
            else:
                assert reason_of(mutated, options) == reason, (region, position)


def test_a_flipped_bit_in_the_pck_chain_fails_or_changes_no_certificate(
    signed_quote: tuple[bytes, VerifyOptions],
) -> None:
    """PEM has slack (line breaks, base64 padding bits); the certificates themselves have none."""
    raw, options = signed_quote
    original = [c.tbs_certificate_bytes for c in parse_quote(raw).pck_chain()]
    pem = parse_quote(raw).certification_data.pck_chain_pem
    start = len(raw) - len(pem)
    rng = random.Random(pem)
    for position in rng.sample(range(start, len(raw)), 120):
        mutated = _flip(raw, position, rng.randrange(8))
        try:
            quote = verify_quote(mutated, options)
        except (QuoteFormatError, QuoteVerificationError):
            continue
        assert [c.tbs_certificate_bytes for c in quote.pck_chain()] == original, position
