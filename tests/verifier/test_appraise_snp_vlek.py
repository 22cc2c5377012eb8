"""Appraisal of SEV-SNP evidence signed by a VLEK (a cloud provider's key), end to end.

The simulated host signs with a VLEK under a simulated ASVK; the evidence
carries the VLEK chain as an agent ships it, and the appraisal verifies it,
says which key signed, and holds it to ``snp.signing_keys``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from attestd.tee.snp import _simulated_pki as snp_pki
from attestd.tee.snp.abi import SIGNING_KEY_VLEK, parse_report
from attestd.tee.snp.kds import offline_path
from attestd.tee.snp.simulated import SimulatedSnpMeasurements
from attestd.verifier import AppraisalResult, AppraisalStatus, CheckStatus, appraise
from attestd.verifier.errors import PolicyError
from tests.verifier.simulated_evidence import NONCE, replace_predicate
from tests.verifier.snp_evidence import SnpScenario, make_snp_scenario


def assert_rejected(result: AppraisalResult, check: str, reason: str) -> None:
    assert result.status is AppraisalStatus.CONTRAINDICATED
    first = result.failures[0]
    assert (first.name, first.reason) == (check, reason), result.to_json()["checks"]


@pytest.fixture(scope="module")
def platform() -> snp_pki.SimulatedPki:
    """ARK, ASK, VCEK and ASVK, VLEK: three RSA-4096 keys, made once."""
    return snp_pki.with_vlek(snp_pki.generate())


@pytest.fixture(scope="module")
def vlek(
    tmp_path_factory: pytest.TempPathFactory, platform: snp_pki.SimulatedPki
) -> Iterator[SnpScenario]:
    """A guest whose host signs with the VLEK."""
    measurements = SimulatedSnpMeasurements(signing_key="vlek")
    yield make_snp_scenario(tmp_path_factory.mktemp("vlek"), measurements, platform=platform)


@pytest.fixture(scope="module")
def vcek(
    tmp_path_factory: pytest.TempPathFactory, platform: snp_pki.SimulatedPki
) -> Iterator[SnpScenario]:
    """A guest of the same platform whose host signs with the VCEK."""
    yield make_snp_scenario(tmp_path_factory.mktemp("vcek"), platform=platform)


def der(platform: snp_pki.SimulatedPki) -> dict[str, bytes]:
    assert platform.vlek is not None
    certs = {
        "vcek": platform.vcek,
        "ask": platform.ask,
        "ark": platform.ark,
        "vlek": platform.vlek.vlek,
        "asvk": platform.vlek.asvk,
    }
    return {name: cert.public_bytes(Encoding.DER) for name, cert in certs.items()}


def test_vlek_signed_evidence_is_affirmed_and_says_which_key_signed(
    vlek: SnpScenario, platform: snp_pki.SimulatedPki, tmp_path: Path
) -> None:
    statement = vlek.statement()
    assert parse_report(statement.predicate.quote).signing_key == SIGNING_KEY_VLEK
    chain = der(platform)
    assert statement.predicate.certificates == (chain["vlek"], chain["asvk"], chain["ark"])
    result = appraise(vlek.sign(statement), nonce=NONCE, policy=vlek.policy(tmp_path), now=vlek.now)
    assert result.status is AppraisalStatus.AFFIRMING, result.to_json()["checks"]
    signature = result.check("quote_signature").detail
    assert "VLEK" in signature and snp_pki.CSP_ID in signature and "ASVK" in signature
    signing_key = result.check("signing_key")
    assert signing_key.status is CheckStatus.PASS and "VLEK" in signing_key.detail


def test_vcek_signed_evidence_says_vcek(vcek: SnpScenario, tmp_path: Path) -> None:
    result = appraise(vcek.evidence(), nonce=NONCE, policy=vcek.policy(tmp_path), now=vcek.now)
    assert result.status is AppraisalStatus.AFFIRMING, result.to_json()["checks"]
    assert "VCEK and the ASK" in result.check("quote_signature").detail
    assert "VCEK" in result.check("signing_key").detail


def _only(scenario: SnpScenario, directory: Path, keys: str) -> AppraisalResult:
    lines = f'measurement = ["{scenario.measurement()}"]\nsigning_keys = [{keys}]'
    policy = scenario.policy(directory, snp=lines)
    return appraise(scenario.evidence(), nonce=NONCE, policy=policy, now=scenario.now)


def test_a_policy_may_refuse_vleks(vlek: SnpScenario, vcek: SnpScenario, tmp_path: Path) -> None:
    assert_rejected(_only(vlek, tmp_path, '"vcek"'), "signing_key", "signing_key_not_allowed")
    assert _only(vcek, tmp_path, '"vcek"').status is AppraisalStatus.AFFIRMING
    assert_rejected(_only(vcek, tmp_path, '"vlek"'), "signing_key", "signing_key_not_allowed")
    assert _only(vlek, tmp_path, '"vlek"').status is AppraisalStatus.AFFIRMING


@pytest.mark.parametrize("keys", ["", '"ask"', '"vcek", "VLEK"'])
def test_signing_keys_must_name_vcek_or_vlek(vlek: SnpScenario, tmp_path: Path, keys: str) -> None:
    with pytest.raises(PolicyError, match=r"snp\.signing_keys"):
        _only(vlek, tmp_path, keys)


def test_a_vcek_chain_shipped_with_a_vlek_signed_report_is_a_signing_key_mismatch(
    vlek: SnpScenario, platform: snp_pki.SimulatedPki, tmp_path: Path
) -> None:
    chain = der(platform)
    statement = replace_predicate(
        vlek.statement(), certificates=(chain["vcek"], chain["ask"], chain["ark"])
    )
    result = appraise(vlek.sign(statement), nonce=NONCE, policy=vlek.policy(tmp_path), now=vlek.now)
    assert_rejected(result, "quote_signature", "signing_key_mismatch")


def test_a_vlek_chain_shipped_with_a_vcek_signed_report_is_a_signing_key_mismatch(
    vcek: SnpScenario, platform: snp_pki.SimulatedPki, tmp_path: Path
) -> None:
    chain = der(platform)
    statement = replace_predicate(
        vcek.statement(), certificates=(chain["vlek"], chain["asvk"], chain["ark"])
    )
    result = appraise(vcek.sign(statement), nonce=NONCE, policy=vcek.policy(tmp_path), now=vcek.now)
    assert_rejected(result, "quote_signature", "signing_key_mismatch")


def test_a_vlek_with_the_ask_instead_of_the_asvk_is_a_broken_chain(
    vlek: SnpScenario, platform: snp_pki.SimulatedPki, tmp_path: Path
) -> None:
    chain = der(platform)
    statement = replace_predicate(
        vlek.statement(), certificates=(chain["vlek"], chain["ask"], chain["ark"])
    )
    result = appraise(vlek.sign(statement), nonce=NONCE, policy=vlek.policy(tmp_path), now=vlek.now)
    assert_rejected(result, "quote_signature", "vcek_chain_invalid")
    assert "signed by the ASVK" in result.check("quote_signature").detail


def test_a_vlek_is_never_asked_of_the_kds(vlek: SnpScenario, tmp_path: Path) -> None:
    """Evidence without its VLEK, and none in the store: the reason says where VLEKs come from."""
    extra = 'product = "Milan"\nkds_url = "http://127.0.0.1:9"\n'
    lines = f'measurement = ["{vlek.measurement()}"]\n{extra}vcek_cache_dir = "{tmp_path / "c"}"'
    policy = vlek.policy(tmp_path, snp=lines)
    statement = replace_predicate(vlek.statement(), certificates=())
    result = appraise(vlek.sign(statement), nonce=NONCE, policy=policy, now=vlek.now)
    assert_rejected(result, "quote_signature", "vcek_unavailable")
    assert "KDS does not serve" in result.check("quote_signature").detail


def test_a_vlek_from_the_offline_store_verifies(
    vlek: SnpScenario, platform: snp_pki.SimulatedPki, tmp_path: Path
) -> None:
    """The evidence's signer is ignored (use_certificate_table = false): the store's VLEK counts."""
    statement = vlek.statement()
    report = parse_report(statement.predicate.quote)
    store = tmp_path / "store"
    store.mkdir()
    lines = f'measurement = ["{vlek.measurement()}"]\nuse_certificate_table = false\n'
    policy = vlek.policy(tmp_path, snp=f'{lines}vcek_store = "{store}"')
    evidence = vlek.sign(statement)
    missing = appraise(evidence, nonce=NONCE, policy=policy, now=vlek.now)
    assert_rejected(missing, "quote_signature", "vcek_unavailable")
    assert "KDS does not serve" in missing.check("quote_signature").detail
    offline_path(store, report.chip_id, report.reported_tcb).write_bytes(der(platform)["vlek"])
    result = appraise(evidence, nonce=NONCE, policy=policy, now=vlek.now)
    assert result.status is AppraisalStatus.AFFIRMING, result.to_json()["checks"]
