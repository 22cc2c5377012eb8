"""The simulated PKI issues DCAP collateral that dcap-qvl accepts under the simulated root only."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import dcap_qvl
import pytest
from cryptography import x509

from attestd.tee.tdx import _simulated_pki as pki
from attestd.tee.tdx.abi import parse_quote
from attestd.tee.tdx.collateral import Collateral
from attestd.tee.tdx.dcap import DcapOptions, DcapVerificationError, verify_with_collateral
from attestd.tee.tdx.simulated import SimulatedTdMeasurements, SimulatedTdxBackend

from .conftest import VECTORS_NOW

NONCE = hashlib.sha512(b"collateral").digest()
LATER = datetime(2030, 1, 1, tzinfo=UTC)


def seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def test_pck_extension_has_intels_shape(simulated: SimulatedTdxBackend, vectors_dir: Path) -> None:
    real = dcap_qvl.parse_quote((vectors_dir / "tdx" / "dcapqvl_quote_v4.bin").read_bytes())
    real_ext = real.pck_extension()
    quote = dcap_qvl.parse_quote(simulated.get_quote(NONCE))
    ext = quote.pck_extension()
    assert real_ext is not None and ext is not None
    tcb = pki.PLATFORM_TCB
    assert (ext.fmspc, ext.cpu_svn, ext.pce_svn, ext.pce_id) == (
        tcb.fmspc,
        tcb.cpu_svn,
        tcb.pce_svn,
        tcb.pce_id,
    )
    assert (ext.ppid, ext.platform_instance_id) == (tcb.ppid, tcb.platform_instance_id)
    assert ext.sgx_type == real_ext.sgx_type == 1
    assert quote.fmspc() == tcb.fmspc.hex().upper()
    assert quote.ca() == real.ca() == "platform"
    for oid in ("1.2.840.113741.1.13.1.2.17", "1.2.840.113741.1.13.1.7.1"):
        assert ext.get_value(oid) is not None and real_ext.get_value(oid) is not None


def test_simulated_quote_passes_dcap_qvl_with_the_simulated_root(
    simulated: SimulatedTdxBackend,
) -> None:
    raw = simulated.get_quote(NONCE)
    for now in (VECTORS_NOW, LATER):
        report = dcap_qvl.verify_with_root_ca(
            raw, simulated.collateral(), simulated.trust_root_der(), seconds(now)
        )
        assert (report.status, report.advisory_ids) == ("UpToDate", [])
    result = verify_with_collateral(
        raw, simulated.collateral(), DcapOptions(LATER, simulated.trust_root())
    )
    assert result.status == "UpToDate" and result.up_to_date


def test_simulated_quote_is_refused_under_intels_root(simulated: SimulatedTdxBackend) -> None:
    raw = simulated.get_quote(NONCE)
    with pytest.raises(ValueError, match="root CA CRL"):
        dcap_qvl.verify(raw, simulated.collateral(), seconds(VECTORS_NOW))
    with pytest.raises(DcapVerificationError) as e:
        verify_with_collateral(raw, simulated.collateral(), DcapOptions(VECTORS_NOW))
    assert e.value.reason == "untrusted_root"


def test_collateral_json_is_dcap_qvl_format_like_the_vector(
    simulated: SimulatedTdxBackend, vectors_dir: Path
) -> None:
    vector = json.loads((vectors_dir / "tdx" / "dcapqvl_quote_v4.collateral.json").read_text())
    ours = json.loads(simulated.collateral_json())
    assert set(ours) == set(vector)
    assert json.loads(simulated.collateral().to_json()) == ours
    tcb_info = json.loads(ours["tcb_info"])
    assert (tcb_info["id"], tcb_info["version"]) == ("TDX", 3)
    assert tcb_info["fmspc"] == pki.PLATFORM_TCB.fmspc.hex().upper()
    assert tcb_info["tcbLevels"][0]["tcbStatus"] == "UpToDate"
    assert set(tcb_info) >= {"tdxModule", "tdxModuleIdentities", "tcbLevels", "nextUpdate"}
    signer = x509.load_pem_x509_certificates(ours["tcb_info_issuer_chain"].encode())
    assert "TCB Signing" in signer[0].subject.rfc4514_string()
    assert "NOT INTEL" in signer[0].subject.rfc4514_string()
    assert signer[-1] == simulated.trust_root()
    assert Collateral.from_mapping(ours).next_update == pki.NOT_VALID_AFTER


def test_qe_identity_names_the_quoting_enclave(simulated: SimulatedTdxBackend) -> None:
    qe_report = parse_quote(simulated.get_quote(NONCE)).certification_data.qe_report
    identity = json.loads(json.loads(simulated.collateral_json())["qe_identity"])
    assert identity["id"] == "TD_QE"
    assert bytes.fromhex(identity["mrsigner"]) == qe_report.mr_signer
    assert identity["isvprodid"] == qe_report.isv_prod_id
    mask = bytes.fromhex(identity["attributesMask"])
    masked = bytes(a & m for a, m in zip(qe_report.attributes, mask, strict=True))
    assert masked == bytes.fromhex(identity["attributes"])
    assert identity["tcbLevels"][0]["tcb"]["isvsvn"] <= qe_report.isv_svn


def test_collateral_is_issued_once_per_state_directory(tmp_path: Path) -> None:
    first = SimulatedTdxBackend.open(tmp_path).collateral_json()
    assert SimulatedTdxBackend.open(tmp_path).collateral_json() == first
    assert (tmp_path / "tee" / "simulated-tdx" / pki.COLLATERAL_FILE).is_file()


def test_a_state_made_before_collateral_is_upgraded(tmp_path: Path) -> None:
    """An old state: a PCK leaf without the SGX extension and no collateral.json."""
    state = tmp_path / "tee" / "simulated-tdx"
    state.mkdir(parents=True, mode=0o700)
    old = pki.generate()
    bare = pki._certificate(
        pki.PCK_NAME, old.pck_key, old.platform_ca, old.platform_ca_key, None, False
    )
    pki.save(dataclasses.replace(old, pck=bare), state)
    backend = SimulatedTdxBackend.open(tmp_path)
    raw = backend.get_quote(NONCE)
    assert pki.has_sgx_extension(parse_quote(raw).pck_chain()[0])
    assert backend.trust_root() == old.root_ca
    result = verify_with_collateral(
        raw, backend.collateral(), DcapOptions(LATER, backend.trust_root())
    )
    assert result.status == "UpToDate"


def test_a_lower_tdx_tcb_is_out_of_date(tmp_path: Path) -> None:
    backend = SimulatedTdxBackend.open(tmp_path, SimulatedTdMeasurements(tee_tcb_svn=bytes(16)))
    raw = backend.get_quote(NONCE)
    result = verify_with_collateral(
        raw, backend.collateral(), DcapOptions(LATER, backend.trust_root())
    )
    assert result.status == "OutOfDate"
    assert result.advisory_ids == ("ATTESTD-SIMULATED-SA-0001",)


@pytest.mark.parametrize("status", ["SWHardeningNeeded", "ConfigurationAndSWHardeningNeeded"])
def test_issued_tcb_status_comes_back(simulated: SimulatedTdxBackend, status: str) -> None:
    platform = pki.load(simulated.state_directory)
    collateral = pki.issue_collateral(
        platform, issue_date=pki.NOT_VALID_BEFORE, next_update=LATER, tcb_status=status
    )
    result = verify_with_collateral(
        simulated.get_quote(NONCE),
        Collateral.from_mapping(collateral),
        DcapOptions(VECTORS_NOW, simulated.trust_root()),
    )
    assert result.status == status
