"""Report verification: the real Milan report passes with AMD's roots; broken links say which."""

from __future__ import annotations

import dataclasses
import random
import warnings
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning

from attestd.tee.errors import QuoteFormatError, QuoteVerificationError
from attestd.tee.snp import _simulated_pki
from attestd.tee.snp.abi import (
    SIGNATURE_OFFSET,
    AttestationReport,
    encode_signature,
    parse_cert_table,
    parse_report,
)
from attestd.tee.snp.simulated import SimulatedSnpBackend
from attestd.tee.snp.verify import (
    VerifyOptions,
    amd_ark,
    amd_ask,
    load_certificate,
    vcek_extensions,
    verify_report,
)

from .conftest import VECTORS_NOW, RealReport

# SHA-256 of AMD's public root and signing-key certificates (go-sev-guest verify/trust).
PINNED = {
    "Milan": (
        "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
        "67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b",
    ),
    "Genoa": (
        "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
        "5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521",
    ),
    "Turin": (
        "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
        "5b77ef5fe7a7a004fd9032668fba9d0fda22f88c4442069a479636a6ae3b3185",
    ),
}


def amd(now: datetime = VECTORS_NOW, **kwargs: object) -> VerifyOptions:
    return VerifyOptions(now=now, **kwargs)  # type: ignore[arg-type]


def reason_of(report: bytes | AttestationReport, vcek: x509.Certificate, **kwargs: object) -> str:
    kwargs.setdefault("options", amd())
    with pytest.raises(QuoteVerificationError) as e:
        verify_report(report, vcek=vcek, **kwargs)  # type: ignore[arg-type]
    return e.value.reason


@pytest.mark.parametrize("product", sorted(PINNED))
def test_amd_roots_are_pinned(product: str) -> None:
    ark_sha, ask_sha = PINNED[product]
    ark, ask = amd_ark(product), amd_ask(product)
    assert ark.fingerprint(hashes.SHA256()).hex() == ark_sha
    assert ask.fingerprint(hashes.SHA256()).hex() == ask_sha
    assert ark.subject == ark.issuer
    assert f"CN=ARK-{product}" in ark.subject.rfc4514_string()
    ask.verify_directly_issued_by(ark)


def test_loading_amds_serial_zero_vcek_warns_nobody(real: RealReport) -> None:
    """AMD's VCEKs have serial 0 (DER 02 01 00); loading and verifying one stays silent."""
    assert b"\x02\x01\x00" in real.vcek_der[:16]
    before = list(warnings.filters)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vcek = load_certificate(real.vcek_der)
        pem = load_certificate(vcek.public_bytes(Encoding.PEM))
        verify_report(real.raw, vcek=pem, options=amd())
    assert warnings.filters == before
    with pytest.warns(CryptographyDeprecationWarning, match="serial number"):
        x509.load_der_x509_certificate(real.vcek_der)  # what the helper keeps from users


def test_real_report_verifies_with_amds_milan_roots(real: RealReport) -> None:
    report = verify_report(real.raw, vcek=real.vcek, options=amd())
    assert report.to_bytes() == real.raw
    assert verify_report(report, vcek=real.vcek, options=amd(product="Milan")) is report
    explicit = verify_report(
        real.raw, vcek=real.vcek, ask=amd_ask("Milan"), ark=amd_ark("Milan"), options=amd()
    )
    assert explicit == report


def test_every_sampled_bit_of_the_signed_region_matters(real: RealReport) -> None:
    vcek = real.vcek
    rng = random.Random(20240601)
    for bit in rng.sample(range(SIGNATURE_OFFSET * 8), 200):
        damaged = bytearray(real.raw)
        damaged[bit // 8] ^= 1 << (bit % 8)
        try:
            verify_report(bytes(damaged), vcek=vcek, options=amd())
        except QuoteFormatError:
            continue  # a reserved bit or unknown value: refused before any signature
        except QuoteVerificationError as e:
            assert e.reason == "report_signature_invalid", (bit, e)
            continue
        pytest.fail(f"flipping bit {bit} of the signed region went unnoticed")


@pytest.mark.parametrize("offset", [SIGNATURE_OFFSET, SIGNATURE_OFFSET + 71, 0x2E8, 0x32F])
def test_a_flipped_signature_bit_fails(real: RealReport, offset: int) -> None:
    damaged = bytearray(real.raw)
    damaged[offset] ^= 0x10
    assert reason_of(bytes(damaged), real.vcek) == "report_signature_invalid"


def test_the_wrong_products_ark_is_untrusted(real: RealReport) -> None:
    genoa_only = amd(trusted_arks=[amd_ark("Genoa")])
    assert reason_of(real.raw, real.vcek, options=genoa_only) == "untrusted_root"
    milan_chain = {"ask": amd_ask("Milan"), "ark": amd_ark("Milan")}
    assert reason_of(real.raw, real.vcek, options=genoa_only, **milan_chain) == "untrusted_root"
    assert reason_of(real.raw, real.vcek, options=amd(trusted_arks=[])) == "untrusted_root"


def test_the_wrong_products_ask_breaks_the_chain(real: RealReport) -> None:
    assert reason_of(real.raw, real.vcek, ask=amd_ask("Genoa")) == "vcek_chain_invalid"
    assert reason_of(real.raw, real.vcek, options=amd(product="Genoa")) == "product_mismatch"


@pytest.mark.parametrize("year", [2022, 2030])
def test_outside_the_vceks_validity_is_expired(real: RealReport, year: int) -> None:
    now = datetime(year, 1, 1, tzinfo=UTC)
    assert reason_of(real.raw, real.vcek, options=amd(now)) == "certificate_expired"


def test_options_refuse_naive_clocks_and_unknown_products() -> None:
    with pytest.raises(ValueError, match="timezone"):
        VerifyOptions(now=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="product"):
        VerifyOptions(now=VECTORS_NOW, product="Naples")


# -- claims, over reports re-signed by the simulated VCEK ------------------------


@pytest.fixture(scope="module")
def sim_pki(simulated: SimulatedSnpBackend) -> _simulated_pki.SimulatedPki:
    return _simulated_pki.load(simulated.state_directory)


def resign(pki: _simulated_pki.SimulatedPki, report: AttestationReport) -> bytes:
    key = pki.vcek_key
    r, s = decode_dss_signature(key.sign(report.signed_region, ec.ECDSA(hashes.SHA384())))
    return report.with_signature(encode_signature(r, s)).to_bytes()


def sim_reason(pki: _simulated_pki.SimulatedPki, report: AttestationReport) -> str:
    options = amd(trusted_arks=[pki.ark])
    with pytest.raises(QuoteVerificationError) as e:
        verify_report(resign(pki, report), vcek=pki.vcek, ask=pki.ask, options=options)
    return e.value.reason


def test_report_claims_must_match_the_vcek(
    simulated: SimulatedSnpBackend, sim_pki: _simulated_pki.SimulatedPki
) -> None:
    good = parse_report(simulated.get_quote(bytes(64)))
    options = amd(trusted_arks=[sim_pki.ark])
    verify_report(resign(sim_pki, good), vcek=sim_pki.vcek, ask=sim_pki.ask, options=options)
    newer = dataclasses.replace(good, reported_tcb=good.reported_tcb + (1 << 48))
    assert sim_reason(sim_pki, newer) == "tcb_mismatch"
    other_chip = dataclasses.replace(good, chip_id=bytes(64))
    assert sim_reason(sim_pki, other_chip) == "chip_id_mismatch"
    vlek = dataclasses.replace(good, signer_info=1 << 2)
    assert sim_reason(sim_pki, vlek) == "signing_key_mismatch"
    genoa = dataclasses.replace(good, cpuid_mod_id=0x11)
    assert sim_reason(sim_pki, genoa) == "product_mismatch"


def test_a_vcek_from_another_chain_is_refused(
    real: RealReport, simulated: SimulatedSnpBackend
) -> None:
    sim_vcek = load_certificate(parse_cert_table(simulated.certificate_table())["vcek"])
    assert reason_of(real.raw, sim_vcek) == "vcek_chain_invalid"
    assert reason_of(real.raw, amd_ask("Milan")) == "vcek_extensions_invalid"


def _vcek_with(
    pki: _simulated_pki.SimulatedPki, oid: x509.ObjectIdentifier, value: bytes
) -> x509.Certificate:
    """The simulated VCEK re-issued with extension ``oid`` set to the raw ``value``."""
    extensions = [
        x509.UnrecognizedExtension(e.oid, value if e.oid == oid else e.value.value)
        for e in pki.vcek.extensions
    ]
    return _simulated_pki._certificate(
        "test VCEK", pki.vcek_key.public_key(), pki.ask, pki.ask_key, False, extensions
    )


def test_the_real_vceks_extensions_are_read(real: RealReport) -> None:
    extensions = vcek_extensions(real.vcek)
    assert extensions.product_name.startswith("Milan")
    assert extensions.hwid is not None and len(extensions.hwid) == 64


@pytest.mark.parametrize(
    ("oid", "value"),
    [
        ("1.3.6.1.4.1.3704.1.3.1", b"\x02\x02\x00\x05"),  # INTEGER not minimal
        ("1.3.6.1.4.1.3704.1.3.1", b"\x02\x01\x80"),  # -128
        ("1.3.6.1.4.1.3704.1.3.1", b"\x02\x02\x01\x00"),  # 256
        ("1.3.6.1.4.1.3704.1.3.1", b"\x02\x01\x05\x00"),  # trailing byte
        ("1.3.6.1.4.1.3704.1.3.1", b"\x04\x01\x05"),  # OCTET STRING, not INTEGER
        ("1.3.6.1.4.1.3704.1.2", b"\x16\x02\xc3\xa9"),  # IA5String that is not ASCII
        ("1.3.6.1.4.1.3704.1.2", b"\x0c\x05Milan"),  # UTF8String, not IA5String
    ],
)
def test_misencoded_amd_extensions_are_refused(
    sim_pki: _simulated_pki.SimulatedPki, oid: str, value: bytes
) -> None:
    vcek = _vcek_with(sim_pki, x509.ObjectIdentifier(oid), value)
    with pytest.raises(QuoteVerificationError) as caught:
        vcek_extensions(vcek)
    assert caught.value.reason == "vcek_extensions_invalid"


def test_an_spl_of_255_is_read(sim_pki: _simulated_pki.SimulatedPki) -> None:
    vcek = _vcek_with(sim_pki, x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.1"), b"\x02\x02\x00\xff")
    assert vcek_extensions(vcek).bootloader == 255
