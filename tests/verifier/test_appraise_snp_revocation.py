"""SEV-SNP appraisal with the ARK's CRL: ``[snp] check_revocation``, its sources and its default.

Revocation is on by default under ``root = "amd"`` and off under a simulated
root; on, the appraisal fails closed (``collateral_unavailable``) when no CRL
can be had. The simulated PKI keeps a CRL store in its state directory, and a
loopback KDS serves the rest. No real AMD CRL is among the shared vectors, so
the real Milan report shows the refusals only.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from attestd.tee import _cache
from attestd.tee.snp import _simulated_pki as snp_pki
from attestd.verifier import AppraisalStatus, CheckStatus, Policy, appraise, load_policy
from attestd.verifier.errors import PolicyError
from attestd.verifier.policy import TrustRoot
from tests.tee.snp.fake_kds import FakeKds, running_kds
from tests.verifier.simulated_evidence import NONCE
from tests.verifier.snp_evidence import SnpScenario, make_snp_scenario
from tests.verifier.test_appraise_snp import MILAN_NOW, _milan_evidence, assert_rejected


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    _cache.clear_all()
    yield
    _cache.clear_all()


@pytest.fixture(scope="module")
def platform() -> snp_pki.SimulatedPki:
    return snp_pki.generate()


@pytest.fixture(scope="module")
def snp(tmp_path_factory: pytest.TempPathFactory, platform: snp_pki.SimulatedPki) -> SnpScenario:
    return make_snp_scenario(tmp_path_factory.mktemp("snp-crl"), platform=platform)


@pytest.fixture
def kds() -> Iterator[FakeKds]:
    with running_kds() as fake:
        yield fake


def _policy(snp: SnpScenario, directory: Path, settings: str) -> Policy:
    return snp.policy(directory, snp=f'measurement = ["{snp.measurement()}"]\n{settings}')


def _crl(platform: snp_pki.SimulatedPki, snp: SnpScenario, *, revoked: bool = False) -> bytes:
    return snp_pki.issue_crl(
        platform.ark,
        platform.ark_key,
        revoked=[platform.ask.serial_number] if revoked else [],
        this_update=snp.now - timedelta(days=1),
        next_update=snp.now + timedelta(days=7),
    )


def test_simulated_evidence_is_not_checked_by_default(snp: SnpScenario, tmp_path: Path) -> None:
    policy = _policy(snp, tmp_path, "")
    assert policy.snp.check_revocation is None
    assert not policy.snp.revocation_checked(policy.trust.root)
    result = appraise(snp.evidence(), nonce=NONCE, policy=policy, now=snp.now)
    assert result.status is AppraisalStatus.AFFIRMING, result.to_json()["checks"]
    assert "CRL" not in (result.check("quote_signature").detail or "")


def test_the_simulated_crl_store_lets_checked_evidence_pass(
    snp: SnpScenario, tmp_path: Path
) -> None:
    store = snp_pki.crl_store(snp.backend.state_directory)
    policy = _policy(snp, tmp_path, f'check_revocation = true\ncrl_store = "{store}"')
    result = appraise(snp.evidence(), nonce=NONCE, policy=policy, now=snp.now)
    assert result.status is AppraisalStatus.AFFIRMING, result.to_json()["checks"]
    assert "CRL lists neither" in (result.check("quote_signature").detail or "")


def test_a_kds_crl_listing_the_ask_rejects_the_evidence(
    snp: SnpScenario, platform: snp_pki.SimulatedPki, kds: FakeKds, tmp_path: Path
) -> None:
    kds.body = _crl(platform, snp, revoked=True)
    policy = _policy(snp, tmp_path, f'check_revocation = true\nkds_url = "{kds.url}"')
    result = appraise(snp.evidence(), nonce=NONCE, policy=policy, now=snp.now)
    assert_rejected(result, "quote_signature", "certificate_revoked")
    assert kds.paths == ["/vcek/v1/Milan/crl"]


def test_a_good_kds_crl_is_cached_until_its_next_update(
    snp: SnpScenario, platform: snp_pki.SimulatedPki, kds: FakeKds, tmp_path: Path
) -> None:
    kds.body = _crl(platform, snp)
    settings = f'check_revocation = true\nkds_url = "{kds.url}"\nvcek_cache_dir = "cache"'
    policy = _policy(snp, tmp_path, settings)
    for _ in range(2):
        result = appraise(snp.evidence(), nonce=NONCE, policy=policy, now=snp.now)
        assert result.status is AppraisalStatus.AFFIRMING, result.to_json()["checks"]
    assert len(kds.paths) == 1
    assert any((tmp_path / "cache").iterdir())


def test_checking_with_the_kds_down_fails_closed(snp: SnpScenario, tmp_path: Path) -> None:
    with running_kds() as gone:
        url = gone.url
    policy = _policy(snp, tmp_path, f'check_revocation = true\nkds_url = "{url}"')
    result = appraise(snp.evidence(), nonce=NONCE, policy=policy, now=snp.now)
    assert_rejected(result, "quote_signature", "collateral_unavailable")


def test_checking_with_no_source_fails_closed_and_says_what_to_set(
    snp: SnpScenario, tmp_path: Path
) -> None:
    policy = _policy(snp, tmp_path, "check_revocation = true")
    result = appraise(snp.evidence(), nonce=NONCE, policy=policy, now=snp.now)
    assert_rejected(result, "quote_signature", "collateral_unavailable")
    assert "snp.kds_url" in (result.check("quote_signature").detail or "")


# -- the real Milan report: on by default under AMD's root ----------------------------------


def _amd_policy(tmp_path: Path, snp: str = "") -> Policy:
    path = tmp_path / "amd.toml"
    path.write_text(f'[trust]\nroot = "amd"\n[snp]\n{snp}\n')
    return load_policy(path)


def test_amd_root_checks_revocation_by_default_and_fails_closed_without_a_crl(
    vectors_dir: Path, tmp_path: Path
) -> None:
    vcek = (vectors_dir / "snp" / "milan_vcek.der").read_bytes()
    policy = _amd_policy(tmp_path)
    assert policy.snp.revocation_checked(TrustRoot.AMD)
    result = appraise(
        _milan_evidence(vectors_dir, (vcek,)), nonce=NONCE, policy=policy, now=MILAN_NOW
    )
    assert_rejected(result, "quote_signature", "collateral_unavailable")


def test_amd_root_with_an_unreachable_kds_fails_closed(
    vectors_dir: Path, kds: FakeKds, tmp_path: Path
) -> None:
    vcek = (vectors_dir / "snp" / "milan_vcek.der").read_bytes()
    kds.status = 503
    policy = _amd_policy(tmp_path, f'kds_url = "{kds.url}"')
    result = appraise(
        _milan_evidence(vectors_dir, (vcek,)), nonce=NONCE, policy=policy, now=MILAN_NOW
    )
    assert_rejected(result, "quote_signature", "collateral_unavailable")
    assert kds.paths == ["/vcek/v1/Milan/crl"]


def test_amd_root_refuses_a_crl_the_simulated_ark_signed(
    vectors_dir: Path, platform: snp_pki.SimulatedPki, tmp_path: Path
) -> None:
    vcek = (vectors_dir / "snp" / "milan_vcek.der").read_bytes()
    store = tmp_path / "crl"
    store.mkdir()
    (store / "Milan-vcek.crl").write_bytes(
        snp_pki.issue_crl(
            platform.ark,
            platform.ark_key,
            this_update=MILAN_NOW - timedelta(days=1),
            next_update=MILAN_NOW + timedelta(days=1),
        )
    )
    policy = _amd_policy(tmp_path, 'crl_store = "crl"')
    result = appraise(
        _milan_evidence(vectors_dir, (vcek,)), nonce=NONCE, policy=policy, now=MILAN_NOW
    )
    assert_rejected(result, "quote_signature", "collateral_signature_invalid")
    assert result.check("quote_signature").status is CheckStatus.FAIL


# -- the policy keys ------------------------------------------------------------------------


def test_the_policy_reads_check_revocation_and_crl_store(tmp_path: Path) -> None:
    policy = _amd_policy(tmp_path, 'check_revocation = false\ncrl_store = "crls"')
    assert policy.snp.check_revocation is False
    assert not policy.snp.revocation_checked(TrustRoot.AMD)
    assert policy.snp.crl_store == tmp_path / "crls"
    on = _amd_policy(tmp_path, "check_revocation = true")
    assert on.snp.revocation_checked(TrustRoot.SIMULATED)


@pytest.mark.parametrize(
    ("snp", "match"),
    [("check_revocation = 1", "true or false"), ("crl_store = 3", "string")],
)
def test_bad_revocation_settings_are_policy_errors(tmp_path: Path, snp: str, match: str) -> None:
    with pytest.raises(PolicyError, match=match):
        _amd_policy(tmp_path, snp)
