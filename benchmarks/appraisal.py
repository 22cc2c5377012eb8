"""Appraisals per second on one core, against the bare quote check on the same quotes.

Simulated TDX and SEV-SNP evidence is built the way the agent builds it (a
fresh quote over each binding, the runtime log, the agent key's DSSE
signature), each piece with its own nonce and so its own quote, as a verifier
sees them. Then, in this process, pinned to one core:

- attestd: ``attestd.verifier.appraise`` on every piece of evidence (all the
  checks: envelope, agent key, quote to the simulated root, TCB status with
  the evidence's collateral, REPORTDATA, nonce, log replay, policy values);
- the baseline for TDX: ``dcap_qvl.verify_with_root_ca`` on the same quotes,
  with the same collateral and root;
- the baseline for SEV-SNP: the report's ECDSA P-384 signature under the VCEK
  and the VCEK → ASK → ARK RSA-PSS chain, with ``cryptography`` directly
  (certificates parsed on every call, as a minimal verifier does).

attestd and its baseline take turns on blocks of 10 items, over ``--repeats``
chunks of ``--count`` items each, so that a busy neighbour slows both alike;
each chunk gives one ratio, and the ratio reported is their median (the table
shows their range). attestd with its caches off
(``attestd.tee._cache.caching(False)``) is a reference, measured afterwards
against the baseline in the same way: interleaved with the pair above, its
cold parsing would evict their working sets and slow whichever ran next.

Each repeat appraises evidence never appraised before (a verifier never sees
a nonce twice), after one warm-up pass on other evidence that fills the
caches as a running verifier's are. A second table splits a TDX appraisal
into its costly stages (median microseconds, on fresh evidence, in the
appraisal's order) beside one ``dcap_qvl.verify_with_root_ca``. The last line
is one JSON object: ``tdx_appraisal_over_dcap_qvl`` is attestd's appraisals/s
over dcap-qvl's verifications/s, ``snp_appraisal_over_signature_check`` the
same against the SEV-SNP signature and chain check.

    make bench-appraisal                # or: python benchmarks/appraisal.py --count 200
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import dcap_qvl
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.utils import CryptographyDeprecationWarning

from attestd.conformance._evidence import MODEL, binding, demo_events, simulated_statement
from attestd.evidence import (
    RuntimeEvent,
    event_digest,
    format_rfc3339,
    load_public_key_pem,
    open_evidence,
    sign_statement,
    verify_envelope,
)
from attestd.tee import _cache
from attestd.tee.backend import Attestation, TeeDescription
from attestd.tee.snp.abi import parse_report
from attestd.tee.snp.simulated import SimulatedSnpBackend
from attestd.tee.tdx.abi import parse_quote
from attestd.tee.tdx.collateral import Collateral
from attestd.tee.tdx.dcap import DcapOptions, verify_with_collateral
from attestd.tee.tdx.simulated import SimulatedTdxBackend
from attestd.tee.tdx.verify import VerifyOptions, verify_quote
from attestd.verifier import AppraisalStatus, appraise, load_policy
from attestd.verifier.policy import Policy


class _Backend(Protocol):
    def attest(self, report_data: bytes) -> Attestation: ...
    def describe(self) -> TeeDescription: ...
    def trust_root_pem(self) -> bytes: ...


@dataclass(frozen=True)
class Workload:
    """Evidence, the nonce each answers, and the policy that affirms it."""

    name: str
    items: list[tuple[bytes, bytes, bytes]]  # (evidence, nonce, its quote)
    policy: Policy
    now: datetime


def _build(
    name: str,
    backend: SimulatedTdxBackend | SimulatedSnpBackend,
    events: Sequence[RuntimeEvent],
    count: int,
    policy: Policy,
) -> Workload:
    key = ec.generate_private_key(ec.SECP256R1())
    issued_at = datetime.now(UTC).replace(microsecond=0)
    items = []
    for _ in range(count):
        nonce = os.urandom(32)
        # A lone request is a batch of one (the agent's one evidence format): the quote
        # binds that tree's root, and the evidence carries the (empty) inclusion proof.
        bound = binding(key, (MODEL,), events, nonce=nonce, issued_at=issued_at)
        statement = simulated_statement(backend, key, (MODEL,), events, bound, host="bench")
        evidence = sign_statement(statement, key)
        items.append((evidence, nonce, statement.predicate.quote))
    return Workload(name, items, policy, issued_at + timedelta(seconds=2))


def _policy(directory: Path, backend: _Backend, table: str) -> Policy:
    (directory / "root.pem").write_bytes(backend.trust_root_pem())
    lines = ["[trust]", 'root = "simulated"', 'simulated_root = "root.pem"', table]
    lines += ["[[artifacts]]", f'name = "{MODEL.name}"', f'sha256 = "{MODEL.digest["sha256"]}"']
    (directory / "policy.toml").write_text("\n".join(lines) + "\n")
    return load_policy(directory / "policy.toml")


def tdx_workload(directory: Path, count: int) -> tuple[Workload, Callable[[bytes], None]]:
    backend = SimulatedTdxBackend.open(directory / "tdx")
    events = demo_events(format_rfc3339(datetime.now(UTC)))
    for event in events:
        backend.extend_runtime_register(event_digest(event))
    body = parse_quote(backend.get_quote(bytes(64))).body
    table = "\n".join(
        ["[tdx]", f'mrtd = ["{body.mr_td.hex()}"]']
        + [f'rtmr{i} = ["{body.rtmrs[i].hex()}"]' for i in range(3)]
    )
    workload = _build("TDX", backend, events, count, _policy(directory, backend, table))
    collateral = Collateral.from_json(backend.collateral_json()).to_dcap()
    root_der = backend.trust_root_der()
    now_secs = int(workload.now.timestamp())

    def dcap_check(quote: bytes) -> None:
        dcap_qvl.verify_with_root_ca(quote, collateral, root_der, now_secs)

    return workload, dcap_check


_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)


def snp_workload(directory: Path, count: int) -> tuple[Workload, Callable[[bytes], None]]:
    backend = SimulatedSnpBackend.open(directory / "snp")
    events = demo_events(format_rfc3339(datetime.now(UTC)))
    measurement = parse_report(backend.get_quote(bytes(64))).measurement.hex()
    table = f'[snp]\nmeasurement = ["{measurement}"]'
    workload = _build("SEV-SNP", backend, events, count, _policy(directory, backend, table))
    vcek_der, ask_der, ark_der = backend.attest(bytes(64)).certificates[:3]

    def signature_check(raw: bytes) -> None:
        # What a minimal verifier does: parse the certificates, check the chain and the report.
        with warnings.catch_warnings():  # AMD's serial-0 VCEK, as load_certificate allows
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            vcek, ask, ark = (
                x509.load_der_x509_certificate(d) for d in (vcek_der, ask_der, ark_der)
            )
        for child, issuer in ((vcek, ask), (ask, ark), (ark, ark)):
            issuer.public_key().verify(  # type: ignore[call-arg, union-attr]
                child.signature,
                child.tbs_certificate_bytes,
                _PSS,  # type: ignore[arg-type]
                hashes.SHA384(),
            )
        report = parse_report(raw)
        key = vcek.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        signature = encode_dss_signature(report.signature_r, report.signature_s)
        key.verify(signature, report.signed_region, ec.ECDSA(hashes.SHA384()))

    return workload, signature_check


_STAGE_ITEMS = 100  # TDX evidence (three pieces each) for the table of stages

_BLOCK = 10  # items per turn: each contender sees the same load on a shared machine


def _interleaved(
    runs: dict[str, Callable[[Sequence[tuple[bytes, bytes, bytes]]], None]],
    chunks: Sequence[Sequence[tuple[bytes, bytes, bytes]]],
) -> dict[str, list[float]]:
    """Items/s of each of ``runs`` per chunk, the runs taking turns on blocks of ``_BLOCK``."""
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for chunk in chunks:
        spent = dict.fromkeys(runs, 0.0)
        for start in range(0, len(chunk), _BLOCK):
            block = chunk[start : start + _BLOCK]
            for name, run in runs.items():
                began = time.perf_counter()
                run(block)
                spent[name] += time.perf_counter() - began
        for name in runs:
            rates[name].append(len(chunk) / spent[name])
    return rates


def measure(
    workload: Workload, baseline: Callable[[bytes], None], repeats: int
) -> dict[str, float]:
    """Median items/s of attestd and of the baseline, and of attestd without caches.

    attestd and the baseline take turns on blocks of ``_BLOCK`` items within
    each repeat, so that a busy neighbour slows both alike; the ratio is the
    median of the per-repeat ratios. attestd without caches is a reference
    measured in a pass of its own (against the baseline, taking turns the same
    way): its allocations and cold parsing would otherwise slow whichever
    contender ran next, which is not the steady state of a verifier.
    """
    size = len(workload.items) // (2 * repeats + 1)
    chunks = [workload.items[i * size : (i + 1) * size] for i in range(2 * repeats + 1)]

    def appraise_all(items: Sequence[tuple[bytes, bytes, bytes]]) -> None:
        for evidence, nonce, _ in items:
            result = appraise(evidence, nonce=nonce, policy=workload.policy, now=workload.now)
            if result.status is not AppraisalStatus.AFFIRMING:
                raise SystemExit(f"{workload.name} evidence not affirmed: {result.reasons}")

    def check_all(items: Sequence[tuple[bytes, bytes, bytes]]) -> None:
        for _, _, quote in items:
            baseline(quote)

    def uncached(items: Sequence[tuple[bytes, bytes, bytes]]) -> None:
        with _cache.caching(False):
            appraise_all(items)

    _cache.clear_all()
    appraise_all(chunks[0])  # a running verifier's caches: platform, chain, collateral
    main = _interleaved({"attestd": appraise_all, "baseline": check_all}, chunks[1 : repeats + 1])
    cold = _interleaved({"no_cache": uncached, "baseline": check_all}, chunks[repeats + 1 :])
    ratios = [a / b for a, b in zip(main["attestd"], main["baseline"], strict=True)]
    cold_ratios = [a / b for a, b in zip(cold["no_cache"], cold["baseline"], strict=True)]
    return {
        "attestd": statistics.median(main["attestd"]),
        "baseline": statistics.median(main["baseline"]),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "attestd_no_cache": statistics.median(cold["no_cache"]),
        "ratio_no_cache": statistics.median(cold_ratios),
    }


def tdx_stages(
    workload: Workload, baseline: Callable[[bytes], None], items: int
) -> list[tuple[str, float]]:
    """Median microseconds of each costly stage of a TDX appraisal, on evidence never seen.

    The stages run in the appraisal's order on one piece of evidence, so that each
    finds the caches as the appraisal's own step does (the quote's signature, checked
    by the quote step, is not checked again by the TCB step); ``appraise`` runs on
    another piece, and the baseline on the quote of a third. What the whole appraisal
    spends beyond the stages is the other checks (binding, batch proof, nonce,
    subjects, log replay, freshness, policy values) and the bookkeeping.
    """
    root = workload.policy.trust.simulated_root
    assert root is not None  # a simulated policy
    names: tuple[str, ...] = (
        "parse envelope + statement",
        "envelope signature",
        "quote parse + signature",
        "TCB status (dcap verdict)",
    )
    samples: dict[str, list[float]] = {n: [] for n in (*names, "appraise", "dcap-qvl")}
    fresh = iter(workload.items[-3 * items :])
    for _ in range(items):
        (evidence, _, _), (whole, nonce, _), (_, _, other_quote) = (
            next(fresh),
            next(fresh),
            next(fresh),
        )
        marks = [time.perf_counter()]
        envelope, statement = open_evidence(evidence)
        marks.append(time.perf_counter())
        verify_envelope(envelope, load_public_key_pem(statement.predicate.agent_key_pem))
        marks.append(time.perf_counter())
        quote = verify_quote(
            parse_quote(statement.predicate.quote), VerifyOptions([root], workload.now)
        )
        marks.append(time.perf_counter())
        assert statement.predicate.collateral is not None
        collateral = Collateral.from_mapping(statement.predicate.collateral)
        verify_with_collateral(quote, collateral, DcapOptions(workload.now, root))
        marks.append(time.perf_counter())
        appraise(whole, nonce=nonce, policy=workload.policy, now=workload.now)
        marks.append(time.perf_counter())
        baseline(other_quote)
        marks.append(time.perf_counter())
        for name, began, ended in zip(samples, marks[:-1], marks[1:], strict=True):
            samples[name].append((ended - began) * 1e6)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    rest = medians["appraise"] - sum(medians[n] for n in names)
    return [
        *((n, medians[n]) for n in names),
        ("other checks + bookkeeping", rest),
        ("appraise (whole)", medians["appraise"]),
        ("dcap_qvl.verify_with_root_ca", medians["dcap-qvl"]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300, help="appraisals per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    total = args.count * (2 * args.repeats + 1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for make, baseline_name in (
            (tdx_workload, "dcap_qvl.verify_with_root_ca"),
            (snp_workload, "report signature + VCEK chain"),
        ):
            directory = Path(tmp) / make.__name__
            directory.mkdir()
            workload, baseline = make(directory, total + 3 * _STAGE_ITEMS)
            measured = dataclasses.replace(workload, items=workload.items[:total])
            rows.append((workload.name, baseline_name, measure(measured, baseline, args.repeats)))
            if make is tdx_workload:
                stages = tdx_stages(workload, baseline, _STAGE_ITEMS)  # the items left over
    print(
        f"{'TEE':8} {'attestd/s':>10} {'baseline/s':>11} {'ratio':>6} {'range':>11} "
        f"{'no cache/s':>11} {'ratio':>6}  baseline"
    )
    for name, baseline_name, r in rows:
        spread = f"{r['ratio_min']:.2f}-{r['ratio_max']:.2f}"
        print(
            f"{name:8} {r['attestd']:10.0f} {r['baseline']:11.0f} {r['ratio']:6.2f} {spread:>11} "
            f"{r['attestd_no_cache']:11.0f} {r['ratio_no_cache']:6.2f}  {baseline_name}"
        )
    print(f"\n{'TDX stage (median of ' + str(_STAGE_ITEMS) + ')':34} {'us':>7}")
    for name, micros in stages:
        print(f"{name:34} {micros:7.0f}")
    tdx, snp = rows[0][2], rows[1][2]
    summary = {
        "tdx_appraisal_over_dcap_qvl": round(tdx["ratio"], 3),
        "snp_appraisal_over_signature_check": round(snp["ratio"], 3),
        "tdx_appraisals_per_s": round(tdx["attestd"], 1),
        "tdx_appraisals_per_s_no_cache": round(tdx["attestd_no_cache"], 1),
        "dcap_qvl_verifications_per_s": round(tdx["baseline"], 1),
        "snp_appraisals_per_s": round(snp["attestd"], 1),
        "snp_appraisals_per_s_no_cache": round(snp["attestd_no_cache"], 1),
        "snp_signature_checks_per_s": round(snp["baseline"], 1),
        "tdx_ratio_range": [round(tdx["ratio_min"], 3), round(tdx["ratio_max"], 3)],
        "tdx_no_cache_over_dcap_qvl": round(tdx["ratio_no_cache"], 3),
        "tdx_stage_us": {name: round(micros, 1) for name, micros in stages},
        "count": args.count,
        "repeats": args.repeats,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
