"""Seed corpus for every target in fuzz/targets.py: real vectors, simulator output, example files.

    python fuzz/seeds.py                       # writes fuzz/corpus/seeds/<target>/ and files/
    python fuzz/seeds.py --out DIR --vectors ../shared/vectors

Seeds are valid inputs, so that mutation starts deep inside each parser:

- the real TDX quotes, CCEL table and log, SEV-SNP report and DCAP collateral in
  ``../shared/vectors`` (with smaller pieces of the long CCEL log);
- output of attestd's simulators: a simulated SNP report and its GHCB
  certificate table, simulated DCAP collateral, TDX and SNP evidence
  envelopes and their statements, a four-stage pipeline's stage attestations
  and provenance payloads, and EAR tokens of an appraisal (signed with the fixed
  key in fuzz/targets.py, both as tokens and as bare claims);
- the example config (systemd/attestd.toml), every TOML block of docs/, and the
  policy and layout files the simulators' tests write.

``files/`` holds what those files name (the simulated roots), and is where the
config, policy and layout targets write their inputs. The simulators need the
test helpers in tests/verifier, so run this from the repository root.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

DEFAULT_OUT = REPO_ROOT / "fuzz" / "corpus" / "seeds"
DEFAULT_VECTORS = REPO_ROOT.parent / "shared" / "vectors"


def _write(out: Path, target: str, seeds: Iterable[bytes]) -> int:
    directory = out / target
    directory.mkdir(parents=True, exist_ok=True)
    count = 0
    for data in seeds:
        (directory / f"seed-{hashlib.sha256(data).hexdigest()[:16]}").write_bytes(data)
        count += 1
    return count


def _vector_seeds(vectors: Path) -> dict[str, list[bytes]]:
    from attestd.tee.tdx.ccel import parse_event_log

    tdx, snp = vectors / "tdx", vectors / "snp"
    quotes = [
        (tdx / name).read_bytes()
        for name in ("dcapqvl_quote_v4.bin", "spr_e4_quote_v4.bin", "cos113_quote_v4_padded.bin")
    ]
    # The quotes without padding, and the padded one cut to 6000 bytes (libFuzzer's max_len).
    trimmed = [q[: 0x27C + int.from_bytes(q[0x278:0x27C], "little")] for q in quotes]
    log = (tdx / "cos113_ccel_data.bin").read_bytes()
    starts = [e.offset for e in parse_event_log(log).events] + [len(log.rstrip(b"\xff"))]
    head = log[: starts[0]]
    # Small pieces keep each parse cheap: header alone, with leading or trailing records.
    logs = [head, log[: starts[3]], log[: starts[6]], head + log[starts[-4] : starts[-1]], log]
    return {
        "tdx_quote": [*trimmed, quotes[2][:6000]],
        "ccel_table": [(tdx / "cos113_ccel_table.bin").read_bytes()],
        "ccel_log": logs,
        "snp_report": [(snp / "milan_report_v2.bin").read_bytes()],
        "dcap_collateral": [(tdx / "dcapqvl_quote_v4.collateral.json").read_bytes()],
    }


def _toml_blocks(markdown: str) -> list[str]:
    return re.findall(r"```toml\n(.*?)```", markdown, flags=re.DOTALL)


def _kind(toml: str) -> str:
    """Which loader a TOML example is for, by the tables it has."""
    if "[[stages]]" in toml or re.search(r"^pipeline\s*=", toml, flags=re.MULTILINE):
        return "layout"
    if "[trust]" in toml:
        return "policy"
    return "agent_config"


def _file_seeds(files: Path) -> dict[str, list[bytes]]:
    """Example config/policy/layout files of the repository (docs and systemd/)."""
    found: dict[str, list[bytes]] = {"agent_config": [], "policy": [], "layout": []}
    found["agent_config"].append((REPO_ROOT / "systemd" / "attestd.toml").read_bytes())
    for doc in sorted((REPO_ROOT / "docs").glob("*.md")):
        for block in _toml_blocks(doc.read_text(encoding="utf-8")):
            found[_kind(block)].append(block.encode())
    return found


def _simulated_seeds(files: Path, work: Path) -> dict[str, list[bytes]]:
    from attestd.evidence import open_evidence
    from attestd.evidence.provenance import StageAttestation
    from attestd.tee.snp import _simulated_pki as snp_pki
    from attestd.tee.tdx.simulated import SimulatedTdxBackend
    from attestd.verifier import appraise
    from attestd.verifier.ear import policy_digest, sign_result
    from fuzz.targets import EAR_KEY, EAR_NONCE, EAR_NOW
    from tests.verifier.chain_builder import Pipeline, make_snp_agent, make_tdx_agent
    from tests.verifier.simulated_evidence import NONCE, make_scenario
    from tests.verifier.snp_evidence import make_snp_scenario

    platform = snp_pki.generate()
    tdx = make_scenario(work / "tdx")
    snp = make_snp_scenario(work / "snp", platform=platform)
    report, table = snp.backend.get_report_with_certificates(bytes(range(64)))
    envelopes = [tdx.evidence(), snp.evidence()]
    statements = [bytes(open_evidence(e)[0].payload) for e in envelopes]

    tdx_policy = tdx.policy(files)  # writes root.pem and policy.toml into files
    policies = [(files / "policy.toml").read_bytes()]
    snp.policy(files)  # writes ark.pem and policy.toml
    policies.append((files / "policy.toml").read_bytes())

    result = appraise(tdx.evidence(), nonce=NONCE, policy=tdx_policy, now=tdx.now)
    digest = policy_digest(policies[0])
    tokens = [
        sign_result(result, EAR_KEY, policy_digest=digest, nonce=EAR_NONCE, now=EAR_NOW),
        sign_result(result, EAR_KEY, policy_digest=digest, now=EAR_NOW),
    ]
    claims = [base64.urlsafe_b64decode(t.split(".")[1] + "==") for t in tokens]

    tdx_agent = make_tdx_agent(work / "stage-tdx")
    snp_agent = make_snp_agent(work / "stage-snp", platform)
    agents = {"prepare": tdx_agent, "train": snp_agent, "quantize": tdx_agent, "package": snp_agent}
    pipeline = Pipeline(agents)
    built = pipeline.run()
    attestations = [b.attestation for b in built.values()]
    provenances = [
        base64.b64decode(json.loads(StageAttestation.from_json(a).provenance)["payload"])
        for a in attestations
    ]
    layout = pipeline.layout(files).read_bytes()
    collateral = SimulatedTdxBackend.open(work / "tdx").collateral_json().encode()
    return {
        "snp_report": [report],
        "snp_cert_table": [table],
        "dcap_collateral": [collateral],
        "evidence_envelope": envelopes,
        "evidence_statement": statements,
        "stage_attestation": attestations,
        "stage_provenance": provenances,
        # Mode byte: 1 checks the nonce (only the first token carries it), 0 does not.
        "ear_token": [b"\x01" + tokens[0].encode(), b"\x00" + tokens[1].encode()],
        "ear_claims": [b"\x01" + claims[0], b"\x00" + claims[1]],
        "policy": policies,
        "layout": [layout],
    }


def generate(out: Path, vectors: Path) -> dict[str, int]:
    """Write every target's seeds under ``out`` (replacing what was there); count per target."""
    from fuzz.targets import TARGET_NAMES

    shutil.rmtree(out, ignore_errors=True)
    files = out / "files"
    files.mkdir(parents=True)
    seeds: dict[str, list[bytes]] = {name: [] for name in TARGET_NAMES}
    with tempfile.TemporaryDirectory(prefix="attestd-seeds-") as work:
        parts = (
            _vector_seeds(vectors),
            _file_seeds(files),
            _simulated_seeds(files, Path(work)),
        )
    for part in parts:
        for name, found in part.items():
            seeds[name].extend(found)
    # The simulators' files written into files/ are not seeds of their own.
    (files / "policy.toml").unlink()
    (files / "layout.toml").unlink()
    return {name: _write(out, name, found) for name, found in seeds.items()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--vectors", type=Path, default=DEFAULT_VECTORS)
    args = parser.parse_args(argv)
    if not args.vectors.is_dir():
        print(f"vectors not found at {args.vectors}; pass --vectors", file=sys.stderr)
        return 2
    counts = generate(args.out, args.vectors)
    for name, count in counts.items():
        print(f"{name:20} {count:3} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
