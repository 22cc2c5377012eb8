"""The TDX caches honour every expiry and CRL date, key on the roots, and change no result."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dcap_qvl
import pytest

from attestd.tee import _cache
from attestd.tee.errors import QuoteVerificationError
from attestd.tee.tdx import _simulated_pki as pki
from attestd.tee.tdx import dcap as dcap_module
from attestd.tee.tdx import verify as verify_module
from attestd.tee.tdx.abi import parse_quote
from attestd.tee.tdx.collateral import Collateral
from attestd.tee.tdx.dcap import DcapOptions, DcapVerificationError, verify_with_collateral
from attestd.tee.tdx.simulated import SimulatedTdxBackend
from attestd.tee.tdx.verify import VerifyOptions, intel_sgx_root_ca, verify_quote

from .conftest import VECTORS_NOW

EXPIRED_NOW = datetime(2026, 11, 23, tzinfo=UTC)  # the vector's CRLs expired in April 2026


@pytest.fixture(autouse=True)
def empty_caches() -> Iterator[None]:
    _cache.clear_all()
    yield
    _cache.clear_all()


@pytest.fixture(scope="module")
def vector(vectors_dir: Path) -> tuple[bytes, Collateral]:
    tdx = vectors_dir / "tdx"
    raw = (tdx / "dcapqvl_quote_v4.bin").read_bytes()
    return raw, Collateral.from_json((tdx / "dcapqvl_quote_v4.collateral.json").read_bytes())


def reason(call: Any) -> str:
    with pytest.raises(QuoteVerificationError) as e:
        call()
    return e.value.reason


# -- the PCK chain -----------------------------------------------------------------------


def test_a_cached_chain_is_refused_past_a_certificates_not_after(
    vector: tuple[bytes, Collateral],
) -> None:
    raw, _ = vector
    quote = parse_quote(raw)
    verify_quote(quote, VerifyOptions([intel_sgx_root_ca()], VECTORS_NOW))
    assert len(verify_module._PCK_CHAINS) == 1
    leaf_end = min(c.not_valid_after_utc for c in quote.pck_chain())
    late = VerifyOptions([intel_sgx_root_ca()], leaf_end + timedelta(seconds=1))
    assert reason(lambda: verify_quote(quote, late)) == "certificate_expired"


def test_a_chain_verified_under_the_simulated_root_is_not_served_for_intels(
    simulated: SimulatedTdxBackend,
) -> None:
    quote = parse_quote(simulated.get_quote(bytes(64)))
    now = datetime.now(UTC)
    verify_quote(quote, VerifyOptions([simulated.trust_root()], now))
    intel = VerifyOptions([intel_sgx_root_ca()], now)
    assert reason(lambda: verify_quote(quote, intel)) == "untrusted_root"


def test_a_cached_chain_still_checks_each_quotes_signature(simulated: SimulatedTdxBackend) -> None:
    options = VerifyOptions([simulated.trust_root()], datetime.now(UTC))
    verify_quote(simulated.get_quote(bytes(64)), options)
    forged = bytearray(simulated.get_quote(bytes(64)))
    forged[48 + 520] ^= 1  # REPORTDATA, under a signature made for other bytes
    assert reason(lambda: verify_quote(bytes(forged), options)) == "quote_signature_invalid"


def test_the_caches_stay_within_their_bounds(simulated: SimulatedTdxBackend) -> None:
    options = VerifyOptions([simulated.trust_root()], datetime.now(UTC))
    for cache in (verify_module._PCK_CHAINS, verify_module._SIGNATURES):
        assert cache.maxsize >= 1
    small = _cache.ValidityCache[bytes, bool]("test.small", maxsize=2)
    original = verify_module._SIGNATURES
    verify_module._SIGNATURES = small
    try:
        for i in range(5):
            verify_quote(simulated.get_quote(bytes([i]) * 64), options)
        assert len(small) == 2
    finally:
        verify_module._SIGNATURES = original


# -- dcap-qvl's verdict -------------------------------------------------------------------


def test_a_cached_verdict_is_refused_past_a_crls_next_update(
    vector: tuple[bytes, Collateral],
) -> None:
    raw, collateral = vector
    verify_with_collateral(raw, collateral, DcapOptions(VECTORS_NOW))
    assert len(dcap_module._VERDICTS) == 1
    late = DcapOptions(EXPIRED_NOW)
    assert reason(lambda: verify_with_collateral(raw, collateral, late)) == "collateral_expired"


def test_a_cached_verdict_ends_a_second_before_the_collaterals_next_update(
    simulated: SimulatedTdxBackend,
) -> None:
    platform = pki.load(simulated.state_directory)
    start = datetime.now(UTC).replace(microsecond=0)
    end = start + timedelta(hours=1)
    collateral = Collateral.from_mapping(
        pki.issue_collateral(platform, issue_date=start - timedelta(hours=1), next_update=end)
    )
    assert collateral.validity[1] == end
    raw = simulated.get_quote(bytes(64))
    root = simulated.trust_root()
    verify_with_collateral(raw, collateral, DcapOptions(start, root))
    after = DcapOptions(end + timedelta(seconds=2), root)
    assert reason(lambda: verify_with_collateral(raw, collateral, after)) == "collateral_expired"


def test_a_cached_verdict_serves_other_nonces_without_dcap_qvl(
    simulated: SimulatedTdxBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    collateral = Collateral.from_json(simulated.collateral_json())
    options = DcapOptions(datetime.now(UTC), simulated.trust_root())
    first = verify_with_collateral(simulated.get_quote(bytes(64)), collateral, options)
    calls: list[bytes] = []
    real = dcap_qvl.verify_with_root_ca

    def counting(quote: bytes, *args: object) -> object:
        calls.append(quote)
        return real(quote, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(dcap_qvl, "verify_with_root_ca", counting)
    again = verify_with_collateral(simulated.get_quote(b"\x01" * 64), collateral, options)
    assert again == first
    assert calls == []


def test_a_forged_signature_is_refused_by_dcap_qvl_despite_a_cached_verdict(
    simulated: SimulatedTdxBackend,
) -> None:
    collateral = Collateral.from_json(simulated.collateral_json())
    options = DcapOptions(datetime.now(UTC), simulated.trust_root())
    verify_with_collateral(simulated.get_quote(bytes(64)), collateral, options)
    forged = bytearray(simulated.get_quote(bytes(64)))
    forged[48 + 520] ^= 1
    with pytest.raises(DcapVerificationError) as e:
        verify_with_collateral(bytes(forged), collateral, options)
    assert e.value.reason == "quote_signature_invalid"


def test_a_verdict_under_intels_root_is_not_served_for_the_simulated_root(
    vector: tuple[bytes, Collateral], simulated: SimulatedTdxBackend
) -> None:
    raw, collateral = vector
    verify_with_collateral(raw, collateral, DcapOptions(VECTORS_NOW))
    other = DcapOptions(VECTORS_NOW, simulated.trust_root())
    assert reason(lambda: verify_with_collateral(raw, collateral, other)) == "untrusted_root"


def test_other_collateral_is_not_served_a_cached_verdict(simulated: SimulatedTdxBackend) -> None:
    platform = pki.load(simulated.state_directory)
    now = datetime.now(UTC)
    raw = simulated.get_quote(bytes(64))
    root = simulated.trust_root()
    good = Collateral.from_json(simulated.collateral_json())
    verify_with_collateral(raw, good, DcapOptions(now, root))
    revoked = Collateral.from_mapping(
        pki.issue_collateral(
            platform,
            issue_date=pki.NOT_VALID_BEFORE,
            next_update=pki.NOT_VALID_AFTER,
            tcb_status="Revoked",
        )
    )
    assert reason(lambda: verify_with_collateral(raw, revoked, DcapOptions(now, root))) == (
        "tcb_revoked"
    )


def test_parsed_collateral_is_shared_and_equal_to_a_fresh_parse(
    simulated: SimulatedTdxBackend,
) -> None:
    document = Collateral.from_json(simulated.collateral_json()).to_mapping()
    first, second = Collateral.from_mapping(document), Collateral.from_mapping(dict(document))
    assert first is second
    with _cache.caching(False):
        fresh = Collateral.from_mapping(document)
    assert fresh == first and fresh is not first


# -- parsing: certification data and attestation keys -------------------------------------


def test_a_platforms_certification_data_is_parsed_once_and_equals_a_fresh_parse(
    simulated: SimulatedTdxBackend,
) -> None:
    from attestd.tee.tdx import abi

    first = parse_quote(simulated.get_quote(bytes(64)))
    raw = simulated.get_quote(bytes([1]) * 64)
    second = parse_quote(raw)
    assert second.certification_data is first.certification_data  # served from the cache
    with _cache.caching(False):
        fresh = parse_quote(simulated.get_quote(bytes([2]) * 64))
    assert fresh.certification_data is not first.certification_data
    assert fresh.certification_data == first.certification_data
    assert fresh.certification_data.digest == first.certification_data.digest
    assert len(abi._CERTIFICATION_DATA) == 1
    assert raw.startswith(second.to_bytes()) and not raw[len(second.to_bytes()) :].strip(b"\0")


def test_malformed_certification_data_is_refused_every_time_and_never_cached(
    simulated: SimulatedTdxBackend,
) -> None:
    from attestd.tee.errors import QuoteFormatError
    from attestd.tee.tdx import abi

    raw = bytearray(simulated.get_quote(bytes(64)))
    pem = raw.find(b"-----BEGIN CERTIFICATE-----")
    raw[pem + 30] = ord("!")  # not base64: the PCK chain is no PEM chain
    for _ in range(2):
        with pytest.raises(QuoteFormatError):
            parse_quote(bytes(raw))
    assert len(abi._CERTIFICATION_DATA) == 0


def test_the_certification_data_cache_stays_within_its_bound(
    simulated: SimulatedTdxBackend,
) -> None:
    from attestd.tee.tdx import abi

    small = _cache.ValidityCache[bytes, abi.QeReportCertificationData]("test.cd", maxsize=2)
    original = abi._CERTIFICATION_DATA
    abi._CERTIFICATION_DATA = small
    try:
        quote = simulated.get_quote(bytes(64))
        parsed = parse_quote(quote)
        auth_at = quote.index(parsed.certification_data.qe_auth_data, 48 + 584 + 4 + 128 + 6 + 448)
        for i in range(4):  # other certification data: QE auth data of the same size
            other = bytearray(quote)
            other[auth_at] ^= i + 1
            parse_quote(bytes(other))
        assert len(small) == 2
    finally:
        abi._CERTIFICATION_DATA = original


def test_an_attestation_key_is_decoded_once_and_a_bad_one_is_refused_each_time(
    simulated: SimulatedTdxBackend,
) -> None:
    options = VerifyOptions([simulated.trust_root()], datetime.now(UTC))
    verify_quote(simulated.get_quote(bytes(64)), options)
    verify_quote(simulated.get_quote(bytes([1]) * 64), options)
    assert len(verify_module._ATTESTATION_KEYS) == 1
    assert verify_module._ATTESTATION_KEYS.hits >= 1
    for _ in range(2):
        with pytest.raises(QuoteVerificationError) as e:
            verify_module._attestation_public_key(bytes(64))  # not a point on P-256
        assert e.value.reason == "quote_signature_invalid"
    assert len(verify_module._ATTESTATION_KEYS) == 1
