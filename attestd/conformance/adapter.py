"""attestd's own adapter: judge one conformance case with attestd's library.

    verdict = judge(case, suite.root)
    verdict.line()              # "accept" or "refuse nonce_mismatch"

The same code answers ``attestctl conformance adapter`` (the command the runner
calls, docs/conformance.md "The adapter protocol") and runs in-process in the
tests and in the generator's self-check. Per case kind:

- ``evidence``: ``appraise`` with the case's policy, nonce, ``now`` and
  checkpoint; refused when any check fails, with the first failed check's reason;
- ``quote``: ``verifier.quote.verify_tdx`` under the case's root (Intel's when the
  case has none), with the case's DCAP ``collateral`` when it has one;
- ``quote-snp``: ``verifier.quote.verify_snp`` of an SEV-SNP report, under the case's
  ``root`` (AMD's pinned ARKs when it has none), with its GHCB ``certs`` table or its
  ``vcek`` when it has them;
- ``ear``: ``verify_result`` with the case's key and nonce;
- ``chain``: ``verify_chain`` of the ``attestation_N`` files under the case's
  ``layout``; refused with the first failed check's reason (stages, then chain);
- anything else: ``refuse conformance_kind_unsupported``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from attestd.conformance.manifest import ACCEPT, REFUSE, Case, case_inputs
from attestd.errors import AttestdError
from attestd.evidence import LogCheckpoint
from attestd.verifier import (
    CheckStatus,
    ResultError,
    appraise,
    load_policy,
    load_verification_key,
    verify_result,
)
from attestd.verifier.chain import verify_chain
from attestd.verifier.layout import load_layout
from attestd.verifier.oms import OmsClosing
from attestd.verifier.quote import VerifyRequest, verify_snp, verify_tdx

__all__ = ["KIND_UNSUPPORTED", "Verdict", "judge", "judge_files"]

KIND_UNSUPPORTED = "conformance_kind_unsupported"


@dataclass(frozen=True)
class Verdict:
    """An adapter's answer; ``others`` are further failure reasons (evidence only)."""

    outcome: str
    reason: str | None = None
    detail: str = ""
    others: tuple[str, ...] = ()

    def line(self) -> str:
        """The protocol line: ``accept`` or ``refuse REASON``."""
        return self.outcome if self.reason is None else f"{self.outcome} {self.reason}"


def _refuse(reason: str, detail: str, others: tuple[str, ...] = ()) -> Verdict:
    return Verdict(REFUSE, reason, detail, others)


def judge(case: Case, root: Path) -> Verdict:
    """The verdict of attestd on ``case`` (its inputs under ``root``)."""
    with case_inputs(case, root) as inputs:  # synthesized inputs exist for the call only
        return judge_files(case.kind, inputs, case.now)


def judge_files(kind: str, inputs: dict[str, Path], now: datetime) -> Verdict:
    """The verdict on one case given as files by role, as the adapter command gets them."""
    try:
        if kind == "evidence":
            return _evidence(inputs, now)
        if kind == "quote":
            return _quote(inputs, now)
        if kind == "quote-snp":
            return _quote_snp(inputs, now)
        if kind == "ear":
            return _ear(inputs, now)
        if kind == "chain":
            return _chain(inputs, now)
    except AttestdError as err:  # unreadable inputs: a refusal with its own reason
        return _refuse(err.reason, err.message)
    return _refuse(KIND_UNSUPPORTED, f"attestd's adapter has no {kind!r} cases")


def _nonce(inputs: dict[str, Path]) -> bytes:
    return bytes.fromhex(inputs["nonce"].read_text().strip())


def _evidence(inputs: dict[str, Path], now: datetime) -> Verdict:
    checkpoint = None
    if "checkpoint" in inputs:
        document = json.loads(inputs["checkpoint"].read_bytes())
        checkpoint = LogCheckpoint(document["length"], bytes.fromhex(document["head"]))
    result = appraise(
        inputs["evidence"].read_bytes(),
        nonce=_nonce(inputs),
        policy=load_policy(inputs["policy"]),
        now=now,
        checkpoint=checkpoint,
    )
    failures = [c for c in result.checks if c.status is CheckStatus.FAIL]
    if not failures:
        return Verdict(ACCEPT, detail=result.status.value)
    first = failures[0]
    # Other reasons only: a debug TD fails tcb_status and debug, both for debug_td.
    others = tuple(dict.fromkeys(c.reason or "" for c in failures if c.reason != first.reason))
    return _refuse(first.reason or "", f"{first.name}: {first.detail}", others)


def _quote(inputs: dict[str, Path], now: datetime) -> Verdict:
    root = str(inputs["root"]) if "root" in inputs else None
    request = VerifyRequest(now, root=root, collateral=inputs.get("collateral"))
    result = verify_tdx(inputs["quote"].read_bytes(), request)
    if result.valid:
        return Verdict(ACCEPT, detail=result.message)
    return _refuse(result.reason or "", result.message)


def _quote_snp(inputs: dict[str, Path], now: datetime) -> Verdict:
    root = str(inputs["root"]) if "root" in inputs else None
    request = VerifyRequest(now, root=root, vcek=inputs.get("vcek"), certs=inputs.get("certs"))
    result = verify_snp(inputs["quote"].read_bytes(), request)
    if result.valid:
        return Verdict(ACCEPT, detail=result.message)
    return _refuse(result.reason or "", result.message)


def _ear(inputs: dict[str, Path], now: datetime) -> Verdict:
    key = load_verification_key(inputs["key"].read_bytes())
    try:
        verify_result(inputs["token"].read_bytes(), key, nonce=_nonce(inputs), now=now)
    except ResultError as err:
        return _refuse(err.reason, err.message)
    return Verdict(ACCEPT)


def _chain(inputs: dict[str, Path], now: datetime) -> Verdict:
    roles = sorted(
        (r for r in inputs if r.startswith("attestation_")), key=lambda r: int(r.split("_")[1])
    )
    oms = None
    if "oms_bundle" in inputs:  # a chain closed by an OpenSSF model signing bundle
        oms = OmsClosing(inputs["oms_bundle"], public_key=inputs.get("oms_key"))
    result = verify_chain(
        [inputs[r].read_bytes() for r in roles],
        load_layout(inputs["layout"]),
        labels=roles,
        now=now,
        oms=oms,
    )
    failures = result.failures
    if not failures:
        return Verdict(ACCEPT, detail=result.status.value)
    first = failures[0]
    # A stage that cannot be placed fails its neighbours' links for the same reason.
    others = tuple(dict.fromkeys(c.reason or "" for c in failures if c.reason != first.reason))
    where = f"stage {first.stage}: " if first.stage else ""
    return _refuse(first.reason or "", f"{where}{first.name}: {first.detail}", others)
