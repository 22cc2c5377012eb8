"""The ARK's CRL: fetched from a loopback KDS, an offline store or the cache, verified, honoured.

The simulated ARK signs the CRLs (``_simulated_pki.issue_crl``) as AMD's ARK
signs the KDS's. The real Milan vector runs with revocation on too, but no real
AMD CRL is among the shared vectors (and none can be fetched here), so for it
only the refusals are shown: no CRL at all, and one not signed by AMD's ARK.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from attestd.tee import _cache
from attestd.tee.errors import QuoteVerificationError, TeeError
from attestd.tee.snp import _simulated_pki
from attestd.tee.snp.abi import SIGNING_KEY_VCEK, SIGNING_KEY_VLEK
from attestd.tee.snp.kds import (
    MAX_CRL_BYTES,
    CrlSource,
    crl_cache_name,
    crl_url,
    offline_crl_path,
)
from attestd.tee.snp.simulated import SimulatedSnpBackend
from attestd.tee.snp.verify import (
    CertificateRevokedError,
    CrlExpiredError,
    CrlMalformedError,
    CrlNotYetValidError,
    CrlSignatureInvalidError,
    CrlTooLargeError,
    CrlUnavailableError,
    VerifyOptions,
    amd_ark,
    amd_ask,
    check_not_revoked,
    verify_crl,
    verify_report,
)

from .conftest import VECTORS_NOW, RealReport
from .fake_kds import FakeKds, running_kds

NOW = datetime(2026, 6, 1, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    # Verified CRLs and fetched responses are cached in memory; each test starts empty.
    _cache.clear_all()
    yield
    _cache.clear_all()


@pytest.fixture
def kds() -> Iterator[FakeKds]:
    with running_kds() as fake:
        yield fake


@pytest.fixture(scope="module")
def pki(simulated: SimulatedSnpBackend) -> _simulated_pki.SimulatedPki:
    return _simulated_pki.load(simulated.state_directory)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _crl(
    pki: _simulated_pki.SimulatedPki,
    *,
    revoked: tuple[int, ...] | list[int] = (),
    this_update: datetime = NOW - DAY,
    next_update: datetime = NOW + 7 * DAY,
) -> bytes:
    """A CRL of the simulated ARK, valid around NOW unless told otherwise."""
    return _simulated_pki.issue_crl(
        pki.ark, pki.ark_key, revoked=revoked, this_update=this_update, next_update=next_update
    )


def _verify(
    simulated: SimulatedSnpBackend,
    pki: _simulated_pki.SimulatedPki,
    source: CrlSource,
    now: datetime = NOW,
) -> None:
    options = VerifyOptions(now=now, trusted_arks=[pki.ark], revocation=source)
    verify_report(simulated.get_quote(bytes(64)), vcek=pki.vcek, ask=pki.ask, options=options)


def _reason(error: pytest.ExceptionInfo[TeeError]) -> str:
    return error.value.reason


# -- from the KDS ---------------------------------------------------------------------------


def test_a_good_crl_from_the_kds_lets_the_chain_verify(
    simulated: SimulatedSnpBackend, pki: _simulated_pki.SimulatedPki, kds: FakeKds
) -> None:
    kds.body = _crl(pki, revoked=[pki.ask.serial_number + 1])
    _verify(simulated, pki, CrlSource(kds_base_url=kds.url, timeout_s=5))
    assert kds.paths == ["/vcek/v1/Milan/crl"]


def test_a_crl_listing_the_ask_is_certificate_revoked(
    simulated: SimulatedSnpBackend, pki: _simulated_pki.SimulatedPki, kds: FakeKds
) -> None:
    kds.body = _crl(pki, revoked=[pki.ask.serial_number])
    with pytest.raises(CertificateRevokedError, match="ASK") as e:
        _verify(simulated, pki, CrlSource(kds_base_url=kds.url, timeout_s=5))
    assert _reason(e) == "certificate_revoked"


def test_a_crl_signed_by_another_key_is_refused_and_not_cached(
    simulated: SimulatedSnpBackend,
    pki: _simulated_pki.SimulatedPki,
    kds: FakeKds,
    other_key: rsa.RSAPrivateKey,
    tmp_path: Path,
) -> None:
    source = CrlSource(kds_base_url=kds.url, cache_dir=tmp_path, timeout_s=5)
    # Names the ARK as its issuer, but another key signed it: a forgery.
    kds.body = _simulated_pki.issue_crl(
        pki.ark, other_key, this_update=NOW - DAY, next_update=NOW + DAY
    )
    with pytest.raises(CrlSignatureInvalidError) as e:
        _verify(simulated, pki, source)
    assert _reason(e) == "collateral_signature_invalid"
    assert list(tmp_path.iterdir()) == []  # nothing unverified is kept
    kds.body = _crl(pki)
    _verify(simulated, pki, source)
    assert len(kds.paths) == 2


def test_a_crl_issued_by_another_name_is_refused(
    simulated: SimulatedSnpBackend, pki: _simulated_pki.SimulatedPki, kds: FakeKds
) -> None:
    # Signed by the ARK's key, but naming the ASK as issuer: not the ARK's CRL.
    kds.body = _simulated_pki.issue_crl(
        pki.ask, pki.ark_key, this_update=NOW - DAY, next_update=NOW + DAY
    )
    with pytest.raises(CrlSignatureInvalidError, match="issued by"):
        _verify(simulated, pki, CrlSource(kds_base_url=kds.url, timeout_s=5))


def test_an_expired_crl_is_collateral_expired(
    simulated: SimulatedSnpBackend, pki: _simulated_pki.SimulatedPki, kds: FakeKds
) -> None:
    kds.body = _crl(pki, this_update=NOW - 30 * DAY, next_update=NOW - DAY)
    with pytest.raises(CrlExpiredError) as e:
        _verify(simulated, pki, CrlSource(kds_base_url=kds.url, timeout_s=5))
    assert _reason(e) == "collateral_expired"


def test_a_crl_is_expired_at_its_next_update_exactly(pki: _simulated_pki.SimulatedPki) -> None:
    der = _crl(pki, this_update=NOW - DAY, next_update=NOW)
    verify_crl(der, pki.ark, NOW - timedelta(seconds=1))  # cached until just before
    with pytest.raises(CrlExpiredError):
        verify_crl(der, pki.ark, NOW)


def test_a_crl_from_the_future_is_collateral_not_yet_valid(
    simulated: SimulatedSnpBackend, pki: _simulated_pki.SimulatedPki, kds: FakeKds
) -> None:
    kds.body = _crl(pki, this_update=NOW + DAY, next_update=NOW + 7 * DAY)
    with pytest.raises(CrlNotYetValidError) as e:
        _verify(simulated, pki, CrlSource(kds_base_url=kds.url, timeout_s=5))
    assert _reason(e) == "collateral_not_yet_valid"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not a CRL",
        b"\x30\x03\x02\x01\x00",
        b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
    ],
    ids=["empty", "text", "short-der", "bad-pem"],
)
def test_a_malformed_crl_is_collateral_malformed(
    simulated: SimulatedSnpBackend, pki: _simulated_pki.SimulatedPki, kds: FakeKds, body: bytes
) -> None:
    kds.body = body
    with pytest.raises(CrlMalformedError) as e:
        _verify(simulated, pki, CrlSource(kds_base_url=kds.url, timeout_s=5))
    assert _reason(e) == "collateral_malformed"


def test_a_truncated_crl_is_collateral_malformed(pki: _simulated_pki.SimulatedPki) -> None:
    der = _crl(pki, revoked=[1, 2, 3])
    for cut in (len(der) // 2, len(der) - 1):
        with pytest.raises(CrlMalformedError):
            verify_crl(der[:cut], pki.ark, NOW)


def test_an_oversized_body_is_collateral_too_large(
    simulated: SimulatedSnpBackend, pki: _simulated_pki.SimulatedPki, kds: FakeKds
) -> None:
    kds.body = bytes(MAX_CRL_BYTES + 1)
    with pytest.raises(CrlTooLargeError) as e:
        _verify(simulated, pki, CrlSource(kds_base_url=kds.url, timeout_s=5))
    assert _reason(e) == "collateral_too_large"


@pytest.mark.parametrize("status", [404, 429, 503])
def test_a_kds_error_fails_closed(
    simulated: SimulatedSnpBackend, pki: _simulated_pki.SimulatedPki, kds: FakeKds, status: int
) -> None:
    kds.status = status
    with pytest.raises(CrlUnavailableError) as e:
        _verify(simulated, pki, CrlSource(kds_base_url=kds.url, timeout_s=5))
    assert _reason(e) == "collateral_unavailable"


def test_a_kds_that_is_down_fails_closed(
    simulated: SimulatedSnpBackend, pki: _simulated_pki.SimulatedPki
) -> None:
    with running_kds() as gone:
        url = gone.url
    with pytest.raises(CrlUnavailableError, match="cannot fetch"):
        _verify(simulated, pki, CrlSource(kds_base_url=url, timeout_s=5))


def test_no_source_at_all_fails_closed(
    simulated: SimulatedSnpBackend, pki: _simulated_pki.SimulatedPki, tmp_path: Path
) -> None:
    with pytest.raises(CrlUnavailableError, match="no base URL"):
        _verify(simulated, pki, CrlSource(offline_store=tmp_path, cache_dir=tmp_path))


# -- the caches -----------------------------------------------------------------------------


def test_the_cache_serves_until_the_next_update_then_fetches_again(
    simulated: SimulatedSnpBackend, pki: _simulated_pki.SimulatedPki, kds: FakeKds, tmp_path: Path
) -> None:
    source = CrlSource(kds_base_url=kds.url, cache_dir=tmp_path, timeout_s=5)
    kds.body = _crl(pki, this_update=NOW - DAY, next_update=NOW + DAY)
    _verify(simulated, pki, source)
    _verify(simulated, pki, source, NOW + DAY / 2)
    assert len(kds.paths) == 1
    assert [p.name for p in tmp_path.iterdir()] == [
        crl_cache_name(crl_url("Milan", SIGNING_KEY_VCEK, base_url=kds.url))
    ]
    # The disk cache alone (a restarted verifier) still serves it before its nextUpdate.
    _cache.clear_all()
    kds.body = _crl(
        pki, revoked=[pki.ask.serial_number], this_update=NOW, next_update=NOW + 9 * DAY
    )
    _verify(simulated, pki, source, NOW + DAY - timedelta(seconds=1))
    assert len(kds.paths) == 1
    # At nextUpdate it is stale: the newer CRL is fetched, and it revokes the ASK.
    with pytest.raises(CertificateRevokedError):
        _verify(simulated, pki, source, NOW + DAY)
    assert len(kds.paths) == 2


def test_a_cached_crl_of_another_ark_is_fetched_again(
    simulated: SimulatedSnpBackend,
    pki: _simulated_pki.SimulatedPki,
    kds: FakeKds,
    other_key: rsa.RSAPrivateKey,
    tmp_path: Path,
) -> None:
    source = CrlSource(kds_base_url=kds.url, cache_dir=tmp_path, timeout_s=5)
    kds.body = _crl(pki)
    _verify(simulated, pki, source)
    # Swap the disk entry for a forgery: it fails `accept`, so it is a miss, not a verdict.
    forged = _simulated_pki.issue_crl(pki.ark, other_key, this_update=NOW, next_update=NOW + DAY)
    url = crl_url("Milan", SIGNING_KEY_VCEK, base_url=kds.url)
    entry = tmp_path / crl_cache_name(url)
    entry.write_text(entry.read_text().replace(kds.body.hex(), forged.hex()))
    _cache.clear_all()
    _verify(simulated, pki, source)
    assert len(kds.paths) == 2


# -- offline, and the choice of CRL ---------------------------------------------------------


def test_the_simulated_state_holds_a_crl_store_that_verifies_offline(
    simulated: SimulatedSnpBackend, pki: _simulated_pki.SimulatedPki
) -> None:
    store = _simulated_pki.crl_store(simulated.state_directory)
    assert offline_crl_path(store, "Milan", SIGNING_KEY_VCEK).is_file()
    assert offline_crl_path(store, "Milan", SIGNING_KEY_VLEK).is_file()
    _verify(simulated, pki, CrlSource(offline_store=store))


def test_an_offline_crl_is_never_passed_over(
    simulated: SimulatedSnpBackend, pki: _simulated_pki.SimulatedPki, kds: FakeKds, tmp_path: Path
) -> None:
    offline_crl_path(tmp_path, "Milan", SIGNING_KEY_VCEK).write_bytes(
        _crl(pki, this_update=NOW - 9 * DAY, next_update=NOW - DAY)
    )
    kds.body = _crl(pki)
    with pytest.raises(CrlExpiredError):
        _verify(simulated, pki, CrlSource(offline_store=tmp_path, kds_base_url=kds.url))
    assert kds.paths == []
    offline_crl_path(tmp_path, "Milan", SIGNING_KEY_VCEK).write_bytes(bytes(MAX_CRL_BYTES + 1))
    with pytest.raises(CrlTooLargeError):
        _verify(simulated, pki, CrlSource(offline_store=tmp_path))


def test_a_vlek_chain_reads_the_vlek_crl_and_checks_the_asvk(
    pki: _simulated_pki.SimulatedPki, kds: FakeKds
) -> None:
    # The intermediate stands for an ASVK: what matters is which CRL and which serial.
    assert crl_url("Genoa", SIGNING_KEY_VLEK) == "https://kdsintf.amd.com/vlek/v1/Genoa/crl"
    options = VerifyOptions(now=NOW, revocation=CrlSource(kds_base_url=kds.url, timeout_s=5))
    kds.body = _crl(pki, revoked=[pki.ask.serial_number])
    with pytest.raises(CertificateRevokedError, match="ASVK"):
        check_not_revoked(pki.ask, pki.ark, "Milan", SIGNING_KEY_VLEK, options)
    assert kds.paths == ["/vlek/v1/Milan/crl"]


def test_an_unknown_product_cannot_choose_a_crl(pki: _simulated_pki.SimulatedPki) -> None:
    options = VerifyOptions(now=NOW, revocation=CrlSource(kds_base_url="https://kds.invalid"))
    with pytest.raises(CrlUnavailableError, match="product is unknown"):
        check_not_revoked(pki.ask, pki.ark, None, SIGNING_KEY_VCEK, options)


# -- the real Milan vector, under AMD's pinned roots ----------------------------------------


def test_real_milan_chain_with_revocation_fails_closed_without_a_crl(
    real: RealReport, kds: FakeKds
) -> None:
    kds.status = 503
    options = VerifyOptions(now=VECTORS_NOW, revocation=CrlSource(kds_base_url=kds.url))
    with pytest.raises(CrlUnavailableError):
        verify_report(real.raw, vcek=real.vcek, options=options)
    assert kds.paths == ["/vcek/v1/Milan/crl"]
    # Without revocation the same chain verifies: the refusal above is the CRL's alone.
    verify_report(real.raw, vcek=real.vcek, options=VerifyOptions(now=VECTORS_NOW))


def test_real_milan_chain_refuses_a_crl_not_signed_by_amds_ark(
    real: RealReport, other_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    ark = amd_ark("Milan")
    # It names ARK-Milan and lists nothing, but AMD's key did not sign it.
    forged = _simulated_pki.issue_crl(
        ark, other_key, this_update=VECTORS_NOW - DAY, next_update=VECTORS_NOW + DAY
    )
    offline_crl_path(tmp_path, "Milan", SIGNING_KEY_VCEK).write_bytes(forged)
    options = VerifyOptions(now=VECTORS_NOW, revocation=CrlSource(offline_store=tmp_path))
    with pytest.raises(CrlSignatureInvalidError):
        verify_report(real.raw, vcek=real.vcek, options=options)
    assert isinstance(amd_ask("Milan"), x509.Certificate)


def test_every_revocation_error_is_a_named_tee_error() -> None:
    for error in (
        CertificateRevokedError,
        CrlMalformedError,
        CrlSignatureInvalidError,
        CrlExpiredError,
        CrlNotYetValidError,
    ):
        assert issubclass(error, QuoteVerificationError)
    assert issubclass(CrlTooLargeError, CrlUnavailableError)
