"""An appraisal gives the same result, check for check, with the caches warm and without them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from attestd.tee import _cache
from attestd.tee.tdx import dcap, verify
from attestd.tee.tdx.abi import parse_quote
from attestd.verifier import appraise, load_policy
from attestd.verifier.policy import Policy
from tests.verifier.simulated_evidence import NONCE, Scenario, replace_predicate


@pytest.fixture(autouse=True)
def empty_caches() -> Iterator[None]:
    _cache.clear_all()
    yield
    _cache.clear_all()


def _regions(quote: bytes) -> dict[str, int]:
    """One byte offset in each region of a quote v4, for bit flips."""
    parsed = parse_quote(quote)
    signature_data = 48 + 584 + 4
    cert_data = signature_data + 64 + 64 + 6
    pem_start = cert_data + 384 + 64 + 2 + len(parsed.certification_data.qe_auth_data) + 6
    return {
        "header": 10,
        "tee_tcb_svn": 48,
        "mr_td": 48 + 136,
        "rtmr3": 48 + 328 + 3 * 48,
        "report_data": 48 + 520,
        "signature": signature_data + 5,
        "attestation_key": signature_data + 64 + 5,
        "qe_report": cert_data + 100,
        "qe_report_signature": cert_data + 384 + 5,
        "pck_leaf": pem_start + 200,
    }


def _evidence(scenario: Scenario) -> tuple[bytes, dict[str, bytes]]:
    statement = scenario.statement()
    good = scenario.sign(statement)
    tampered = {}
    for region, offset in _regions(statement.predicate.quote).items():
        quote = bytearray(statement.predicate.quote)
        quote[offset] ^= 0x01
        tampered[region] = scenario.sign(replace_predicate(statement, quote=bytes(quote)))
    return good, tampered


def test_results_are_identical_with_and_without_caches(scenario: Scenario, policy: Policy) -> None:
    good, tampered = _evidence(scenario)
    cases = {"good": good, **tampered}

    def results(now_offset: timedelta) -> dict[str, object]:
        now = scenario.now + now_offset
        return {
            name: appraise(evidence, nonce=NONCE, policy=policy, now=now)
            for name, evidence in cases.items()
        }

    with _cache.caching(False):
        cold = results(timedelta(0))
    appraise(good, nonce=NONCE, policy=policy, now=scenario.now)  # warm every cache
    warm = results(timedelta(0))
    again = results(timedelta(0))
    assert warm == cold
    assert again == cold
    statuses = {name: r.status.value for name, r in cold.items()}  # type: ignore[attr-defined]
    assert statuses.pop("good") == "affirming"
    assert "affirming" not in statuses.values()  # every bit flip is refused, cached or not


def test_the_caches_fill_and_serve_a_second_appraisal(scenario: Scenario, policy: Policy) -> None:
    first = appraise(scenario.evidence(), nonce=NONCE, policy=policy, now=scenario.now)
    assert len(verify._PCK_CHAINS) == 1 and len(dcap._VERDICTS) == 1
    hits = dcap._VERDICTS.hits
    second = appraise(scenario.evidence(), nonce=NONCE, policy=policy, now=scenario.now)
    assert dcap._VERDICTS.hits == hits + 1
    assert [c.name for c in first.checks] == [c.name for c in second.checks]
    assert first.status == second.status


def test_results_match_for_evidence_under_another_root(scenario: Scenario, tmp_path: Path) -> None:
    """Evidence appraised under the simulated root, then under Intel's: no cached trust leaks."""
    evidence = scenario.evidence()
    simulated = scenario.policy(tmp_path)
    appraise(evidence, nonce=NONCE, policy=simulated, now=scenario.now)
    intel_dir = tmp_path / "intel"
    intel_dir.mkdir()
    (intel_dir / "policy.toml").write_text('[trust]\nroot = "intel"\n')
    intel = load_policy(intel_dir / "policy.toml")
    warm = appraise(evidence, nonce=NONCE, policy=intel, now=scenario.now)
    with _cache.caching(False):
        cold = appraise(evidence, nonce=NONCE, policy=intel, now=scenario.now)
    assert warm == cold
    assert warm.status.value != "affirming"


def test_a_warm_appraisal_at_a_clock_past_the_pck_leafs_not_after_is_refused_as_cold(
    scenario: Scenario, policy: Policy
) -> None:
    """Every cache the appraisal filled is re-checked against the appraisal's own clock."""
    warm_up = appraise(scenario.evidence(), nonce=NONCE, policy=policy, now=scenario.now)
    assert warm_up.status.value == "affirming"
    assert len(verify._PCK_CHAINS) == 1 and len(dcap._VERDICTS) == 1
    evidence = scenario.evidence()
    chain = parse_quote(scenario.statement().predicate.quote).pck_chain()
    late = min(c.not_valid_after_utc for c in chain) + timedelta(seconds=1)
    warm = appraise(evidence, nonce=NONCE, policy=policy, now=late)
    with _cache.caching(False):
        cold = appraise(evidence, nonce=NONCE, policy=policy, now=late)
    assert warm == cold
    quote_check = next(c for c in warm.checks if c.name == "quote_signature")
    assert quote_check.reason == "certificate_expired"
