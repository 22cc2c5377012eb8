"""VLEK-signed reports: AMD's pinned ASVK chains, the chain chosen by SIGNING_KEY, a simulated VLEK.

A cloud provider's VLEK is signed by the ASVK, not the ASK; the report's
SIGNING_KEY field says which key signed, and a certificate of the other kind
is refused as ``signing_key_mismatch`` before any chain is tried.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from attestd.agent.config import parse_config
from attestd.agent.errors import ConfigError
from attestd.cli import EXIT_NOT_AFFIRMING, EXIT_OK, main
from attestd.tee.detect import open_backend
from attestd.tee.errors import InvalidArgumentError, QuoteVerificationError
from attestd.tee.snp import _simulated_pki, verify
from attestd.tee.snp.abi import (
    PRODUCTS,
    SIGNING_KEY_VCEK,
    SIGNING_KEY_VLEK,
    AttestationReport,
    CertChain,
    build_cert_table,
    encode_signature,
    parse_cert_table,
    parse_report,
    signing_key_of,
)
from attestd.tee.snp.kds import VcekSource, VcekUnavailableError, get_vcek
from attestd.tee.snp.simulated import SimulatedSnpBackend, SimulatedSnpMeasurements
from attestd.tee.snp.verify import (
    VerifyOptions,
    amd_ark,
    amd_ask,
    amd_asvk,
    load_certificate,
    vcek_extensions,
    verify_report,
)

from .conftest import VECTORS_NOW
from .test_kds import FakeKds
from .test_kds import kds as kds  # the local fake KDS fixture, shared

# -- AMD's ASVK chains, pinned -------------------------------------------------------


@pytest.mark.parametrize("product", PRODUCTS)
def test_the_shipped_asvk_chains_are_amds_byte_for_byte(vectors_dir: Path, product: str) -> None:
    name = f"asvk_ark_{product.lower()}.pem"
    shipped = Path(verify.__file__).with_name(name).read_bytes()
    assert shipped == (vectors_dir / "snp" / "vendor" / name).read_bytes()


@pytest.mark.parametrize("product", PRODUCTS)
def test_the_asvk_is_signed_by_the_same_ark_as_the_ask(product: str) -> None:
    asvk, ark = amd_asvk(product), amd_ark(product)
    assert f"CN=SEV-VLEK-{product}" in asvk.subject.rfc4514_string()
    assert asvk != amd_ask(product)
    asvk.verify_directly_issued_by(ark)
    pem = Path(verify.__file__).with_name(f"asvk_ark_{product.lower()}.pem").read_bytes()
    assert x509.load_pem_x509_certificates(pem)[1] == ark  # the ASVK file's ARK is the ARK


# -- simulated VCEK and VLEK over one ARK ---------------------------------------------


@pytest.fixture(scope="module")
def platform() -> _simulated_pki.SimulatedPki:
    """A simulated platform with both halves: ARK, ASK, VCEK and ASVK, VLEK."""
    return _simulated_pki.with_vlek(_simulated_pki.generate())


@pytest.fixture(scope="module")
def vlek_backend(
    tmp_path_factory: pytest.TempPathFactory, platform: _simulated_pki.SimulatedPki
) -> SimulatedSnpBackend:
    directory = tmp_path_factory.mktemp("vlek-state")
    target = directory / "tee" / "simulated-snp"
    target.mkdir(mode=0o700, parents=True)
    _simulated_pki.save(platform, target)
    return SimulatedSnpBackend.open(directory, SimulatedSnpMeasurements(signing_key="vlek"))


def sim(platform: _simulated_pki.SimulatedPki) -> VerifyOptions:
    return VerifyOptions(now=VECTORS_NOW, trusted_arks=[platform.ark])


def vlek_of(platform: _simulated_pki.SimulatedPki) -> _simulated_pki.SimulatedVlek:
    assert platform.vlek is not None
    return platform.vlek


def signed(report: AttestationReport, key: ec.EllipticCurvePrivateKey) -> AttestationReport:
    r, s = decode_dss_signature(key.sign(report.signed_region, ec.ECDSA(hashes.SHA384())))
    return report.with_signature(encode_signature(r, s))


def reason(report: AttestationReport, signer: x509.Certificate, **kwargs: object) -> str:
    with pytest.raises(QuoteVerificationError) as e:
        verify_report(report, vcek=signer, **kwargs)  # type: ignore[arg-type]
    return e.value.reason


def test_the_simulated_vlek_names_a_csp_and_no_chip(platform: _simulated_pki.SimulatedPki) -> None:
    vlek = vlek_of(platform)
    extensions = vcek_extensions(vlek.vlek)
    assert extensions.csp_id == _simulated_pki.CSP_ID and extensions.hwid is None
    assert extensions.tcb() == vcek_extensions(platform.vcek).tcb()
    vlek.asvk.verify_directly_issued_by(platform.ark)
    vlek.vlek.verify_directly_issued_by(vlek.asvk)


def test_a_vlek_signed_report_verifies_through_the_asvk(
    vlek_backend: SimulatedSnpBackend, platform: _simulated_pki.SimulatedPki
) -> None:
    report = parse_report(vlek_backend.get_quote(bytes(64)))
    assert report.signing_key == SIGNING_KEY_VLEK
    vlek = vlek_of(platform)
    assert verify_report(report, vcek=vlek.vlek, ask=vlek.asvk, options=sim(platform)) == report
    # Through the ASK instead, the chain is broken, and the message says which signs a VLEK.
    with pytest.raises(QuoteVerificationError, match="signed by the ASVK, not the ASK") as e:
        verify_report(report, vcek=vlek.vlek, ask=platform.ask, options=sim(platform))
    assert e.value.reason == "vcek_chain_invalid"


def test_the_pinned_intermediate_is_chosen_by_the_reports_signing_key(
    monkeypatch: pytest.MonkeyPatch,
    vlek_backend: SimulatedSnpBackend,
    platform: _simulated_pki.SimulatedPki,
) -> None:
    """With no ASK given, a VLEK-signed report takes the pinned ASVK and a VCEK one the ASK."""
    vlek = vlek_of(platform)
    monkeypatch.setattr(verify, "amd_ask", lambda product: platform.ask)
    monkeypatch.setattr(verify, "amd_asvk", lambda product: vlek.asvk)
    by_vlek = parse_report(vlek_backend.get_quote(bytes(64)))
    verify_report(by_vlek, vcek=vlek.vlek, options=sim(platform))
    by_vcek = signed(dataclasses.replace(by_vlek, signer_info=0), platform.vcek_key)
    verify_report(by_vcek, vcek=platform.vcek, options=sim(platform))


def test_a_vlek_given_for_a_vcek_signed_report_is_a_signing_key_mismatch(
    vlek_backend: SimulatedSnpBackend, platform: _simulated_pki.SimulatedPki
) -> None:
    vlek = vlek_of(platform)
    by_vlek = parse_report(vlek_backend.get_quote(bytes(64)))
    # Signed by the VLEK's own key, so only the SIGNING_KEY field says VCEK.
    by_vcek = signed(dataclasses.replace(by_vlek, signer_info=0), vlek.vlek_key)
    for ask in (vlek.asvk, platform.ask, None):
        assert reason(by_vcek, vlek.vlek, ask=ask, options=sim(platform)) == "signing_key_mismatch"
    with pytest.raises(QuoteVerificationError, match=r"names a VCEK.*is a VLEK"):
        verify_report(by_vcek, vcek=vlek.vlek, ask=vlek.asvk, options=sim(platform))


def test_a_vcek_given_for_a_vlek_signed_report_is_a_signing_key_mismatch(
    vlek_backend: SimulatedSnpBackend, platform: _simulated_pki.SimulatedPki
) -> None:
    by_vlek = parse_report(vlek_backend.get_quote(bytes(64)))
    resigned = signed(by_vlek, platform.vcek_key)  # the VCEK's signature, the field says VLEK
    for ask in (platform.ask, None):
        assert reason(resigned, platform.vcek, ask=ask, options=sim(platform)) == (
            "signing_key_mismatch"
        )
    with pytest.raises(QuoteVerificationError, match=r"names a VLEK.*is a VCEK"):
        verify_report(resigned, vcek=platform.vcek, ask=platform.ask, options=sim(platform))


def test_a_report_that_names_no_signing_key_is_a_mismatch_for_either_kind(
    vlek_backend: SimulatedSnpBackend, platform: _simulated_pki.SimulatedPki
) -> None:
    unsigned = parse_report(vlek_backend.get_quote(bytes(64)))
    report = dataclasses.replace(unsigned, signer_info=7 << 2)
    vlek = vlek_of(platform)
    assert reason(report, vlek.vlek, ask=vlek.asvk, options=sim(platform)) == "signing_key_mismatch"
    assert reason(report, platform.vcek, ask=platform.ask, options=sim(platform)) == (
        "signing_key_mismatch"
    )


# -- the simulated backend, its table and the agent's chain ------------------------


def test_the_vlek_backend_ships_the_vlek_chain(
    vlek_backend: SimulatedSnpBackend, platform: _simulated_pki.SimulatedPki
) -> None:
    vlek = vlek_of(platform)
    report, table = vlek_backend.get_report_with_certificates(bytes(64))
    entries = parse_cert_table(table)
    assert set(entries) == {"vlek", "ask", "ark"}
    attestation = vlek_backend.attest(bytes(64))
    ders = tuple(c.public_bytes(Encoding.DER) for c in (vlek.vlek, vlek.asvk, platform.ark))
    assert attestation.certificates == ders
    assert signing_key_of(report) == SIGNING_KEY_VLEK


def test_the_signing_key_is_not_kept_and_the_vlek_is(
    vlek_backend: SimulatedSnpBackend, platform: _simulated_pki.SimulatedPki
) -> None:
    state = vlek_backend.state_directory.parent.parent
    by_vcek = SimulatedSnpBackend.open(state)
    assert parse_report(by_vcek.get_quote(bytes(64))).signing_key == SIGNING_KEY_VCEK
    assert "vcek" in parse_cert_table(by_vcek.certificate_table())
    again = SimulatedSnpBackend.open(state, SimulatedSnpMeasurements(signing_key="vlek"))
    vlek_der = vlek_of(platform).vlek.public_bytes(Encoding.DER)
    assert parse_cert_table(again.certificate_table())["vlek"] == vlek_der
    launch = json.loads((vlek_backend.state_directory / "launch.json").read_text())
    assert "signing_key" not in launch["launch"]


def test_a_fresh_state_makes_its_vlek_on_first_use(tmp_path: Path) -> None:
    # As the agent opens it from [tee.simulated] signing_key = "vlek".
    config = parse_config(
        {"tee": {"backend": "simulated-snp", "simulated": {"signing_key": "vlek"}}},
        base_dir=tmp_path,
    )
    assert config.tee.simulated.values == {"signing_key": "vlek"}
    backend = open_backend(
        "simulated-snp", tmp_path, simulated_measurements=config.tee.simulated.values
    )
    assert isinstance(backend, SimulatedSnpBackend)
    raw, table = backend.get_report_with_certificates(bytes(64))
    chain = CertChain.from_raw_table(table, SIGNING_KEY_VLEK)
    assert chain.signer is not None and chain.ask is not None
    options = VerifyOptions(now=VECTORS_NOW, trusted_arks=[backend.trust_root()])
    signer, asvk = load_certificate(chain.signer), load_certificate(chain.ask)
    verify_report(raw, vcek=signer, ask=asvk, options=options)
    assert (backend.state_directory / "vlek.key.pem").stat().st_mode & 0o777 == 0o600


def test_an_unknown_signing_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="vcek, vlek"):
        SimulatedSnpMeasurements(signing_key="ask")
    for backend, value in (
        ("simulated-snp", "ask"),
        ("simulated-snp", 1),
        ("simulated-tdx", "vlek"),
    ):
        raw = {"tee": {"backend": backend, "simulated": {"signing_key": value}}}
        with pytest.raises(ConfigError, match=r"config\.tee\.simulated\.signing_key"):
            parse_config(raw, base_dir=tmp_path)


# -- attestctl quote verify --vcek VLEK.der --------------------------------------------


def test_attestctl_quote_verify_takes_a_vlek(
    vlek_backend: SimulatedSnpBackend,
    platform: _simulated_pki.SimulatedPki,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    vlek = vlek_of(platform)
    raw, table = vlek_backend.get_report_with_certificates(bytes(64))
    (tmp_path / "report.bin").write_bytes(raw)
    (tmp_path / "certs.bin").write_bytes(table)
    (tmp_path / "vlek.der").write_bytes(vlek.vlek.public_bytes(Encoding.DER))
    (tmp_path / "vcek.der").write_bytes(platform.vcek.public_bytes(Encoding.DER))
    (tmp_path / "ark.pem").write_bytes(vlek_backend.trust_root_pem())
    (tmp_path / "asvk_ark.pem").write_bytes(
        b"".join(c.public_bytes(Encoding.PEM) for c in (vlek.asvk, platform.ark))
    )
    now = ("--now", "2025-06-01T00:00:00Z")

    def verify_with(*argv: str | Path) -> tuple[int, dict[str, object]]:
        code = main(["quote", "verify", str(tmp_path / "report.bin"), *map(str, argv), *now])
        return code, json.loads(capsys.readouterr().out)

    code, out = verify_with("--vcek", tmp_path / "vlek.der", "--root", tmp_path / "asvk_ark.pem")
    assert (code, out["valid"]) == (EXIT_OK, True), out
    code, out = verify_with("--certs", tmp_path / "certs.bin", "--root", tmp_path / "ark.pem")
    assert (code, out["valid"]) == (EXIT_OK, True), out
    code, out = verify_with("--vcek", tmp_path / "vcek.der", "--root", tmp_path / "ark.pem")
    assert (code, out["reason"]) == (EXIT_NOT_AFFIRMING, "signing_key_mismatch"), out


# -- the certificate table and the KDS ---------------------------------------------


def test_the_table_entry_is_the_one_the_report_names(platform: _simulated_pki.SimulatedPki) -> None:
    vlek = vlek_of(platform)
    der = {
        "vcek": platform.vcek.public_bytes(Encoding.DER),
        "vlek": vlek.vlek.public_bytes(Encoding.DER),
    }
    table = parse_cert_table(build_cert_table(der))
    assert CertChain.from_table(table, SIGNING_KEY_VLEK).signer == der["vlek"]
    assert CertChain.from_table(table, SIGNING_KEY_VCEK).signer == der["vcek"]
    assert CertChain.from_table(table).signer == der["vcek"]  # no report: the VCEK, as before
    assert CertChain.from_table({"vcek": b"x"}, SIGNING_KEY_VLEK).signer is None
    assert signing_key_of(bytes(0x40)) is None


def test_a_vlek_comes_from_the_table_or_store_and_never_from_the_kds(
    vlek_backend: SimulatedSnpBackend,
    platform: _simulated_pki.SimulatedPki,
    kds: FakeKds,
    tmp_path: Path,
) -> None:
    raw, table = vlek_backend.get_report_with_certificates(bytes(64))
    report = parse_report(raw)
    source = VcekSource(offline_store=tmp_path, kds_base_url=kds.url, cache_dir=tmp_path / "c")
    found = get_vcek(report, "Milan", source, certificate_table=table)
    assert found == vlek_of(platform).vlek
    with pytest.raises(VcekUnavailableError, match="KDS does not serve") as e:
        get_vcek(report, "Milan", source)
    assert "a8074bc2-a25a-483e-aae6-39c045a0b8a1" in e.value.message
    assert str(tmp_path) in e.value.message
    assert e.value.reason == "vcek_unavailable"
    assert kds.paths == []
