"""The simulated TD: hardware-shaped quotes from a simulated root, and registers that persist."""

from __future__ import annotations

import hashlib
import json
import stat
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import dcap_qvl
import pytest

from attestd.tee.backend import TeeBackend, TeeDescription, TeeType
from attestd.tee.errors import DeviceError, InvalidArgumentError, QuoteVerificationError
from attestd.tee.tdx.abi import parse_quote
from attestd.tee.tdx.simulated import (
    MEASUREMENT_DEFAULTS,
    SimulatedTdMeasurements,
    SimulatedTdxBackend,
)
from attestd.tee.tdx.verify import VerifyOptions, intel_sgx_root_ca, verify_quote

from .conftest import VECTORS_NOW
from .test_abi import assert_matches_dcap_qvl

NOW = datetime.now(UTC)
NONCE = hashlib.sha512(b"report data").digest()


def state_of(tmp_path: Path) -> Path:
    return tmp_path / "tee" / "simulated-tdx"


def test_describes_itself_as_simulated_tdx(simulated: SimulatedTdxBackend) -> None:
    assert isinstance(simulated, TeeBackend)
    assert simulated.describe() == TeeDescription(
        tee=TeeType.TDX,
        simulated=True,
        root_of_trust="attestd-simulated-tdx-root",
        backend="simulated-tdx",
    )


def test_quote_is_a_byte_exact_v4_quote_that_dcap_qvl_reads(simulated: SimulatedTdxBackend) -> None:
    raw = simulated.get_quote(NONCE)
    quote = parse_quote(raw)
    assert quote.to_bytes() == raw
    assert quote.header.version == 4
    assert quote.body.report_data == NONCE
    assert_matches_dcap_qvl(quote, raw)
    assert dcap_qvl.parse_quote(raw).is_tdx()


def test_quote_verifies_with_the_simulated_root_only(simulated: SimulatedTdxBackend) -> None:
    raw = simulated.get_quote(NONCE)
    verify_quote(raw, VerifyOptions([simulated.trust_root()], NOW))
    verify_quote(raw, VerifyOptions([simulated.trust_root()], VECTORS_NOW))
    with pytest.raises(QuoteVerificationError) as e:
        verify_quote(raw, VerifyOptions([intel_sgx_root_ca()], NOW))
    assert e.value.reason == "untrusted_root"


def test_every_certificate_says_it_is_not_intel(simulated: SimulatedTdxBackend) -> None:
    chain = parse_quote(simulated.get_quote(NONCE)).pck_chain()
    assert len(chain) == 3
    assert chain[-1] == simulated.trust_root()
    for cert in chain:
        assert "NOT INTEL" in cert.subject.rfc4514_string()
    pem = simulated.trust_root_pem()
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert parse_quote(simulated.get_quote(NONCE)).certification_data.pck_chain_pem.endswith(pem)


@pytest.mark.parametrize("report_data", [b"", bytes(63), bytes(65), "x" * 64])
def test_report_data_must_be_64_bytes(simulated: SimulatedTdxBackend, report_data: bytes) -> None:
    with pytest.raises(InvalidArgumentError, match="64 bytes"):
        simulated.get_quote(report_data)


def test_defaults_are_deterministic_and_debug_is_off(tmp_path: Path) -> None:
    body = parse_quote(SimulatedTdxBackend.open(tmp_path).get_quote(NONCE)).body
    assert body.mr_td == hashlib.sha384(b"attestd simulated TD").digest()
    assert body.rtmrs[3] == bytes(48)
    assert body.debug is False
    assert body.td_attributes == MEASUREMENT_DEFAULTS["td_attributes"]
    other = parse_quote(SimulatedTdxBackend.open(tmp_path / "other").get_quote(NONCE)).body
    assert other == body


def test_rtmr3_extends_like_hardware_and_survives_reopen(tmp_path: Path) -> None:
    backend = SimulatedTdxBackend.open(tmp_path)
    d1, d2 = hashlib.sha384(b"event 1").digest(), hashlib.sha384(b"event 2").digest()
    backend.extend_runtime_register(d1)
    backend.extend_runtime_register(d2)
    expected = hashlib.sha384(hashlib.sha384(bytes(48) + d1).digest() + d2).digest()
    assert backend.read_runtime_register() == expected

    reopened = SimulatedTdxBackend.open(tmp_path)
    assert reopened.read_runtime_register() == expected
    assert parse_quote(reopened.get_quote(NONCE)).body.rtmrs[3] == expected
    assert reopened.trust_root_pem() == backend.trust_root_pem()


def test_concurrent_extends_through_two_openings_lose_nothing(tmp_path: Path) -> None:
    backends = [SimulatedTdxBackend.open(tmp_path) for _ in range(2)]
    digest = hashlib.sha384(b"same event").digest()
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda i: backends[i % 2].extend_runtime_register(digest), range(40)))
    expected = bytes(48)
    for _ in range(40):
        expected = hashlib.sha384(expected + digest).digest()
    assert backends[0].read_runtime_register() == backends[1].read_runtime_register() == expected


def test_each_rtmr_extends_on_its_own(tmp_path: Path) -> None:
    backend = SimulatedTdxBackend.open(tmp_path)
    before = backend.rtmrs()
    digest = hashlib.sha384(b"boot component").digest()
    backend.extend_rtmr(1, digest)
    after = backend.rtmrs()
    assert after[1] == hashlib.sha384(before[1] + digest).digest()
    assert (after[0], after[2], after[3]) == (before[0], before[2], before[3])
    assert parse_quote(backend.get_quote(NONCE)).body.rtmrs == after


@pytest.mark.parametrize(("index", "digest"), [(4, bytes(48)), (-1, bytes(48)), (3, bytes(32))])
def test_bad_extensions_are_refused(tmp_path: Path, index: int, digest: bytes) -> None:
    backend = SimulatedTdxBackend.open(tmp_path)
    with pytest.raises(InvalidArgumentError):
        backend.extend_rtmr(index, digest)
    assert backend.read_runtime_register() == bytes(48)


def test_given_measurements_override_and_persist(tmp_path: Path) -> None:
    mr_td = hashlib.sha384(b"my TD image").digest()
    attributes = bytes(8)
    backend = SimulatedTdxBackend.open(
        tmp_path, SimulatedTdMeasurements(mr_td=mr_td, td_attributes=attributes)
    )
    backend.extend_runtime_register(hashlib.sha384(b"e").digest())
    body = parse_quote(SimulatedTdxBackend.open(tmp_path).get_quote(NONCE)).body
    assert (body.mr_td, body.td_attributes) == (mr_td, attributes)
    assert body.mr_seam == MEASUREMENT_DEFAULTS["mr_seam"]

    rtmr0 = hashlib.sha384(b"firmware").digest()
    reopened = SimulatedTdxBackend.open(tmp_path, SimulatedTdMeasurements(rtmr0=rtmr0))
    body = parse_quote(reopened.get_quote(NONCE)).body
    assert (body.mr_td, body.rtmrs[0]) == (mr_td, rtmr0)
    assert body.rtmrs[3] == hashlib.sha384(bytes(48) + hashlib.sha384(b"e").digest()).digest()


def test_measurements_of_the_wrong_size_are_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="mr_td must be 48 bytes"):
        SimulatedTdMeasurements(mr_td=bytes(32))


def test_state_directory_is_private(tmp_path: Path) -> None:
    SimulatedTdxBackend.open(tmp_path).extend_runtime_register(bytes(48))
    state = state_of(tmp_path)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    keys = ["attestation_key.pem", "pck.key.pem", "platform_ca.key.pem", "root_ca.key.pem"]
    assert sorted(p.name for p in state.iterdir() if p.name.endswith("key.pem")) == keys
    for name in [*keys, "registers.bin"]:
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
    assert not list(state.glob(".*.tmp"))


def test_damaged_registers_are_a_device_error(tmp_path: Path) -> None:
    SimulatedTdxBackend.open(tmp_path)
    (state_of(tmp_path) / "registers.bin").write_bytes(b"not registers")
    with pytest.raises(DeviceError, match="registers"):
        SimulatedTdxBackend.open(tmp_path)


def test_damaged_keys_are_a_device_error(tmp_path: Path) -> None:
    SimulatedTdxBackend.open(tmp_path)
    (state_of(tmp_path) / "pck.key.pem").write_bytes(b"garbage")
    with pytest.raises(DeviceError, match="PKI"):
        SimulatedTdxBackend.open(tmp_path)


def test_attest_ships_the_collateral_and_no_ccel(simulated: SimulatedTdxBackend) -> None:
    attestation = simulated.attest(bytes(range(64)))
    assert parse_quote(attestation.quote).body.report_data == bytes(range(64))
    assert attestation.collateral == json.loads(simulated.collateral_json())
    assert attestation.certificates == () and attestation.ccel is None


def test_attest_reports_the_runtime_register_its_quote_carries(
    simulated: SimulatedTdxBackend,
) -> None:
    # attest() names the quote's RTMR3 without parsing the quote back: it must be the
    # register as quoted, which after an extension is the new value, not a stale one.
    for content in (b"first", b"second"):
        simulated.extend_runtime_register(hashlib.sha384(content).digest())
        attestation = simulated.attest(bytes(64))
        quoted = parse_quote(attestation.quote).body.rtmrs[3]  # the runtime-log RTMR
        assert attestation.runtime_register == quoted == simulated.read_runtime_register()
