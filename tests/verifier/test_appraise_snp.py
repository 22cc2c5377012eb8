"""Appraisal of SEV-SNP evidence: simulated end to end, and a real Milan report under AMD's root."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from attestd.evidence import (
    Binding,
    EvidencePredicate,
    Statement,
    TeeClaims,
    key_id,
    public_key_pem,
    replay,
    sign_statement,
    subjects_digest,
)
from attestd.tee.backend import TeeDescription, TeeType
from attestd.tee.snp import _simulated_pki as snp_pki
from attestd.tee.snp.abi import POLICY_DEBUG, POLICY_RESERVED_ONE, POLICY_SMT, parse_report
from attestd.tee.snp.kds import offline_path
from attestd.tee.snp.simulated import SimulatedSnpMeasurements
from attestd.verifier import (
    CHECK_NAMES,
    SNP_CHECK_NAMES,
    AppraisalResult,
    AppraisalStatus,
    CheckStatus,
    Policy,
    appraise,
    load_policy,
)
from tests.verifier.simulated_evidence import (
    MODEL,
    NONCE,
    Scenario,
    fresh_nonce,
    replace_log,
    replace_predicate,
)
from tests.verifier.snp_evidence import SnpScenario, make_snp_scenario


def assert_rejected(result: AppraisalResult, check: str, reason: str) -> None:
    """Contraindicated, and ``check`` is the first failure, with ``reason``."""
    assert result.status is AppraisalStatus.CONTRAINDICATED
    first = result.failures[0]
    assert (first.name, first.reason) == (check, reason), result.to_json()["checks"]


# -- fixtures: one simulated AMD PKI per session, one guest per launch configuration ---


@pytest.fixture(scope="session")
def snp_platform() -> snp_pki.SimulatedPki:
    """The simulated ARK, ASK and VCEK every guest below runs on (two RSA-4096 keys: once)."""
    return snp_pki.generate()


@pytest.fixture(scope="session")
def snp(
    tmp_path_factory: pytest.TempPathFactory, snp_platform: snp_pki.SimulatedPki
) -> Iterator[SnpScenario]:
    yield make_snp_scenario(tmp_path_factory.mktemp("snp"), platform=snp_platform)


@pytest.fixture
def snp_policy(snp: SnpScenario, tmp_path: Path) -> Policy:
    return snp.policy(tmp_path)


def _launched_with(
    tmp_path_factory: pytest.TempPathFactory, platform: snp_pki.SimulatedPki, guest_policy: int
) -> SnpScenario:
    measurements = SimulatedSnpMeasurements(policy=guest_policy)
    return make_snp_scenario(tmp_path_factory.mktemp("snp-policy"), measurements, platform=platform)


# -- the happy path --------------------------------------------------------------


def test_genuine_simulated_snp_evidence_is_affirmed_and_names_every_check(
    snp: SnpScenario, snp_policy: Policy
) -> None:
    result = appraise(snp.evidence(), nonce=NONCE, policy=snp_policy, now=snp.now)
    expected = [*CHECK_NAMES[:-1], *SNP_CHECK_NAMES, CHECK_NAMES[-1]]
    assert [check.name for check in result.checks] == expected
    assert result.status is AppraisalStatus.AFFIRMING, result.to_json()["checks"]
    # Optional launch values the policy leaves out are reported, not judged.
    optional = {"host_data", "id_key_digest", "author_key_digest"}
    for check in result.checks:
        wanted = CheckStatus.SKIP if check.name in optional else CheckStatus.PASS
        assert check.status is wanted, result.to_json()["checks"]
    assert result.tee is TeeType.SEV_SNP
    assert result.simulated is True
    assert result.root_of_trust.policy == "simulated"
    assert result.root_of_trust.evidence == "attestd-simulated-amd-ark"
    assert result.root_of_trust.evidence_simulated is True
    assert result.to_json()["tee"] == "sev-snp"


def test_runtime_log_passes_through_the_binding_alone(snp: SnpScenario, snp_policy: Policy) -> None:
    result = appraise(snp.evidence(), nonce=NONCE, policy=snp_policy, now=snp.now)
    runtime_log = result.check("runtime_log")
    assert runtime_log.status is CheckStatus.PASS
    assert "no runtime register" in runtime_log.detail
    assert result.evidence.log_length == 3


# -- each broken link names itself ------------------------------------------------


def test_wrong_nonce_is_rejected(snp: SnpScenario, snp_policy: Policy) -> None:
    result = appraise(snp.evidence(), nonce=fresh_nonce(), policy=snp_policy, now=snp.now)
    assert_rejected(result, "nonce", "nonce_mismatch")


def test_modified_log_event_is_rejected(snp: SnpScenario, snp_policy: Policy) -> None:
    events = list(snp.events)
    events[1] = dataclasses.replace(events[1], content=b"/srv/models/other")
    statement = replace_log(snp.statement(), events)
    result = appraise(snp.sign(statement), nonce=NONCE, policy=snp_policy, now=snp.now)
    assert_rejected(result, "runtime_log", "runtime_log_mismatch")


def test_dropped_log_event_is_rejected(snp: SnpScenario, snp_policy: Policy) -> None:
    statement = replace_log(snp.statement(), snp.events[:-1])
    result = appraise(snp.sign(statement), nonce=NONCE, policy=snp_policy, now=snp.now)
    assert_rejected(result, "runtime_log", "runtime_log_mismatch")


def test_reordered_log_events_are_rejected(snp: SnpScenario, snp_policy: Policy) -> None:
    first, second, third = snp.events
    # Renumbered, so the sequence check alone cannot catch it: only the hashes do.
    reordered = [
        dataclasses.replace(second, sequence=0),
        dataclasses.replace(first, sequence=1),
        third,
    ]
    statement = replace_log(snp.statement(), reordered)
    result = appraise(snp.sign(statement), nonce=NONCE, policy=snp_policy, now=snp.now)
    assert_rejected(result, "runtime_log", "runtime_log_mismatch")


def test_envelope_resigned_with_another_key_is_rejected(
    snp: SnpScenario, snp_policy: Policy
) -> None:
    evidence = snp.sign(snp.statement(), ec.generate_private_key(ec.SECP256R1()))
    result = appraise(evidence, nonce=NONCE, policy=snp_policy, now=snp.now)
    assert_rejected(result, "envelope_signature", "envelope_signature_invalid")


def test_report_from_other_evidence_is_rejected(snp: SnpScenario, snp_policy: Policy) -> None:
    donor = snp.statement(nonce=fresh_nonce())
    statement = snp.statement()
    predicate = dataclasses.replace(statement.predicate, quote=donor.predicate.quote)
    statement = dataclasses.replace(statement, predicate=predicate)
    result = appraise(snp.sign(statement), nonce=NONCE, policy=snp_policy, now=snp.now)
    assert_rejected(result, "report_data", "report_data_mismatch")


def test_report_under_another_simulated_ark_is_rejected(
    snp: SnpScenario, snp_policy: Policy, tmp_path: Path
) -> None:
    other = make_snp_scenario(tmp_path / "other-guest")  # a fresh PKI: another ARK
    other = dataclasses.replace(other, key=snp.key)
    result = appraise(other.evidence(), nonce=NONCE, policy=snp_policy, now=snp.now)
    assert_rejected(result, "quote_signature", "untrusted_root")
    assert result.check("report_data").status is CheckStatus.SKIP


def test_certificate_in_evidence_that_is_not_one_is_a_named_failure(
    snp: SnpScenario, snp_policy: Policy
) -> None:
    statement = snp.statement()
    certificates = (b"not a certificate", *statement.predicate.certificates[1:])
    evidence = snp.sign(replace_predicate(statement, certificates=certificates))
    result = appraise(evidence, nonce=NONCE, policy=snp_policy, now=snp.now)
    assert_rejected(result, "quote_signature", "vcek_chain_invalid")


# -- reference values and guest-policy rules ---------------------------------------


def test_measurement_not_in_policy_is_rejected(snp: SnpScenario, tmp_path: Path) -> None:
    policy = snp.policy(tmp_path, snp=f'measurement = ["{"ab" * 48}"]')
    result = appraise(snp.evidence(), nonce=NONCE, policy=policy, now=snp.now)
    assert_rejected(result, "measurement", "measurement_not_allowed")


def test_host_data_not_allowed_is_rejected(snp: SnpScenario, tmp_path: Path) -> None:
    lines = f'measurement = ["{snp.measurement()}"]\nhost_data = ["{"cd" * 32}"]'
    result = appraise(
        snp.evidence(), nonce=NONCE, policy=snp.policy(tmp_path, snp=lines), now=snp.now
    )
    assert_rejected(result, "host_data", "host_data_not_allowed")


def test_host_data_in_policy_passes(snp: SnpScenario, tmp_path: Path) -> None:
    lines = f'measurement = ["{snp.measurement()}"]\nhost_data = ["{"00" * 32}"]'
    result = appraise(
        snp.evidence(), nonce=NONCE, policy=snp.policy(tmp_path, snp=lines), now=snp.now
    )
    assert result.check("host_data").status is CheckStatus.PASS
    assert result.status is AppraisalStatus.AFFIRMING


def test_debuggable_guest_is_rejected(
    tmp_path_factory: pytest.TempPathFactory, snp_platform: snp_pki.SimulatedPki, tmp_path: Path
) -> None:
    guest = _launched_with(
        tmp_path_factory, snp_platform, POLICY_RESERVED_ONE | POLICY_SMT | POLICY_DEBUG
    )
    result = appraise(guest.evidence(), nonce=NONCE, policy=guest.policy(tmp_path), now=guest.now)
    assert_rejected(result, "guest_policy", "debug_guest")


def test_smt_forbidden_by_policy_is_rejected_only_when_the_guest_allows_it(
    tmp_path_factory: pytest.TempPathFactory, snp_platform: snp_pki.SimulatedPki, tmp_path: Path
) -> None:
    rules = "allow_smt = false"
    with_smt = _launched_with(tmp_path_factory, snp_platform, POLICY_RESERVED_ONE | POLICY_SMT)
    policy = with_smt.policy(tmp_path, snp=f'measurement = ["{with_smt.measurement()}"]\n{rules}')
    result = appraise(with_smt.evidence(), nonce=NONCE, policy=policy, now=with_smt.now)
    assert_rejected(result, "guest_policy", "smt_allowed")

    without_smt = _launched_with(tmp_path_factory, snp_platform, POLICY_RESERVED_ONE)
    result = appraise(without_smt.evidence(), nonce=NONCE, policy=policy, now=without_smt.now)
    assert result.check("guest_policy").status is CheckStatus.PASS
    assert result.status is AppraisalStatus.AFFIRMING


def test_vmpl_not_allowed_is_rejected(snp: SnpScenario, tmp_path: Path) -> None:
    policy = snp.policy(tmp_path, snp=f'measurement = ["{snp.measurement()}"]\nvmpl = [1, 2]')
    result = appraise(snp.evidence(), nonce=NONCE, policy=policy, now=snp.now)
    assert_rejected(result, "vmpl", "vmpl_not_allowed")


def test_guest_svn_below_minimum_is_rejected(snp: SnpScenario, tmp_path: Path) -> None:
    policy = snp.policy(tmp_path, snp=f'measurement = ["{snp.measurement()}"]\nmin_guest_svn = 1')
    result = appraise(snp.evidence(), nonce=NONCE, policy=policy, now=snp.now)
    assert_rejected(result, "guest_svn", "guest_svn_too_low")


def test_reported_tcb_below_minimum_is_rejected(snp: SnpScenario, tmp_path: Path) -> None:
    above = snp_pki.TCB.snp + 1
    lines = f'measurement = ["{snp.measurement()}"]\n[snp.min_tcb]\nsnp = {above}'
    result = appraise(
        snp.evidence(), nonce=NONCE, policy=snp.policy(tmp_path, snp=lines), now=snp.now
    )
    assert_rejected(result, "reported_tcb", "tcb_too_low")


def test_reported_tcb_at_minimum_passes(snp: SnpScenario, tmp_path: Path) -> None:
    tcb = snp_pki.TCB
    minimum = (
        f"bootloader = {tcb.bootloader}\ntee = {tcb.tee}\n"
        f"snp = {tcb.snp}\nmicrocode = {tcb.microcode}"
    )
    lines = f'measurement = ["{snp.measurement()}"]\n[snp.min_tcb]\n{minimum}'
    result = appraise(
        snp.evidence(), nonce=NONCE, policy=snp.policy(tmp_path, snp=lines), now=snp.now
    )
    assert result.check("reported_tcb").status is CheckStatus.PASS
    assert result.status is AppraisalStatus.AFFIRMING


# -- the root of trust and the TEE type are never silent ---------------------------


def _policy_file(tmp_path: Path, text: str) -> Policy:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return load_policy(path)


def test_snp_evidence_is_refused_by_an_intel_policy(snp: SnpScenario, tmp_path: Path) -> None:
    policy = _policy_file(tmp_path, '[trust]\nroot = "intel"\n')
    result = appraise(snp.evidence(), nonce=NONCE, policy=policy, now=snp.now)
    assert_rejected(result, "quote_signature", "tee_not_allowed")


def test_simulated_tdx_evidence_is_refused_by_a_simulated_snp_policy(
    scenario: Scenario, snp_policy: Policy
) -> None:
    result = appraise(scenario.evidence(), nonce=NONCE, policy=snp_policy, now=scenario.now)
    assert_rejected(result, "quote_signature", "tee_not_allowed")


def test_simulated_snp_evidence_under_amd_policy_is_a_root_mismatch(
    snp: SnpScenario, tmp_path: Path
) -> None:
    policy = _policy_file(tmp_path, '[trust]\nroot = "amd"\n')
    result = appraise(snp.evidence(), nonce=NONCE, policy=policy, now=snp.now)
    assert_rejected(result, "quote_signature", "root_of_trust_mismatch")
    assert result.simulated is True
    assert result.to_json()["rootOfTrust"] == {
        "policy": "amd",
        "evidence": "attestd-simulated-amd-ark",
        "evidenceSimulated": True,
    }


# -- a real Milan report under AMD's root ---------------------------------------------

# Inside the real VCEK's validity (2022-09-24 to 2029-09-24).
MILAN_NOW = datetime(2025, 6, 23, tzinfo=UTC)
AMD_HARDWARE = TeeClaims.of(TeeDescription(TeeType.SEV_SNP, False, "amd-ark", "configfs-tsm"))


def _milan_evidence(vectors_dir: Path, certificates: tuple[bytes, ...]) -> bytes:
    """The real report as a hardware agent would ship it; REPORTDATA binds other data."""
    report = (vectors_dir / "snp" / "milan_report_v2.bin").read_bytes()
    key = ec.generate_private_key(ec.SECP256R1())
    binding = Binding(
        NONCE, subjects_digest([MODEL]), replay([]), key_id(key.public_key()), MILAN_NOW
    )
    predicate = EvidencePredicate(
        binding,
        AMD_HARDWARE,
        report,
        (),
        public_key_pem(key.public_key()),
        "0.1.0",
        {},
        certificates=certificates,
    )
    return sign_statement(Statement((MODEL,), predicate), key)


def test_real_milan_report_verifies_to_amd_but_binds_other_data(
    vectors_dir: Path, tmp_path: Path
) -> None:
    vcek = (vectors_dir / "snp" / "milan_vcek.der").read_bytes()
    # No CRL source here: revocation (on by default under AMD's root) is covered in
    # test_appraise_snp_revocation.py.
    policy = _policy_file(tmp_path, '[trust]\nroot = "amd"\n[snp]\ncheck_revocation = false\n')
    result = appraise(
        _milan_evidence(vectors_dir, (vcek,)), nonce=NONCE, policy=policy, now=MILAN_NOW
    )
    assert result.check("quote_signature").status is CheckStatus.PASS, result.to_json()["checks"]
    assert_rejected(result, "report_data", "report_data_mismatch")
    assert result.tee is TeeType.SEV_SNP
    assert result.simulated is False
    assert result.root_of_trust.policy == "amd"
    assert result.root_of_trust.evidence == "amd-ark"


def test_real_milan_report_takes_its_vcek_from_the_offline_store(
    vectors_dir: Path, tmp_path: Path
) -> None:
    report = parse_report((vectors_dir / "snp" / "milan_report_v2.bin").read_bytes())
    store = tmp_path / "vcek"
    store.mkdir()
    vcek = (vectors_dir / "snp" / "milan_vcek.der").read_bytes()
    offline_path(store, report.chip_id, report.reported_tcb).write_bytes(vcek)
    # A version 2 report does not name its product; the policy does.
    policy = _policy_file(
        tmp_path,
        f'[trust]\nroot = "amd"\n[snp]\nproduct = "Milan"\nvcek_store = "{store}"\n'
        "check_revocation = false\n",
    )
    result = appraise(_milan_evidence(vectors_dir, ()), nonce=NONCE, policy=policy, now=MILAN_NOW)
    assert result.check("quote_signature").status is CheckStatus.PASS, result.to_json()["checks"]
    assert result.check("report_data").reason == "report_data_mismatch"


def test_real_milan_report_takes_its_vcek_from_the_offline_store_without_a_product(
    vectors_dir: Path, tmp_path: Path
) -> None:
    report = parse_report((vectors_dir / "snp" / "milan_report_v2.bin").read_bytes())
    store = tmp_path / "vcek"
    store.mkdir()
    vcek = (vectors_dir / "snp" / "milan_vcek.der").read_bytes()
    offline_path(store, report.chip_id, report.reported_tcb).write_bytes(vcek)
    policy = _policy_file(
        tmp_path,
        f'[trust]\nroot = "amd"\n[snp]\nvcek_store = "{store}"\ncheck_revocation = false\n',
    )
    result = appraise(_milan_evidence(vectors_dir, ()), nonce=NONCE, policy=policy, now=MILAN_NOW)
    assert result.check("quote_signature").status is CheckStatus.PASS, result.to_json()["checks"]
