"""The CC event log: a real TD's CCEL replays to RTMR0-2 of its real quote, and a changed one
does not."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from attestd.evidence import (
    Binding,
    CcelBlob,
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
from attestd.tee.tdx.ccel import TPM_ALG_SHA384, parse_event_log
from attestd.verifier import AppraisalResult, CheckStatus, Policy, appraise, load_policy
from tests.verifier.simulated_evidence import MODEL, NONCE

# The real quotes' PCK chains are valid on this date (see ../shared/vectors/README.md).
VECTOR_NOW = datetime(2025, 6, 23, tzinfo=UTC)
HARDWARE = TeeClaims.of(TeeDescription(TeeType.TDX, False, "intel-sgx-root-ca", "configfs-tsm"))


def _intel_policy(tmp_path: Path, tdx: str = "") -> Policy:
    path = tmp_path / "intel.toml"
    path.write_text(f'[trust]\nroot = "intel"\n[tdx]\n{tdx}\n')
    return load_policy(path)


def _cos113(vectors_dir: Path, name: str) -> bytes:
    return (vectors_dir / "tdx" / f"cos113_{name}.bin").read_bytes()


def _ccel(vectors_dir: Path) -> CcelBlob:
    return CcelBlob(table=_cos113(vectors_dir, "ccel_table"), log=_cos113(vectors_dir, "ccel_data"))


def _appraise(vectors_dir: Path, ccel: CcelBlob | None, policy: Policy) -> AppraisalResult:
    """The real cos-113 quote as a hardware agent would ship it (REPORTDATA binds other data)."""
    key = ec.generate_private_key(ec.SECP256R1())
    binding = Binding(
        NONCE, subjects_digest([MODEL]), replay([]), key_id(key.public_key()), VECTOR_NOW
    )
    predicate = EvidencePredicate(
        binding,
        HARDWARE,
        _cos113(vectors_dir, "quote_v4_padded"),
        (),
        public_key_pem(key.public_key()),
        "0.1.0",
        {},
        ccel=ccel,
    )
    evidence = sign_statement(Statement((MODEL,), predicate), key)
    return appraise(evidence, nonce=NONCE, policy=policy, now=VECTOR_NOW)


def test_real_ccel_replays_to_the_real_quotes_rtmrs(vectors_dir: Path, tmp_path: Path) -> None:
    result = _appraise(vectors_dir, _ccel(vectors_dir), _intel_policy(tmp_path))
    assert result.check("quote_signature").status is CheckStatus.PASS, result.to_json()["checks"]
    ccel = result.check("ccel")
    assert ccel.status is CheckStatus.PASS, ccel
    assert "RTMR0-2" in ccel.detail
    # The quote binds the TD's own REPORTDATA, not this evidence.
    assert result.check("report_data").reason == "report_data_mismatch"


def test_ccel_with_a_changed_event_digest_is_rejected(vectors_dir: Path, tmp_path: Path) -> None:
    blob = _ccel(vectors_dir)
    log = parse_event_log(blob.log)
    # The first record extending an RTMR: flip the first byte of its SHA-384 digest.
    event = next(e for e in log.events if e.rtmr_index is not None and e.rtmr_index < 3)
    digest = event.digests[TPM_ALG_SHA384]
    at = blob.log.index(digest, event.offset)
    changed = bytearray(blob.log)
    changed[at] ^= 0xFF
    tampered = CcelBlob(table=blob.table, log=bytes(changed))
    result = _appraise(vectors_dir, tampered, _intel_policy(tmp_path))
    assert result.check("quote_signature").status is CheckStatus.PASS
    ccel = result.check("ccel")
    assert (ccel.status, ccel.reason) == (CheckStatus.FAIL, "ccel_mismatch"), ccel
    assert f"RTMR{event.rtmr_index}" in ccel.detail


def test_ccel_with_its_last_event_dropped_is_rejected(vectors_dir: Path, tmp_path: Path) -> None:
    blob = _ccel(vectors_dir)
    last = parse_event_log(blob.log).events[-1]
    assert last.rtmr_index is not None and last.rtmr_index < 3  # an RTMR the check covers
    truncated = CcelBlob(table=blob.table, log=blob.log[: last.offset])
    result = _appraise(vectors_dir, truncated, _intel_policy(tmp_path))
    ccel = result.check("ccel")
    assert (ccel.status, ccel.reason) == (CheckStatus.FAIL, "ccel_mismatch"), ccel


def test_missing_ccel_is_rejected_when_required(vectors_dir: Path, tmp_path: Path) -> None:
    result = _appraise(vectors_dir, None, _intel_policy(tmp_path, "require_ccel = true"))
    ccel = result.check("ccel")
    assert (ccel.status, ccel.reason) == (CheckStatus.FAIL, "ccel_missing"), ccel


def test_missing_ccel_is_skipped_when_not_required(vectors_dir: Path, tmp_path: Path) -> None:
    result = _appraise(vectors_dir, None, _intel_policy(tmp_path))
    assert result.check("quote_signature").status is CheckStatus.PASS
    ccel = result.check("ccel")
    assert (ccel.status, ccel.reason) == (CheckStatus.SKIP, None), ccel
