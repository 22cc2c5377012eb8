"""The simulated SEV-SNP guest: hardware-exact reports that only its own ARK vouches for."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from attestd.tee.backend import TeeBackend, TeeType
from attestd.tee.errors import (
    DeviceError,
    InvalidArgumentError,
    QuoteVerificationError,
    TeeUnavailableError,
)
from attestd.tee.snp.abi import MILAN, parse_cert_table, parse_report
from attestd.tee.snp.simulated import (
    MEASUREMENT_DEFAULTS,
    SimulatedSnpBackend,
    SimulatedSnpMeasurements,
)
from attestd.tee.snp.verify import (
    VerifyOptions,
    load_certificate,
    vcek_extensions,
    verify_report,
)

from .conftest import VECTORS_NOW, RealReport

REPORT_DATA = bytes(range(64))


def chain(table: bytes) -> dict[str, x509.Certificate]:
    return {kind: load_certificate(der) for kind, der in parse_cert_table(table).items()}


def reopened(
    simulated: SimulatedSnpBackend, tmp_path: Path, **values: object
) -> SimulatedSnpBackend:
    """A copy of the shared guest's state, opened afresh (no new RSA keys)."""
    shutil.copytree(simulated.state_directory, tmp_path / "tee" / "simulated-snp")
    return SimulatedSnpBackend.open(tmp_path, SimulatedSnpMeasurements(**values))  # type: ignore[arg-type]


def test_describes_itself_as_simulated_snp(simulated: SimulatedSnpBackend) -> None:
    assert isinstance(simulated, TeeBackend)
    description = simulated.describe()
    assert description.tee is TeeType.SEV_SNP
    assert description.simulated
    assert description.root_of_trust == "attestd-simulated-amd-ark"
    assert description.backend == "simulated-snp"


def test_has_no_runtime_register(simulated: SimulatedSnpBackend) -> None:
    assert simulated.read_runtime_register() is None
    with pytest.raises(TeeUnavailableError, match="no runtime measurement register"):
        simulated.extend_runtime_register(bytes(48))


def test_reports_are_hardware_exact_version_3(simulated: SimulatedSnpBackend) -> None:
    raw, table = simulated.get_report_with_certificates(REPORT_DATA)
    assert len(raw) == 1184
    report = parse_report(raw)
    assert report.to_bytes() == raw
    assert (report.version, report.product, report.report_data) == (3, MILAN, REPORT_DATA)
    assert report.measurement == MEASUREMENT_DEFAULTS["measurement"]
    assert not report.guest_policy.debug and not report.guest_policy.migrate_ma
    assert report.reported_tcb == report.current_tcb == report.committed_tcb == report.launch_tcb
    assert report.chip_id == vcek_extensions(chain(table)["vcek"]).hwid
    assert table == simulated.certificate_table()


def test_reports_verify_under_the_simulated_ark_only(simulated: SimulatedSnpBackend) -> None:
    raw, table = simulated.get_report_with_certificates(REPORT_DATA)
    certs = chain(table)
    own = VerifyOptions(now=VECTORS_NOW, trusted_arks=[simulated.trust_root()])
    report = verify_report(raw, vcek=certs["vcek"], ask=certs["ask"], ark=certs["ark"], options=own)
    assert report.report_data == REPORT_DATA
    amd = VerifyOptions(now=VECTORS_NOW)
    for ark in (certs["ark"], None):
        with pytest.raises(QuoteVerificationError) as e:
            verify_report(raw, vcek=certs["vcek"], ask=certs["ask"], ark=ark, options=amd)
        assert e.value.reason == "untrusted_root"


def test_the_real_report_is_untrusted_under_the_simulated_ark(
    real: RealReport, simulated: SimulatedSnpBackend
) -> None:
    options = VerifyOptions(now=VECTORS_NOW, trusted_arks=[simulated.trust_root()])
    with pytest.raises(QuoteVerificationError) as e:
        verify_report(real.raw, vcek=real.vcek, options=options)
    assert e.value.reason == "untrusted_root"


def test_trust_root_is_a_self_signed_rsa_4096_ark(simulated: SimulatedSnpBackend) -> None:
    ark = x509.load_pem_x509_certificate(simulated.trust_root_pem())
    assert ark == simulated.trust_root()
    assert ark.subject == ark.issuer and "NOT AMD" in ark.subject.rfc4514_string()
    key = ark.public_key()
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 4096


def test_report_data_must_be_64_bytes(simulated: SimulatedSnpBackend) -> None:
    for bad in (b"", bytes(63), bytes(65)):
        with pytest.raises(InvalidArgumentError):
            simulated.get_quote(bad)


def test_state_is_private(simulated: SimulatedSnpBackend) -> None:
    directory = simulated.state_directory
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in ("ark.key.pem", "ask.key.pem", "vcek.key.pem", "launch.json"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600


def test_measurements_are_imposed_and_persist(
    simulated: SimulatedSnpBackend, tmp_path: Path
) -> None:
    backend = reopened(simulated, tmp_path, measurement=b"\x11" * 48, host_data=b"\x22" * 32)
    assert backend.trust_root() == simulated.trust_root()  # same PKI, not regenerated
    report = parse_report(backend.get_quote(REPORT_DATA))
    assert (report.measurement, report.host_data) == (b"\x11" * 48, b"\x22" * 32)
    again = parse_report(SimulatedSnpBackend.open(tmp_path).get_quote(REPORT_DATA))
    assert again.measurement == b"\x11" * 48
    assert again.report_id == report.report_id
    policy = reopened(simulated, tmp_path / "p", policy=0x30000 | 1 << 19, guest_svn=7)
    debug = parse_report(policy.get_quote(REPORT_DATA))
    assert debug.guest_policy.debug and debug.guest_svn == 7


@pytest.mark.parametrize(
    "values",
    [
        {"measurement": bytes(47)},
        {"host_data": "00" * 32},
        {"policy": 0},
        {"policy": 0x30000 | 1 << 40},
        {"guest_svn": -1},
        {"guest_svn": True},
    ],
)
def test_bad_measurements_are_refused(values: dict[str, object]) -> None:
    with pytest.raises(InvalidArgumentError):
        SimulatedSnpMeasurements(**values)  # type: ignore[arg-type]


def test_damaged_launch_state_is_a_device_error(
    simulated: SimulatedSnpBackend, tmp_path: Path
) -> None:
    backend = reopened(simulated, tmp_path)
    launch = backend.state_directory / "launch.json"
    document = json.loads(launch.read_text())
    document["launch"]["measurement"] = "00"
    launch.write_text(json.dumps(document))
    with pytest.raises(DeviceError, match="damaged"):
        SimulatedSnpBackend.open(tmp_path)
    launch.write_text("{")
    with pytest.raises(DeviceError, match="unreadable"):
        SimulatedSnpBackend.open(tmp_path)
    (backend.state_directory / "ask.pem").write_text("not a certificate")
    with pytest.raises(DeviceError, match="PKI"):
        SimulatedSnpBackend.open(tmp_path)


def test_attest_gives_the_report_and_its_chain_signer_first(
    simulated: SimulatedSnpBackend,
) -> None:
    attestation = simulated.attest(REPORT_DATA)
    assert parse_report(attestation.quote).report_data == REPORT_DATA
    table = parse_cert_table(simulated.certificate_table())
    assert attestation.certificates == (table["vcek"], table["ask"], table["ark"])
    assert attestation.collateral is None and attestation.ccel is None
