"""Build the conformance suite, byte for byte the same from the same seed.

    python -m attestd.conformance.generate conformance/      # what `make conformance` runs

Every case is made with attestd's own simulators and library (the simulated
TDX platform, ``sign_statement``, the Merkle batch, ``sign_result``) under
:func:`~attestd.conformance._seeded.seeded`, at injected times, never the wall
clock. Before a case is written, attestd's adapter judges it and the generator
refuses to write a case whose verdict is not the expected one: a refusal case
triggers its reason and no other failed check (docs/conformance.md).
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import json
import shutil
import struct
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from attestd.conformance import _chains as chains
from attestd.conformance import _evidence as simulated
from attestd.conformance import _fixtures as fixtures
from attestd.conformance import adapter
from attestd.conformance._seeded import DeterministicKey, SeededStream, seeded
from attestd.conformance.manifest import ACCEPT, MANIFEST, REFUSE, SUITE_VERSION, load_suite
from attestd.conformance.runner import check_vectors
from attestd.evidence import (
    BatchMembership,
    Binding,
    CcelBlob,
    LogCheckpoint,
    RuntimeEvent,
    Statement,
    Subject,
    event_digest,
    format_rfc3339,
    key_id,
    leaf_bytes,
    public_key_pem,
    replay,
    report_data_for,
    report_data_for_root,
    sign_statement,
)
from attestd.evidence.envelope import sign_json
from attestd.evidence.merkle import inclusion_proofs, tree_root
from attestd.evidence.provenance import StageAttestation
from attestd.evidence.stack import (
    PYTHON_DISTRIBUTIONS,
    Distribution,
    SoftwareStack,
    content_sha256,
    list_content,
)
from attestd.evidence.stack import Claim as StackClaim
from attestd.evidence.subjects import statement_subjects
from attestd.integrations.kfp import layout_from_kfp
from attestd.tee.snp import _simulated_pki as snp_pki
from attestd.tee.snp import verify as snp_verify
from attestd.tee.snp.abi import (
    MILAN,
    SIGNATURE_OFFSET,
    SIGNING_KEY_VLEK,
    encode_signature,
    parse_report,
)
from attestd.tee.snp.simulated import STATE_SUBDIR, SimulatedSnpBackend
from attestd.tee.tdx import _simulated_pki as tdx_pki
from attestd.tee.tdx.abi import parse_quote as parse_tdx_quote
from attestd.tee.tdx.collateral import MAX_COLLATERAL_BYTES
from attestd.tee.tdx.simulated import (
    MEASUREMENT_DEFAULTS,
    SimulatedTdMeasurements,
    SimulatedTdxBackend,
)
from attestd.verifier import EAR_PROFILE, appraise, load_policy, policy_digest, sign_result

__all__ = ["DEFAULT_SEED", "GAPS", "build"]

DEFAULT_SEED = "attestd-conformance-v1"
# Inside every simulated certificate's validity (tee/tdx/_simulated_pki.py).
ISSUED_AT = tdx_pki.NOT_VALID_BEFORE + timedelta(days=400)
NOW = ISSUED_AT + timedelta(seconds=2)
NONCE = hashlib.sha256(b"attestd conformance nonce").digest()
OTHER_NONCE = hashlib.sha256(b"attestd conformance other nonce").digest()
MODEL = simulated.MODEL
DATASET = simulated.DATASET

GAPS: dict[str, str] = {}
"""Parts of the suite not generated yet, by name: the manifest lists them as ``gaps``."""


@dataclass
class _Case:
    id: str
    kind: str
    tests: str
    docs: str
    files: dict[str, bytes]
    now: datetime
    outcome: str
    reason: str | None = None
    names: dict[str, str] = field(default_factory=dict)
    """File names by role where the default (the role) will not do: a layout names its roots."""
    vectors: dict[str, dict[str, str]] = field(default_factory=dict)
    """Real vendor vectors by role (path, sha256, provenance): referenced, never copied."""
    synthesized: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Inputs the runner writes by role (``{"size": N, "byte": "hh"}``): too large to store."""


@dataclass
class _Builder:
    root: Path
    cases: list[_Case] = field(default_factory=list)

    def add(self, case: _Case) -> None:
        self.cases.append(case)


# -- the simulated TD --------------------------------------------------------------------


@dataclass(frozen=True)
class _Td:
    backend: SimulatedTdxBackend
    key: ec.EllipticCurvePrivateKey
    other_key: ec.EllipticCurvePrivateKey
    events: tuple[RuntimeEvent, ...]

    def binding(self, nonce: bytes, subjects: Sequence[Subject], **changes: Any) -> Binding:
        bound = simulated.binding(self.key, subjects, self.events, nonce=nonce, issued_at=ISSUED_AT)
        return dataclasses.replace(bound, **changes)

    def statement(self, nonce: bytes = NONCE, **changes: Any) -> Statement:
        subjects = tuple(statement_subjects((MODEL, DATASET), key_id(self.key.public_key())))
        bound = self.binding(nonce, subjects, **changes)
        return simulated.simulated_statement(
            self.backend, self.key, subjects, self.events, bound, host="conformance-td"
        )

    def policy(self, *, tdx: dict[str, str] | None = None, artifact: str | None = None) -> bytes:
        body = parse_tdx_quote(self.backend.get_quote(bytes(64))).body
        values = {"mrtd": body.mr_td.hex()} | {f"rtmr{i}": body.rtmrs[i].hex() for i in range(3)}
        values |= tdx or {}
        lines = ["[trust]", 'root = "simulated"', 'simulated_root = "root.pem"']
        lines += ["[freshness]", "max_age_seconds = 300", "max_clock_skew_seconds = 30"]
        lines += ["[tdx]"] + [f'{name} = ["{value}"]' for name, value in values.items()]
        digest = artifact or MODEL.digest["sha256"]
        lines += ["[[artifacts]]", f'name = "{MODEL.name}"', f'sha256 = "{digest}"']
        return ("\n".join(lines) + "\n").encode()


def _td(state: Path, stream: SeededStream) -> _Td:
    backend = SimulatedTdxBackend.open(state)
    events = simulated.demo_events(format_rfc3339(ISSUED_AT))
    for event in events:
        backend.extend_runtime_register(event_digest(event))
    return _Td(backend, stream.signing_key(), stream.signing_key(), events)


def _with(statement: Statement, **changes: Any) -> Statement:
    return dataclasses.replace(
        statement, predicate=dataclasses.replace(statement.predicate, **changes)
    )


# -- part (b): evidence appraisal ---------------------------------------------------------

_EVIDENCE_DOCS = "docs/policy.md#common-checks"


def _add_evidence(
    builder: _Builder,
    name: str,
    tests: str,
    evidence: bytes,
    *,
    root: bytes,
    policy: bytes,
    reason: str | None = None,
    nonce: bytes = NONCE,
    now: datetime = NOW,
    checkpoint: LogCheckpoint | None = None,
    docs: str = _EVIDENCE_DOCS,
) -> None:
    """One evidence case: the DSSE evidence, the policy and its root, the nonce sent."""
    files = {"evidence": evidence, "policy": policy, "root": root}
    files["nonce"] = nonce.hex().encode() + b"\n"
    if checkpoint is not None:
        document = {"length": checkpoint.length, "head": checkpoint.head.hex()}
        files["checkpoint"] = json.dumps(document, sort_keys=True).encode() + b"\n"
    outcome = ACCEPT if reason is None else REFUSE
    builder.add(_Case(f"evidence/{name}", "evidence", tests, docs, files, now, outcome, reason))


def _evidence_cases(td: _Td, builder: _Builder) -> None:
    root = td.backend.trust_root_pem()
    policy = td.policy()

    def case(
        name: str,
        tests: str,
        evidence: bytes,
        *,
        policy_bytes: bytes = policy,
        **options: Any,
    ) -> None:
        _add_evidence(builder, name, tests, evidence, root=root, policy=policy_bytes, **options)

    good = td.statement()
    sign = sign_statement
    case(
        "tdx-single-valid",
        "Simulated TDX evidence, one binding, full runtime log",
        sign(good, td.key),
        docs="docs/evidence-format.md#10-verifying-in-this-order",
    )
    # A batch of three: one quote over the Merkle root, this verifier's binding is leaf 1.
    bindings = [dataclasses.replace(good.predicate.binding, nonce=n) for n in (OTHER_NONCE, NONCE)]
    bindings.append(dataclasses.replace(good.predicate.binding, nonce=bytes(range(32))))
    leaves = [leaf_bytes(b) for b in bindings]
    batch_root = tree_root(leaves)
    proofs = inclusion_proofs(leaves)
    batch_quote = td.backend.get_quote(report_data_for_root(batch_root))
    batched = _with(
        good, binding=bindings[1], quote=batch_quote, batch=BatchMembership(batch_root, proofs[1])
    )
    batch_docs = "docs/evidence-format.md#batches-one-quote-many-bindings"
    case("tdx-batch-valid", "Leaf 1 of a batch of 3", sign(batched, td.key), docs=batch_docs)

    def proof(**changes: Any) -> Statement:
        changed = dataclasses.replace(proofs[1], **changes)
        return _with(batched, batch=BatchMembership(batch_root, changed))

    case(
        "batch-leaf-index-invalid",
        "Leaf index outside the tree",
        sign(proof(leaf_index=7), td.key),
        reason="batch_leaf_index_invalid",
        docs=batch_docs,
    )
    case(
        "batch-tree-size-invalid",
        "Tree size that does not fit the audit path",
        sign(proof(tree_size=9), td.key),
        reason="batch_tree_size_invalid",
        docs=batch_docs,
    )
    flipped = [bytes([p[0] ^ 1]) + p[1:] for p in proofs[1].audit_path]
    case(
        "batch-root-mismatch",
        "A tampered audit path does not climb to the quoted root",
        sign(proof(audit_path=tuple(flipped)), td.key),
        reason="batch_root_mismatch",
        docs=batch_docs,
    )
    # Incremental: the verifier holds a checkpoint after the first event.
    checkpoint = LogCheckpoint(1, replay(td.events[:1]))
    incremental = _with(good, runtime_log=td.events[1:], log_start=checkpoint)
    log_docs = "docs/evidence-format.md#incremental-logs-from-a-checkpoint"
    case(
        "tdx-incremental-valid",
        "Log from a checkpoint",
        sign(incremental, td.key),
        checkpoint=checkpoint,
        docs=log_docs,
    )
    case(
        "log-start-mismatch",
        "Evidence replaying from another checkpoint than the one sent",
        sign(incremental, td.key),
        checkpoint=LogCheckpoint(2, replay(td.events[:2])),
        reason="log_start_mismatch",
        docs=log_docs,
    )
    case(
        "evidence-malformed", "Bytes that are no DSSE envelope", b"{}", reason="evidence_malformed"
    )
    case(
        "agent-key-mismatch",
        "The predicate's agent key is not the binding's",
        sign(_with(good, agent_key_pem=public_key_pem(td.other_key.public_key())), td.other_key),
        reason="agent_key_mismatch",
    )
    case(
        "envelope-signature-invalid",
        "Signed by a key other than the agent key",
        sign(good, td.other_key),
        reason="envelope_signature_invalid",
    )
    other = td.statement(nonce=OTHER_NONCE)
    case(
        "report-data-mismatch",
        "A quote lifted from other evidence",
        sign(_with(good, quote=other.predicate.quote), td.key),
        reason="report_data_mismatch",
    )
    case(
        "nonce-mismatch",
        "Evidence for another nonce",
        sign(good, td.key),
        nonce=OTHER_NONCE,
        reason="nonce_mismatch",
    )
    case(
        "subjects-digest-mismatch",
        "A subject swapped after binding",
        sign(dataclasses.replace(good, subjects=(MODEL,)), td.key),
        reason="subjects_digest_mismatch",
    )
    changed_log = (*td.events[:2], dataclasses.replace(td.events[2], content=b"tampered"))
    case(
        "runtime-log-mismatch",
        "A runtime event rewritten",
        sign(_with(good, runtime_log=changed_log), td.key),
        reason="runtime_log_mismatch",
        docs="docs/evidence-format.md#9-runtime-log",
    )
    case(
        "evidence-expired",
        "Judged after max_age_seconds",
        sign(good, td.key),
        now=ISSUED_AT + timedelta(seconds=301),
        reason="evidence_expired",
    )
    case(
        "evidence-from-future",
        "Judged before issuedAt minus max_clock_skew_seconds",
        sign(good, td.key),
        now=ISSUED_AT - timedelta(seconds=31),
        reason="evidence_from_future",
    )
    case(
        "artifact-digest-mismatch",
        "The policy's model digest differs",
        sign(good, td.key),
        policy_bytes=td.policy(artifact="33" * 32),
        reason="artifact_digest_mismatch",
    )
    tdx_docs = "docs/policy.md#tdx-checks-each-needs-evidence_format-and-quote_signature"
    case(
        "mrtd-not-allowed",
        "MRTD outside the policy",
        sign(good, td.key),
        policy_bytes=td.policy(tdx={"mrtd": "00" * 48}),
        reason="mrtd_not_allowed",
        docs=tdx_docs,
    )
    case(
        "rtmr-not-allowed",
        "RTMR1 outside the policy",
        sign(good, td.key),
        policy_bytes=td.policy(tdx={"rtmr1": "00" * 48}),
        reason="rtmr_not_allowed",
        docs=tdx_docs,
    )
    case(
        "mr-not-allowed",
        "MRCONFIGID outside the policy",
        sign(good, td.key),
        policy_bytes=td.policy(tdx={"mr_config_id": "ff" * 48}),
        reason="mr_not_allowed",
        docs=tdx_docs,
    )
    case(
        "artifact-missing",
        "The policy names a model the evidence does not attest",
        sign(good, td.key),
        policy_bytes=policy.replace(MODEL.name.encode(), b"/srv/models/absent"),
        reason="artifact_missing",
    )

    def edited(change: Callable[[dict[str, Any]], None]) -> bytes:
        document = good.to_json()
        change(document)
        return sign_json(document, td.key)

    def short_nonce(document: dict[str, Any]) -> None:
        document["predicate"]["binding"]["nonce"] = "ab"  # one byte: no nonce at all

    case(
        "nonce-invalid",
        "A binding nonce of one byte",
        edited(short_nonce),
        reason="nonce_invalid",
        docs="docs/evidence-format.md#10-verifying-in-this-order",
    )

    quote = bytearray(good.predicate.quote)
    quote[_OFFSETS["signature-ecdsa"][0]] ^= 0x01  # the quote's own ECDSA signature
    case(
        "quote-signature-broken",
        "One flipped bit in the quote's signature data",
        sign(_with(good, quote=bytes(quote)), td.key),
        reason="quote_signature_invalid",
    )
    case(
        "quote-malformed",
        "A truncated quote",
        sign(_with(good, quote=good.predicate.quote[:100]), td.key),
        reason="quote_malformed",
    )


# -- part (c): stage chains ---------------------------------------------------------------

_LAYOUT_DOCS = "docs/layout.md#checks-and-reasons"
_SOFTWARE_DOCS = "docs/layout.md#software-rules"
_KFP_DOCS = "docs/kfp.md#the-layout-from-the-compiled-pipeline"
KFP_SPEC = Path(__file__).resolve().parents[2] / "conformance" / "fixtures" / "kfp-parallel.yaml"
VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "vectors"
"""The vendor vectors the generator checks the vendor cases against, when present."""
"""A compiled KFP IR (prepare -> {train, evaluate}), committed: KFP's compiler is not run here."""
_EXE = "ab" * 32
_IMAGE = "ef" * 32
_TORCH = (Distribution("torch", "2.6.0", "11" * 32), Distribution("numpy", "2.1.0", "22" * 32))


def _stack(dists: Sequence[Distribution], *, exe: bool = True) -> dict[str, object]:
    """``attest`` keywords for a measured software stack (docs/lifecycle.md)."""
    content = list_content(list(dists))
    executable = (
        StackClaim.of({"path": "/usr/bin/python3.12", "digest": {"sha256": _EXE}})
        if exe
        else StackClaim.missing("executable: permission denied")
    )
    stack = SoftwareStack(
        executable,
        StackClaim.of({"argv": ["python", "train.py"], "truncated": False}),
        StackClaim.of({"path": "/", "containerId": None}),
        StackClaim.of(
            {"digest": {"sha256": content_sha256(content)}, "count": len(dists), "sitePackages": []}
        ),
        StackClaim.missing("os packages: none"),
        StackClaim.of({"digest": {"sha256": _IMAGE}, "claimedBy": "deployment"}),
    )
    return {"software_stack": stack, "stack_lists": [(PYTHON_DISTRIBUTIONS, content)]}


def _chain_cases(workdir: Path, builder: _Builder, stream: SeededStream) -> Callable[[bytes], None]:
    clock = lambda: ISSUED_AT  # noqa: E731 - every stage "ran" at the suite's one instant
    platform = workdir / "chain-platform"
    SimulatedTdxBackend.open(platform)
    agents = {}
    for stage in chains.STAGES:
        agents[stage] = chains.make_tdx_agent(workdir / stage, platform=platform, clock=clock)
        agents[stage].key = stream.signing_key()  # securesystemslib signs: RFC 6979 always
    pipeline = chains.Pipeline(agents)
    counter = iter(range(1000))

    def case(
        name: str,
        tests: str,
        attestations: Sequence[bytes],
        *,
        reason: str | None = None,
        docs: str = _LAYOUT_DOCS,
        layout: Callable[[Path], Path] | None = None,
        beside: Mapping[str, bytes] | None = None,
        oms: Mapping[str, tuple[str, bytes]] | None = None,
        **layout_args: Any,
    ) -> None:
        directory = workdir / f"layout-{next(counter)}"
        directory.mkdir()
        path = layout(directory) if layout else pipeline.layout(directory, **layout_args)
        files: dict[str, bytes] = {"layout": path.read_bytes()}
        names = {"layout": "layout.toml"}
        # Files the layout names by a relative path (an OSV file), kept beside it.
        for index, (file_name, data) in enumerate(sorted((beside or {}).items())):
            files[f"file_{index}"], names[f"file_{index}"] = data, file_name
        for role, (file_name, data) in (oms or {}).items():  # the OMS closing: bundle and key
            files[role], names[role] = data, file_name
        for index, root in enumerate(sorted(directory.glob("*.pem"))):
            files[f"root_{index}"], names[f"root_{index}"] = root.read_bytes(), root.name
        for index, data in enumerate(attestations):
            files[f"attestation_{index}"] = data
            names[f"attestation_{index}"] = f"attestation_{index}.json"
        outcome = ACCEPT if reason is None else REFUSE
        builder.add(
            _Case(f"chain/{name}", "chain", tests, docs, files, NOW, outcome, reason, names)
        )

    happy = pipeline.run()
    files = chains.attestation_bytes(happy)
    case("tdx-four-stages-valid", "prepare -> train -> quantize -> package on simulated TDX", files)
    case(
        "files-in-any-order-valid",
        "The same chain, files given last stage first: the signed links give the order",
        list(reversed(files)),
    )
    swapped = pipeline.run(order=["prepare", "quantize", "train", "package"])
    case(
        "stage-out-of-order",
        "quantize ran before train (each links to the stage run before it)",
        chains.attestation_bytes(swapped),
        reason="stage_out_of_order",
    )
    case(
        "stage-missing",
        "No attestation of the train stage",
        chains.attestation_bytes(happy, ["prepare", "quantize", "package"]),
        reason="stage_missing",
    )
    case(
        "stage-duplicate",
        "A second attestation of train",
        [*files, happy["train"].attestation],
        reason="stage_duplicate",
    )
    extra = chains.attest(
        agents["package"], "evaluate", [chains.INT8], [chains.INT8], happy["package"].digest
    )
    case(
        "stage-unknown",
        "An attestation of a stage the layout does not name",
        [*files, extra.attestation],
        reason="stage_unknown",
    )
    case(
        "attestation-malformed",
        "A file that is no stage attestation",
        [*files, b"{not json"],
        reason="attestation_malformed",
    )
    swapped_data = chains.retag(chains.DATASET, digest={"sha256": "ff" * 32})
    built = pipeline.run(flow=chains.with_outputs(chains.FLOW, "train", inputs=[swapped_data]))
    case(
        "artifact-substituted",
        "train consumed /data/train with another digest than prepare produced",
        chains.attestation_bytes(built),
        reason="artifact_substituted",
    )
    other = chains.retag(chains.BASE, name="/models/other")
    built = pipeline.run(flow=chains.with_outputs(chains.FLOW, "quantize", inputs=[other]))
    case(
        "inputs-mismatch",
        "quantize's inputs are not train's outputs",
        chains.attestation_bytes(built),
        reason="inputs_mismatch",
    )
    built = pipeline.run(overrides={"package": {"pipeline": "other-pipeline"}})
    case(
        "pipeline-mismatch",
        "package attested for another pipeline",
        chains.attestation_bytes(built),
        reason="pipeline_mismatch",
    )
    built = pipeline.run(overrides={"prepare": {"previous": "ee" * 32}})
    case(
        "previous-link-broken",
        "The first stage names a predecessor",
        chains.attestation_bytes(built),
        reason="previous_link_broken",
    )
    quantize = chains.attest(
        agents["quantize"], "quantize", [chains.BASE], [chains.INT8], happy["train"].digest,
        run_id="run-43",
    )  # fmt: skip
    package = chains.attest(
        agents["package"], "package", [chains.INT8], [chains.RELEASE], quantize.digest
    )
    case(
        "run-mismatch",
        "quantize, linked in place, is from another run",
        [files[0], files[1], quantize.attestation, package.attestation],
        reason="run_mismatch",
    )
    stranger = "sha256:" + "ab" * 32
    case(
        "agent-key-not-allowed",
        "prepare's agent key is not among the layout's agent_keys",
        files,
        reason="agent_key_not_allowed",
        stage_extra={"prepare": f'agent_keys = ["{stranger}"]'},
    )
    built = pipeline.run(overrides={"train": {"signer": agents["prepare"].key}})
    case(
        "provenance-key-mismatch",
        "train's provenance signed by another agent's key",
        chains.attestation_bytes(built),
        reason="provenance_key_mismatch",
    )
    envelope = json.loads(happy["train"].provenance_envelope)
    signature = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    signature[-1] ^= 1
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(signature)).decode()
    forged = StageAttestation(json.dumps(envelope).encode(), happy["train"].evidence).to_json()
    case(
        "provenance-signature-invalid",
        "One flipped bit in train's provenance signature",
        [files[0], forged, *files[2:]],
        reason="provenance_signature_invalid",
    )
    unlisted = chains.retag(chains.BASE, name="/models/unlisted")
    built = pipeline.run(overrides={"train": {"subjects": [chains.BASE, unlisted]}})
    case(
        "outputs-mismatch",
        "train's evidence attests an artifact its provenance does not list",
        chains.attestation_bytes(built),
        reason="outputs_mismatch",
    )
    built = pipeline.run(overrides={"quantize": {"segment": happy["train"].provenance.log_segment}})
    case(
        "log-segment-mismatch",
        "quantize claims a runtime-log segment of another agent",
        chains.attestation_bytes(built),
        reason="log_segment_mismatch",
    )
    # -- licences and tags
    licence_docs = "docs/layout.md#licence-expressions"
    for name, licence, reason in (
        ("license-not-allowed", "GPL-3.0-only", "license_not_allowed"),
        ("license-invalid", "MIT AND (Apache-2.0", "license_invalid"),
        ("license-missing", None, "license_missing"),
        ("license-choice-valid", "GPL-3.0-only OR MIT", None),
    ):
        changed = chains.retag(chains.INT8, license=licence)
        flow = chains.with_outputs(chains.FLOW, "quantize", outputs=[changed])
        built = pipeline.run(flow=chains.with_outputs(flow, "package", inputs=[changed]))
        case(
            name,
            f"/models/int8 (quantize -> package) licensed {licence!r}",
            chains.attestation_bytes(built),
            reason=reason,
            docs=licence_docs,
        )
    case(
        "tag-missing",
        "train's output lacks the stage's required tag",
        files,
        reason="tag_missing",
        stage_extra={"train": 'required_tags = ["pii:none"]'},
    )
    case(
        "artifact-missing",
        "A required artifact never appears in the chain",
        files,
        reason="artifact_missing",
        extra='[[artifacts]]\nname = "/models/never"\nrequired = true\n',
    )

    # -- software stack (docs/layout.md "Software rules"): the rules are the last stage's
    # own ([stages.software]), so only package is re-attested with a measured stack.
    def software(dists: Sequence[Distribution], *, exe: bool = True) -> list[bytes]:
        package = chains.attest(
            agents["package"], "package", [chains.INT8], [chains.RELEASE],
            happy["quantize"].digest, **_stack(dists, exe=exe),  # type: ignore[arg-type]
        )  # fmt: skip
        return [*files[:3], package.attestation]

    def rules(text: str) -> dict[str, str]:
        return {"package": f"software = {{ {text} }}"}

    good = software(_TORCH)
    required = 'required_packages = ["torch>=2.6,<2.7"]'
    case(
        "software-slsa-l3-valid",
        "package's stack within its rules, at SLSA Build L3",
        good,
        stage_extra=rules(required + ", min_slsa_level = 3"),
        docs=_SOFTWARE_DOCS,
    )
    for name, text, attestations, reason in (
        ("package-missing", required, software(_TORCH[1:]), "package_missing"),
        (
            "package-version-not-allowed",
            required,
            software((Distribution("torch", "2.7.1", "11" * 32),)),
            "package_version_not_allowed",
        ),
        ("package-forbidden", 'forbidden_packages = ["NumPy"]', good, "package_forbidden"),
        ("image-not-allowed", f'allowed_images = ["sha256:{"00" * 32}"]', good,
         "image_not_allowed"),
        ("executable-not-allowed", f'allowed_executables = ["sha256:{"cd" * 32}"]', good,
         "executable_not_allowed"),
        # measured by an agent without software-stack claims
        ("software-stack-missing", required, files, "software_stack_missing"),
        ("slsa-level-insufficient", "min_slsa_level = 3", software(_TORCH, exe=False),
         "slsa_level_insufficient"),
    ):  # fmt: skip
        case(name, f"package's software rules: {reason}", attestations, reason=reason,
             stage_extra=rules(text), docs=_SOFTWARE_DOCS)  # fmt: skip
    _kfp_cases(workdir, platform, clock, case, stream)

    def later(snp_root: bytes) -> None:
        """Suite 1.2's chain cases, written after every earlier case (their bytes stay)."""
        advisory = {
            "id": "ATTESTD-CONFORMANCE-0001",
            "affected": [
                {
                    "package": {"ecosystem": "PyPI", "name": "torch"},
                    "versions": ["2.6.0"],
                    "database_specific": {"severity": "HIGH"},
                }
            ],
        }
        osv = json.dumps(advisory, indent=2).encode() + b"\n"
        case(
            "package-vulnerable",
            "package's torch 2.6.0 is affected by an OSV advisory (HIGH) in osv.json",
            good,
            reason="package_vulnerable",
            stage_extra=rules('osv = ["osv.json"]'),
            beside={"osv.json": osv},
            docs=_SOFTWARE_DOCS,
        )
        package = chains.attest(
            agents["package"], "package", [chains.INT8], [chains.RELEASE],
            happy["quantize"].digest, builder="https://attestd.dev/agent/tdx/simulated#sha256:"
            + "00" * 32,
        )  # fmt: skip
        case(
            "builder-mismatch",
            "package's provenance names a builder.id of another agent key",
            [*files[:3], package.attestation],
            reason="builder_mismatch",
        )

        def snp_only(directory: Path) -> Path:
            # package's stage accepts SEV-SNP only (the tee check runs before its appraisal,
            # so its SNP trust and launch values are never reached).
            path = pipeline.layout(directory)
            head = path.read_text().rpartition('tee = ["tdx"]')[0]  # package's tables dropped
            root = "root-sev-snp.pem"
            (directory / root).write_bytes(snp_root)
            snp = [
                'tee = ["sev-snp"]',
                "[stages.trust.sev-snp]",
                'root = "simulated"',
                f'simulated_root = "{root}"',
                "[stages.snp]",
                f'measurement = ["{"00" * 48}"]',
            ]
            path.write_text(head + "\n".join(snp) + "\n")
            return path

        case(
            "tee-not-accepted",
            "package attested on TDX under a stage that accepts SEV-SNP only",
            files,
            reason="tee_not_accepted",
            layout=snp_only,
        )
        _oms_cases(workdir / "oms", pipeline, case, stream)

    return later


_OMS_DOCS = "docs/layout.md#the-chain"


def _canonical_bundle(bundle: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """``bundle`` with its DSSE payload's keys sorted and signed again by ``key``.

    model_signing writes the statement's keys and its ignored paths in an order
    that follows the process's hash seed; sorted, the bytes are the seed's alone. The signature
    is over DSSE's pre-authentication encoding of the new payload, as before.
    """
    document = json.loads(bundle)
    envelope = document["dsseEnvelope"]
    statement = json.loads(base64.b64decode(envelope["payload"]))
    serialization_ = statement["predicate"]["serialization"]  # ignore_paths: a set, listed
    serialization_["ignore_paths"] = sorted(serialization_["ignore_paths"])
    body = json.dumps(statement, sort_keys=True).encode()
    kind = envelope["payloadType"].encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)
    envelope["payload"] = base64.b64encode(body).decode()
    signature = key.sign(pae, ec.ECDSA(hashes.SHA256()))
    envelope["signatures"][0]["sig"] = base64.b64encode(signature).decode()
    return json.dumps(document, sort_keys=True).encode()


def _oms_cases(
    workdir: Path, pipeline: chains.Pipeline, case: Callable[..., None], stream: SeededStream
) -> None:
    """A chain closed by an OpenSSF model signing bundle (key-signed: offline, no Sigstore).

    ``model_signing`` (a dev dependency, the ``oms`` extra) signs a small model
    directory with an EC key of the seed; ECDSA signs deterministically under
    :func:`seeded`, so the bundle's bytes are reproducible.
    """
    import model_signing.signing

    signing: Any = model_signing.signing  # untyped: its Config is called through Any
    from attestd.verifier.oms import OmsClosing, verify_oms_bundle

    def model(directory: Path, layers: int) -> Path:
        (directory / "model" / "shards").mkdir(parents=True)
        (directory / "model" / "config.json").write_text(f'{{"layers": {layers}}}\n')
        (directory / "model" / "shards" / "00.bin").write_bytes(bytes(range(256)) * 16)
        return directory / "model"

    def pem(key: ec.EllipticCurvePrivateKey, directory: Path) -> tuple[Path, bytes]:
        private = directory / "publisher.pem"
        inner = key.inner if isinstance(key, DeterministicKey) else key
        private.write_bytes(
            inner.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        (directory / "publisher.pub").write_bytes(public)
        return private, public

    publisher, other = stream.signing_key(), stream.signing_key()
    bundles: dict[str, bytes] = {}
    digests: dict[str, str] = {}
    keys: dict[str, bytes] = {}
    for name, key, layers in (("signed", publisher, 2), ("changed", publisher, 3)):
        directory = workdir / name
        directory.mkdir(parents=True)
        private, keys[name] = pem(key, directory)
        bundle = directory / "model.sig"
        signer = signing.Config().use_elliptic_key_signer(private_key=private)
        signer.sign(model(directory, layers), bundle)
        bundle.write_bytes(_canonical_bundle(bundle.read_bytes(), key))
        bundles[name] = bundle.read_bytes()
        signed = OmsClosing(bundle, public_key=directory / "publisher.pub")
        digests[name] = verify_oms_bundle(signed).sha256
    (workdir / "other").mkdir()
    keys["other"] = pem(other, workdir / "other")[1]
    released = chains.retag(chains.RELEASE, digest={"sha256": digests["signed"]})
    built = pipeline.run(flow=chains.with_outputs(chains.FLOW, "package", outputs=[released]))
    attestations = chains.attestation_bytes(built)

    def oms_inputs(bundle: str, key: str) -> dict[str, tuple[str, bytes]]:
        return {
            "oms_bundle": ("model.sig", bundles[bundle]),
            "oms_key": ("publisher.pub", keys[key]),
        }

    case(
        "oms-closed-valid",
        "The chain closed by the OMS signature of package's one output (a public key)",
        attestations,
        oms=oms_inputs("signed", "signed"),
        docs=_OMS_DOCS,
    )
    case(
        "oms-signature-invalid",
        "The OMS bundle verified under another publisher's key",
        attestations,
        reason="oms_signature_invalid",
        oms=oms_inputs("signed", "other"),
        docs=_OMS_DOCS,
    )
    case(
        "oms-digest-mismatch",
        "The OMS bundle signs the model as changed after package attested it",
        attestations,
        reason="oms_digest_mismatch",
        oms=oms_inputs("changed", "signed"),
        docs=_OMS_DOCS,
    )


def _kfp_cases(
    workdir: Path,
    platform: Path,
    clock: Callable[[], datetime],
    case: Callable[..., None],
    stream: SeededStream,
) -> None:
    """A layout derived from a compiled KFP pipeline: ``after`` is a partial order."""
    agents = {
        stage: chains.make_tdx_agent(workdir / f"kfp-{stage}", platform=platform, clock=clock)
        for stage in ("prepare", "train", "evaluate")
    }
    for agent in agents.values():
        agent.key = stream.signing_key()
    probe = agents["prepare"]

    def layout(directory: Path) -> Path:
        # What a spec does not say (roots, measurements) comes from the template, as an
        # operator gives it to `attestctl layout from-kfp --template`.
        tables = probe.layout_tables(directory, 0)
        body = parse_tdx_quote(probe.backend.get_quote(bytes(64))).body
        stage: dict[str, Any] = {
            "tee": ["tdx"],
            "trust": {"tdx": {"root": "simulated", "simulated_root": tables[3].split('"')[1]}},
            "tdx": {"mrtd": [body.mr_td.hex()]}
            | {f"rtmr{i}": [body.rtmrs[i].hex()] for i in range(3)},
        }
        template = {"allowed_licenses": list(chains.LICENSES), "stage": stage}
        path = directory / "layout.toml"
        path.write_text(layout_from_kfp(KFP_SPEC, template))
        return path

    raw = chains.RAW
    dataset = chains.DATASET
    model, metrics = chains.BASE, chains.retag(chains.INT8, name="/metrics/eval")

    def run(order: Sequence[str], links: Mapping[str, str]) -> list[bytes]:
        built: dict[str, chains.BuiltStage] = {}
        flow = {"prepare": ((raw,), (dataset,)), "train": ((dataset,), (model,)),
                "evaluate": ((dataset,), (metrics,))}  # fmt: skip
        for stage in order:
            previous = built[links[stage]].digest if stage in links else None
            inputs, outputs = flow[stage]
            built[stage] = chains.attest(
                agents[stage], stage, inputs, outputs, previous, pipeline="kfp-attested"
            )
        return [built[stage].attestation for stage in order]

    both = {"train": "prepare", "evaluate": "prepare"}
    case(
        "kfp-parallel-train-first-valid",
        "Layout derived from a compiled KFP spec; train then evaluate, both after prepare",
        run(["prepare", "train", "evaluate"], both),
        docs=_KFP_DOCS,
        layout=layout,
    )
    case(
        "kfp-parallel-evaluate-first-valid",
        "The same layout; the parallel branches in the other order",
        run(["prepare", "evaluate", "train"], both),
        docs=_KFP_DOCS,
        layout=layout,
    )
    case(
        "kfp-serial-out-of-order",
        "train linked after evaluate, which its `after` does not allow",
        run(["prepare", "evaluate", "train"], {"evaluate": "prepare", "train": "evaluate"}),
        reason="stage_out_of_order",
        docs=_KFP_DOCS,
        layout=layout,
    )


# -- part (a): bare quotes ----------------------------------------------------------------

_QUOTE_DOCS = "docs/quote-tools.md#the-output"
# TDX quote v4 offset classes (tee/tdx/abi.py): header 0..47, TD report body 48..631,
# signature data length 632..635, then the ECDSA signature, attestation key, QE
# certification data (QE report, its signature, the PCK chain).
_OFFSETS = {
    "header-version": (0, "quote_malformed"),
    "header-tee-type": (4, "quote_malformed"),
    "body-mrtd": (48 + 136, "quote_signature_invalid"),
    "body-report-data": (48 + 520, "quote_signature_invalid"),
    "signature-ecdsa": (636, "quote_signature_invalid"),
    "signature-attestation-key": (636 + 64, "attestation_key_binding_invalid"),
    "cert-qe-report": (636 + 128 + 6 + 10, "qe_report_signature_invalid"),
}


def _quote_cases(td: _Td, builder: _Builder) -> None:
    root = td.backend.trust_root_pem()
    quote = td.backend.get_quote(hashlib.sha512(b"conformance quote").digest())

    def case(name: str, tests: str, data: bytes, reason: str | None) -> None:
        outcome = ACCEPT if reason is None else REFUSE
        files = {"quote": data, "root": root}
        builder.add(
            _Case(f"quote/{name}", "quote", tests, _QUOTE_DOCS, files, NOW, outcome, reason)
        )

    case("tdx-simulated-valid", "A simulated TDX quote under its simulated root", quote, None)
    for name, (offset, reason) in _OFFSETS.items():
        mutated = bytearray(quote)
        mutated[offset] ^= 0x01
        case(f"tdx-flip-{name}", f"One bit flipped at offset {offset}", bytes(mutated), reason)
    case("tdx-truncated", "The quote cut short", quote[:600], "quote_malformed")


# Real vendor vectors (../shared/vectors/README.md): path, SHA-256, provenance. Their
# expected outcomes are attestd's verdicts with the vector's own collateral at the
# README's documented time, checked by the generator whenever the vectors are present.
_DCAPQVL = "Phala-Network/dcap-qvl @ 9bffe30b"
_GO_TDX = "google/go-tdx-guest @ 91f9a52f"
_GO_SEV = "google/go-sev-guest @ af1c107a"
_VENDOR = {
    "dcapqvl-quote": (
        "tdx/dcapqvl_quote_v4.bin",
        "c42f9164325024bca2757bc8819b11879a0a369132ea4e2b7c85df4805ea72db",
        f"{_DCAPQVL}, sample/tdx_quote (MIT)",
    ),
    "dcapqvl-collateral": (
        "tdx/dcapqvl_quote_v4.collateral.json",
        "b0a5f5fd620a8881b1eda45261fdf30dd930b49aff93231556645c81fcb4c0bc",
        f"{_DCAPQVL}, sample/tdx_quote_collateral.json (MIT)",
    ),
    "spr-e4": (
        "tdx/spr_e4_quote_v4.bin",
        "6dde5548bec99147fef832643301f113df99931547be26df8ac376c4eaa5b5a7",
        f"{_GO_TDX}, testing/testdata/tdx_prod_quote_SPR_E4.dat (Apache-2.0)",
    ),
    "cos113": (
        "tdx/cos113_quote_v4_padded.bin",
        "54334c81b4e03634ab3a269ad397c9cea3b5c9ee96c57505b684470b964fd15e",
        f"{_GO_TDX}, testing/testdata/ccel/cos-113-tdx-quote.dat (Apache-2.0)",
    ),
    "milan-report": (
        "snp/milan_report_v2.bin",
        "377e6241d3b373ab1df80c0f96978594e7e21f4797dd6ea95e2957e1c1e26060",
        f"{_GO_SEV}, verify/testdata/attestation.bin (Apache-2.0)",
    ),
    "milan-vcek": (
        "snp/milan_vcek.der",
        "0d057f9b6e29a69eda9c0154b259567d291c1c08d73a11e9d31ace07c435b6d8",
        f"{_GO_SEV}, verify/testdata/vcek.testcer (Apache-2.0)",
    ),
}
_DCAPQVL_NOW = datetime(2025, 6, 23, tzinfo=UTC)  # the README's documented time
_EXPIRED_NOW = datetime(2026, 6, 1, tzinfo=UTC)  # after the collateral's CRLs' nextUpdate


def _vendor_cases(builder: _Builder) -> None:
    def case(
        name: str,
        tests: str,
        refs: dict[str, str],
        now: datetime,
        reason: str | None,
        kind: str = "quote",
    ) -> None:
        vectors = {}
        for role, key in refs.items():
            path, digest, provenance = _VENDOR[key]
            vectors[role] = {"path": path, "sha256": digest, "provenance": provenance}
        outcome = ACCEPT if reason is None else REFUSE
        builder.add(
            _Case(
                f"quote/{name}",
                kind,
                tests,
                _QUOTE_DOCS if kind == "quote" else _SNP_QUOTE_DOCS,
                {},
                now,
                outcome,
                reason,
                vectors=vectors,
            )
        )

    dcap = {"quote": "dcapqvl-quote", "collateral": "dcapqvl-collateral"}
    case(
        "tdx-vendor-dcapqvl-valid",
        "A real TDX quote with its own DCAP collateral, under Intel's root, at its documented time",
        dcap,
        _DCAPQVL_NOW,
        None,
    )
    case(
        "tdx-vendor-dcapqvl-collateral-expired",
        "The same quote and collateral judged after the collateral's CRLs expired",
        dcap,
        _EXPIRED_NOW,
        "collateral_expired",
    )
    case(
        "tdx-vendor-cos113-signature-chain",
        "A real TDX quote read from a fixed buffer (zero padding), no collateral: signature chain",
        {"quote": "cos113"},
        _DCAPQVL_NOW,
        None,
    )
    case(
        "tdx-vendor-spr-e4-trailing-data",
        "A real TDX quote with non-zero bytes after its end: refused as malformed",
        {"quote": "spr-e4"},
        _DCAPQVL_NOW,
        "quote_malformed",
    )
    case(
        "snp-vendor-milan-valid",
        "A real SEV-SNP report (version 2, Milan) with its VCEK, under AMD's pinned ARK",
        {"quote": "milan-report", "vcek": "milan-vcek"},
        _DCAPQVL_NOW,  # inside the VCEK's validity (to 2029)
        None,
        kind="quote-snp",
    )


# -- part (d): EAR results ----------------------------------------------------------------

_EAR_DOCS = "docs/attestation-results.md#verifying-a-result-relying-party"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jws(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> bytes:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(sign(signing_input.encode()))}".encode()


def _es256(key: ec.EllipticCurvePrivateKey) -> Callable[[bytes], bytes]:
    def sign(data: bytes) -> bytes:
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return sign


def _result_cases(td: _Td, builder: _Builder, workdir: Path, stream: SeededStream) -> None:
    import hmac

    (workdir / "root.pem").write_bytes(td.backend.trust_root_pem())
    (workdir / "policy.toml").write_bytes(td.policy())
    result = appraise(
        sign_statement(td.statement(), td.key),
        nonce=NONCE,
        policy=load_policy(workdir / "policy.toml"),
        now=NOW,
    )
    signer = stream.signing_key()
    public = signer.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = sign_result(
        result, signer, policy_digest=policy_digest(td.policy()), nonce=NONCE, now=NOW
    ).encode()
    header_b64, claims_b64, _ = token.split(b".")
    claims = json.loads(base64.urlsafe_b64decode(claims_b64 + b"=" * (-len(claims_b64) % 4)))
    header = json.loads(base64.urlsafe_b64decode(header_b64 + b"=" * (-len(header_b64) % 4)))

    def case(name: str, tests: str, data: bytes, reason: str | None, now: datetime = NOW) -> None:
        outcome = ACCEPT if reason is None else REFUSE
        files = {"token": data, "key": public, "nonce": NONCE.hex().encode() + b"\n"}
        builder.add(_Case(f"results/{name}", "ear", tests, _EAR_DOCS, files, now, outcome, reason))

    case("ear-valid", "An ES256 EAR of a simulated appraisal", token, None)
    case(
        "ear-expired",
        "Judged after exp",
        token,
        "result_expired",
        now=NOW + timedelta(days=365),
    )
    unsigned = f"{_b64(json.dumps(header | {'alg': 'none'}).encode())}.{claims_b64.decode()}."
    case("ear-alg-none", "alg none, no signature", unsigned.encode(), "result_algorithm_refused")
    secret = public  # the classic confusion: the verifier's public key as an HMAC secret

    def hs256(data: bytes) -> bytes:
        return hmac.digest(secret, data, "sha256")

    case(
        "ear-hs256-confusion",
        "HS256 keyed with the verifier's public key",
        _jws(header | {"alg": "HS256"}, claims, hs256),
        "result_algorithm_refused",
    )
    case(
        "ear-wrong-profile",
        "Correctly signed, unknown eat_profile",
        _jws(header, claims | {"eat_profile": "tag:example.com,2020:other"}, _es256(signer)),
        "result_claims_invalid",
    )
    tampered = json.loads(json.dumps(claims))
    tampered["iat"] = claims["iat"] - 1
    case(
        "ear-tampered",
        "A claim changed after signing",
        f"{header_b64.decode()}.{_b64(json.dumps(tampered).encode())}.{token.split(b'.')[2].decode()}".encode(),
        "result_signature_invalid",
    )
    case(
        "ear-other-key",
        "Signed by a key other than the verifier's",
        _jws(header, claims, _es256(td.other_key)),
        "result_signature_invalid",
    )
    case("ear-malformed", "Not a compact JWS", b"not.a.jws.token", "result_malformed")
    assert claims["eat_profile"] == EAR_PROFILE


# -- SEV-SNP: a committed simulated platform ----------------------------------------------

SNP_FIXTURE = Path(__file__).resolve().parents[2] / "conformance" / "fixtures" / "snp"
"""The simulated SNP platform's state, made once and committed (its README says why)."""
_SNP_DOCS = "docs/policy.md#sev-snp-checks-each-needs-evidence_format-and-quote_signature"
_SNP_QUOTE_DOCS = "docs/quote-tools.md#sev-snp-the-milan-report"
# After every simulated SNP certificate's notAfter (tee/snp/_simulated_pki.py: 2049-12-31).
_SNP_EXPIRED_AT = datetime(2050, 1, 2, tzinfo=UTC)


@dataclass(frozen=True)
class _SnpGuest:
    backend: SimulatedSnpBackend
    platform: snp_pki.SimulatedPki
    key: ec.EllipticCurvePrivateKey
    events: tuple[RuntimeEvent, ...]

    def statement(self, nonce: bytes = NONCE, issued_at: datetime = ISSUED_AT) -> Statement:
        subjects = tuple(statement_subjects((MODEL, DATASET), key_id(self.key.public_key())))
        # SNP has no runtime register: REPORTDATA binds the log's head.
        bound = simulated.binding(self.key, subjects, self.events, nonce=nonce, issued_at=issued_at)
        return simulated.simulated_statement(
            self.backend, self.key, subjects, self.events, bound, host="conformance-snp-guest"
        )

    def resigned(self, quote: bytes, **changes: Any) -> bytes:
        """``quote`` with ``changes`` to its fields, signed again by the platform's VCEK."""
        report = dataclasses.replace(parse_report(quote), **changes)
        der = self.platform.vcek_key.sign(report.signed_region, ec.ECDSA(hashes.SHA384()))
        return report.with_signature(encode_signature(*decode_dss_signature(der))).to_bytes()

    def policy(self, *, snp: str = "", trust: str | None = None) -> bytes:
        measurement = parse_report(self.backend.get_quote(bytes(64))).measurement.hex()
        lines = trust.splitlines() if trust else ["[trust]", 'root = "simulated"']
        if trust is None:
            lines.append('simulated_root = "root.pem"')
        lines += ["[freshness]", "max_age_seconds = 300", "max_clock_skew_seconds = 30"]
        lines += ["[snp]", f'measurement = ["{measurement}"]', *snp.splitlines()]
        lines += ["[[artifacts]]", f'name = "{MODEL.name}"', f'sha256 = "{MODEL.digest["sha256"]}"']
        return ("\n".join(lines) + "\n").encode()


def _snp_guest(state: Path, td: _Td, stream: SeededStream) -> _SnpGuest:
    # A copy: open() takes a lock and rewrites launch.json in the state it is given.
    directory = state / STATE_SUBDIR
    shutil.copytree(SNP_FIXTURE, directory, ignore=shutil.ignore_patterns("*.md"))
    backend = SimulatedSnpBackend.open(state)
    return _SnpGuest(backend, snp_pki.load(directory), stream.signing_key(), td.events)


def _snp_evidence_cases(guest: _SnpGuest, td: _Td, builder: _Builder) -> None:
    root = guest.backend.trust_root_pem()
    policy = guest.policy()

    def case(name: str, tests: str, evidence: bytes, **options: Any) -> None:
        options.setdefault("docs", _SNP_DOCS)
        options.setdefault("root", root)
        options.setdefault("policy", policy)
        _add_evidence(builder, name, tests, evidence, **options)

    good = guest.statement()
    sign = sign_statement
    case(
        "snp-single-valid",
        "Simulated SEV-SNP evidence, one binding, full runtime log, the VCEK chain shipped",
        sign(good, guest.key),
        docs="docs/evidence-format.md#10-verifying-in-this-order",
    )
    bindings = [dataclasses.replace(good.predicate.binding, nonce=n) for n in (OTHER_NONCE, NONCE)]
    leaves = [leaf_bytes(b) for b in bindings]
    batch_root = tree_root(leaves)
    batch_quote = guest.backend.get_quote(report_data_for_root(batch_root))
    membership = BatchMembership(batch_root, inclusion_proofs(leaves)[1])
    batched = _with(good, binding=bindings[1], quote=batch_quote, batch=membership)
    case(
        "snp-batch-valid",
        "Leaf 1 of a batch of 2 under one SEV-SNP report",
        sign(batched, guest.key),
        docs="docs/evidence-format.md#batches-one-quote-many-bindings",
    )
    checkpoint = LogCheckpoint(1, replay(guest.events[:1]))
    case(
        "snp-incremental-valid",
        "SEV-SNP evidence with a log from a checkpoint",
        sign(_with(good, runtime_log=guest.events[1:], log_start=checkpoint), guest.key),
        checkpoint=checkpoint,
        docs="docs/evidence-format.md#incremental-logs-from-a-checkpoint",
    )
    case(
        "tee-not-allowed",
        "SEV-SNP evidence under a policy whose (simulated TDX) root vouches for TDX",
        sign(good, guest.key),
        root=td.backend.trust_root_pem(),
        policy=td.policy(),
        reason="tee_not_allowed",
        docs=_EVIDENCE_DOCS,
    )
    case(
        "root-of-trust-mismatch",
        "Simulated SEV-SNP evidence under a policy trusting AMD's hardware root",
        sign(good, guest.key),
        policy=guest.policy(trust='[trust]\nroot = "amd"'),
        reason="root_of_trust_mismatch",
        docs=_EVIDENCE_DOCS,
    )
    quote = good.predicate.quote

    def report(**changes: Any) -> bytes:
        return sign(_with(good, quote=guest.resigned(quote, **changes)), guest.key)

    flipped = bytearray(quote)
    flipped[SIGNATURE_OFFSET] ^= 0x01  # R of the report's ECDSA signature
    case(
        "snp-report-signature-invalid",
        "One flipped bit in the report's signature",
        sign(_with(good, quote=bytes(flipped)), guest.key),
        reason="report_signature_invalid",
    )
    case(
        "snp-chip-id-mismatch",
        "A report signed by the VCEK's key naming another chip",
        report(chip_id=bytes(64)),
        reason="chip_id_mismatch",
    )
    case(
        "snp-tcb-mismatch",
        "A report signed by the VCEK's key with a reported TCB the VCEK does not certify",
        report(reported_tcb=parse_report(quote).reported_tcb + 1),
        reason="tcb_mismatch",
    )
    case(
        "snp-signing-key-mismatch",
        "A report whose SIGNING_KEY names a VLEK, shipped with the VCEK",
        report(signer_info=SIGNING_KEY_VLEK << 2),
        reason="signing_key_mismatch",
    )
    case(
        "snp-vcek-unavailable",
        "A version 2 report (no CPUID: product unknown) with no certificates and no snp.product",
        sign(
            _with(
                good,
                quote=guest.resigned(
                    quote, version=2, cpuid_fam_id=0, cpuid_mod_id=0, cpuid_step=0
                ),
                certificates=(),
            ),
            guest.key,
        ),
        reason="vcek_unavailable",
    )
    vcek, ask, ark = good.predicate.certificates
    case(
        "snp-vcek-chain-invalid",
        "The ARK shipped in the ASK's place: the VCEK names another issuer",
        sign(_with(good, certificates=(vcek, ark, ark)), guest.key),
        reason="vcek_chain_invalid",
    )
    case(
        "snp-vcek-extensions-invalid",
        "A VCEK-shaped certificate without AMD's KDS extensions",
        sign(_with(good, certificates=(_bare_vcek(guest), ask, ark)), guest.key),
        reason="vcek_extensions_invalid",
    )
    case(
        "snp-product-mismatch",
        "A Milan report and VCEK under a policy naming Genoa",
        sign(good, guest.key),
        policy=guest.policy(snp='product = "Genoa"'),
        reason="product_mismatch",
    )
    amd_ark = snp_verify.amd_ark(MILAN).public_bytes(serialization.Encoding.PEM)
    case(
        "snp-untrusted-root",
        "The simulated chain under a policy whose ARK is AMD's Milan ARK",
        sign(good, guest.key),
        root=amd_ark,
        reason="untrusted_root",
    )
    expired_at = _SNP_EXPIRED_AT
    case(
        "snp-certificate-expired",
        "Fresh evidence judged after the simulated ARK, ASK and VCEK expired",
        sign(guest.statement(issued_at=expired_at), guest.key),
        now=expired_at + timedelta(seconds=2),
        reason="certificate_expired",
    )


def _bare_vcek(guest: _SnpGuest) -> bytes:
    """The VCEK's subject and key, issued by the ASK's name, with no extensions at all.

    Signed by an EC key of the seed, not the ASK (whose RSA-PSS is randomized):
    the extensions are read before any signature, so the chain is never reached.
    """
    vcek = guest.platform.vcek
    issuer_key = guest.key.inner if isinstance(guest.key, DeterministicKey) else guest.key
    certificate = (
        x509.CertificateBuilder()
        .subject_name(vcek.subject)
        .issuer_name(vcek.issuer)
        .public_key(vcek.public_key())
        .serial_number(1)
        .not_valid_before(vcek.not_valid_before_utc)
        .not_valid_after(vcek.not_valid_after_utc)
        .sign(issuer_key, hashes.SHA384())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


def _snp_quote_cases(guest: _SnpGuest, builder: _Builder) -> None:
    report, table = guest.backend.get_report_with_certificates(
        hashlib.sha512(b"conformance snp report").digest()
    )
    root = guest.backend.trust_root_pem()

    def case(name: str, tests: str, data: bytes, reason: str | None) -> None:
        outcome = ACCEPT if reason is None else REFUSE
        files = {"quote": data, "certs": table, "root": root}
        builder.add(
            _Case(f"quote/{name}", "quote-snp", tests, _SNP_QUOTE_DOCS, files, NOW, outcome, reason)
        )

    case("snp-simulated-valid", "A simulated SEV-SNP report, its GHCB table, its ARK", report, None)
    flipped = bytearray(report)
    flipped[SIGNATURE_OFFSET] ^= 0x01
    case(
        "snp-flip-signature",
        f"One bit flipped at offset {SIGNATURE_OFFSET}, the signature's R",
        bytes(flipped),
        "report_signature_invalid",
    )


# -- suite 1.2: every registry reason (appended: the cases above keep their bytes) ------


def _tdx_policy(td: _Td, *lines: str) -> bytes:
    """``td``'s policy with ``lines`` added to its ``[tdx]`` table."""
    return td.policy().replace(b"[[artifacts]]", "\n".join((*lines, "[[artifacts]]")).encode())


def _tdx_reference_cases(td: _Td, builder: _Builder) -> None:
    """TDX launch and collateral checks (docs/policy.md "TDX checks"), one reason each."""
    root = td.backend.trust_root_pem()
    good = td.statement()
    tdx_docs = "docs/policy.md#tdx-checks-each-needs-evidence_format-and-quote_signature"

    def case(name: str, tests: str, statement: Statement, policy: bytes, reason: str) -> None:
        evidence = sign_statement(statement, td.key)
        _add_evidence(
            builder, name, tests, evidence, root=root, policy=policy, reason=reason, docs=tdx_docs
        )

    case(
        "tdx-tee-tcb-svn-too-low",
        "TEE_TCB_SVN below the policy's tdx.min_tee_tcb_svn",
        good,
        _tdx_policy(td, f'min_tee_tcb_svn = "{"ff" * 16}"'),
        "tee_tcb_svn_too_low",
    )
    case(
        "tdx-ccel-missing",
        "tdx.require_ccel set; the evidence carries no CCEL",
        good,
        _tdx_policy(td, "require_ccel = true"),
        "ccel_missing",
    )
    platform = tdx_pki.load(td.backend.state_directory)

    def collateral(**options: Any) -> dict[str, str]:
        options.setdefault("issue_date", ISSUED_AT - timedelta(days=1))
        options.setdefault("next_update", ISSUED_AT + timedelta(days=29))
        return tdx_pki.issue_collateral(platform, **options)

    def shipped(document: Mapping[str, Any] | None) -> Statement:
        return _with(good, collateral=None if document is None else dict(document))

    policy = td.policy()
    case(
        "tdx-tcb-status-not-allowed",
        "Collateral rating the platform's TCB OutOfDate; the policy allows UpToDate only",
        shipped(collateral(tcb_status="OutOfDate")),
        policy,
        "tcb_status_not_allowed",
    )
    case(
        "tdx-tcb-revoked",
        "Collateral rating the platform's TCB Revoked",
        shipped(collateral(tcb_status="Revoked")),
        policy,
        "tcb_revoked",
    )
    case(
        "tdx-collateral-not-yet-valid",
        "Collateral issued after the time of judgement",
        shipped(
            collateral(issue_date=NOW + timedelta(days=1), next_update=NOW + timedelta(days=30))
        ),
        policy,
        "collateral_not_yet_valid",
    )
    case(
        "tdx-collateral-expired",
        "Simulated collateral whose nextUpdate has passed",
        shipped(
            collateral(issue_date=NOW - timedelta(days=60), next_update=NOW - timedelta(days=1))
        ),
        policy,
        "collateral_expired",
    )
    forged = collateral()
    signature = bytearray(bytes.fromhex(forged["tcb_info_signature"]))
    signature[0] ^= 1
    case(
        "tdx-collateral-signature-invalid",
        "One flipped bit in the TCB info's signature",
        shipped(forged | {"tcb_info_signature": signature.hex()}),
        policy,
        "collateral_signature_invalid",
    )
    other_qe = dataclasses.replace(tdx_pki.SIMULATED_QE, mr_signer=bytes(range(32)))
    case(
        "tdx-collateral-mismatch",
        "A QE identity naming another quoting enclave's signer than the quote's QE",
        shipped(collateral(qe=other_qe)),
        policy,
        "collateral_mismatch",
    )
    revoked = collateral()
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(platform.platform_ca.subject)
        .last_update(ISSUED_AT - timedelta(days=1))
        .next_update(ISSUED_AT + timedelta(days=29))
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(platform.pck.serial_number)
            .revocation_date(ISSUED_AT - timedelta(days=1))
            .build()
        )
        .add_extension(x509.CRLNumber(2), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                platform.platform_ca_key.public_key()
            ),
            critical=False,
        )
        .sign(platform.platform_ca_key, hashes.SHA256())
    )
    pck_crl = crl.public_bytes(serialization.Encoding.DER).hex()
    case(
        "tdx-certificate-revoked",
        "The platform CA's CRL lists the quote's PCK certificate",
        shipped(revoked | {"pck_crl": pck_crl}),
        policy,
        "certificate_revoked",
    )
    case(
        "tdx-collateral-malformed",
        "Collateral whose TCB info is not JSON",
        shipped(collateral() | {"tcb_info": "{not json"}),
        policy,
        "collateral_malformed",
    )
    case(
        "tdx-collateral-unavailable",
        "Evidence without collateral under a policy that takes it from the evidence",
        shipped(None),
        policy,
        "collateral_unavailable",
    )
    # A TCB above the platform's: the platform matches the lower level, OutOfDate with
    # the simulated advisory, which the policy then allows so that only the advisory rule acts.
    higher = dataclasses.replace(tdx_pki.PLATFORM_TCB, cpu_svn=bytes([255] * 16))
    advised = shipped(collateral(tcb=higher))
    allows = 'allowed_tcb_statuses = ["UpToDate", "OutOfDate"]'
    case(
        "tdx-advisory-rejected",
        "The platform's TCB level carries an advisory the policy rejects",
        advised,
        _tdx_policy(td, allows, 'rejected_advisories = ["ATTESTD-SIMULATED-SA-0001"]'),
        "advisory_rejected",
    )
    case(
        "tdx-advisory-not-accepted",
        "The platform's TCB level carries an advisory the policy does not accept",
        advised,
        _tdx_policy(td, allows, 'accepted_advisories = ["ATTESTD-SIMULATED-SA-9999"]'),
        "advisory_not_accepted",
    )


def _snp_reference_cases(guest: _SnpGuest, builder: _Builder) -> None:
    """SEV-SNP launch checks (docs/policy.md "SEV-SNP checks"), one reason each."""
    root = guest.backend.trust_root_pem()
    good = guest.statement()
    quote = good.predicate.quote
    report = parse_report(quote)
    measurement = report.measurement.hex()

    def case(
        name: str, tests: str, reason: str, *, snp: str = "", statement: Statement = good
    ) -> None:
        policy = guest.policy(snp=snp)
        if "measurement" in snp:  # the one allowed value replaced, not a second key
            policy = guest.policy().replace(measurement.encode(), snp.split('"')[1].encode())
        evidence = sign_statement(statement, guest.key)
        _add_evidence(
            builder, name, tests, evidence, root=root, policy=policy, reason=reason, docs=_SNP_DOCS
        )

    other48, other32 = "ab" * 48, "ab" * 32
    case(
        "snp-measurement-not-allowed",
        "MEASUREMENT outside the policy",
        "measurement_not_allowed",
        snp=f'measurement = ["{other48}"]',
    )
    case(
        "snp-host-data-not-allowed",
        "HOST_DATA outside the policy",
        "host_data_not_allowed",
        snp=f'host_data = ["{other32}"]',
    )
    case(
        "snp-id-key-digest-not-allowed",
        "ID_KEY_DIGEST outside the policy",
        "id_key_digest_not_allowed",
        snp=f'id_key_digest = ["{other48}"]',
    )
    case(
        "snp-author-key-digest-not-allowed",
        "AUTHOR_KEY_DIGEST outside the policy",
        "author_key_digest_not_allowed",
        snp=f'author_key_digest = ["{other48}"]',
    )
    case(
        "snp-vmpl-not-allowed",
        f"VMPL {report.vmpl} outside snp.vmpl",
        "vmpl_not_allowed",
        snp=f"vmpl = [{(report.vmpl + 1) % 4}]",
    )
    case(
        "snp-guest-svn-too-low",
        "GUEST_SVN below snp.min_guest_svn",
        "guest_svn_too_low",
        snp=f"min_guest_svn = {report.guest_svn + 1}",
    )
    case(
        "snp-tcb-too-low",
        "The reported TCB's SNP SVN below snp.min_tcb.snp",
        "tcb_too_low",
        snp="min_tcb = { snp = 255 }",
    )
    case("snp-signing-key-not-allowed", "A VCEK-signed report under snp.signing_keys = vlek",
         "signing_key_not_allowed", snp='signing_keys = ["vlek"]')  # fmt: skip

    smt = report.policy | (1 << 16)
    case(
        "snp-smt-allowed",
        "A guest policy allowing SMT under snp.allow_smt = false",
        "smt_allowed",
        snp="allow_smt = false",
        statement=_with(good, quote=guest.resigned(quote, policy=smt)),
    )
    quiet = report.policy & ~(1 << 16)  # SMT off: only the bit under test is set
    case(
        "snp-migration-agent-allowed",
        "A guest policy allowing a migration agent",
        "migration_agent_allowed",
        statement=_with(good, quote=guest.resigned(quote, policy=quiet | (1 << 18))),
    )
    case(
        "snp-debug-guest",
        "A guest policy allowing debugging",
        "debug_guest",
        statement=_with(good, quote=guest.resigned(quote, policy=quiet | (1 << 19))),
    )


def _ccel_table(cc_type: int) -> bytes:
    """An ACPI CCEL table (revision 1, 56 bytes) for ``cc_type``, its checksum fixed."""
    fields = (b"CCEL", 56, 1, 0, b"ATTSTD", b"CONFORM ", 1, b"ATTD", 1, cc_type, 0, 0, 4096, 0)
    table = bytearray(struct.pack("<4sIBB6s8sI4sIBBHQQ", *fields))
    table[9] = -sum(table) % 256
    return bytes(table)


def _ccel_log() -> bytes:
    """A CC event log holding only its Spec ID event (SHA-384): it replays RTMR0-2 to zero."""
    body = b"Spec ID Event03\0" + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, 1)
    body += struct.pack("<HH", 0x000C, 48) + b"\0"
    return struct.pack("<II20sI", 0, 3, bytes(20), len(body)) + body


def _more_evidence_cases(td: _Td, builder: _Builder, workdir: Path) -> None:
    """Common and TDX reasons that need other evidence than a policy change."""
    root = td.backend.trust_root_pem()
    good = td.statement()
    tdx_docs = "docs/policy.md#tdx-checks-each-needs-evidence_format-and-quote_signature"

    def case(name: str, tests: str, statement: Statement, reason: str, **options: Any) -> None:
        options.setdefault("root", root)
        options.setdefault("policy", td.policy())
        evidence = sign_statement(statement, options.pop("key", td.key))
        _add_evidence(builder, name, tests, evidence, reason=reason, **options)

    # The PCK chain as quoted (leaf, platform CA, root) with its CAs swapped: the same
    # length, so the quote still parses; the leaf is not signed by the next certificate.
    platform = tdx_pki.load(td.backend.state_directory)
    ca_pem, root_pem = (
        c.public_bytes(serialization.Encoding.PEM) for c in (platform.platform_ca, platform.root_ca)
    )
    quote = good.predicate.quote
    assert quote.count(ca_pem + root_pem) == 1
    swapped = quote.replace(ca_pem + root_pem, root_pem + ca_pem)
    case(
        "pck-chain-invalid",
        "The quote's PCK chain with its two CAs swapped: the leaf's issuer does not sign it",
        _with(good, quote=swapped),
        "pck_chain_invalid",
    )
    builder.add(
        _Case(
            "quote/tdx-pck-chain-invalid",
            "quote",
            "A bare quote whose PCK chain has its two CAs swapped",
            _QUOTE_DOCS,
            {"quote": swapped, "root": root},
            NOW,
            REFUSE,
            "pck_chain_invalid",
        )
    )
    # No artifacts, so the statement's one subject is the agent subject: of another key.
    subjects = tuple(statement_subjects((), key_id(td.other_key.public_key())))
    binding = td.binding(NONCE, subjects)
    quoted = td.backend.get_quote(report_data_for(binding))
    foreign = _with(good, binding=binding, quote=quoted, batch=None)  # a batch of one, again
    case(
        "agent-subject-mismatch",
        "The agent subject names another key than the binding's (the subjects digest agrees)",
        dataclasses.replace(foreign, subjects=subjects),
        "agent_subject_mismatch",
        policy=td.policy().split(b"[[artifacts]]")[0],  # no artifact to look for
    )
    case(
        "tdx-ccel-malformed",
        "A CCEL table for SEV (CC type 1) in TDX evidence",
        _with(good, ccel=CcelBlob(_ccel_table(1), _ccel_log())),
        "ccel_malformed",
        docs=tdx_docs,
    )
    case(
        "tdx-ccel-mismatch",
        "A CC event log that replays RTMR0-2 to other values than the quote's",
        _with(good, ccel=CcelBlob(_ccel_table(2), _ccel_log())),
        "ccel_mismatch",
        docs=tdx_docs,
    )
    # A debuggable TD (TDATTRIBUTES.DEBUG, bit 0) on its own simulated platform: both
    # tcb_status (dcap-qvl does not rate a debug TD) and debug refuse it, for debug_td.
    attributes = bytearray(MEASUREMENT_DEFAULTS["td_attributes"])
    attributes[0] |= 0x01
    backend = SimulatedTdxBackend.open(
        workdir / "debug-td", SimulatedTdMeasurements(td_attributes=bytes(attributes))
    )
    for event in td.events:
        backend.extend_runtime_register(event_digest(event))
    debug_td = dataclasses.replace(td, backend=backend)
    case(
        "tdx-debug-td",
        "A TD whose attributes allow debugging, under a policy without tdx.allow_debug",
        debug_td.statement(),
        "debug_td",
        root=backend.trust_root_pem(),
        policy=debug_td.policy(),
        docs=tdx_docs,
    )


def _dcap_catch_all_cases(td: _Td, builder: _Builder) -> None:
    """dcap_verification_failed: a dcap-qvl refusal no named reason maps (tee/tdx/dcap.py).

    A QE identity whose TCB level asks a higher QE ISVSVN than the quoting enclave's
    ("QE ISVSVN ... is below minimum required"), as evidence and as a bare quote.
    """
    platform = tdx_pki.load(td.backend.state_directory)
    qe = dataclasses.replace(tdx_pki.SIMULATED_QE, isv_svn=tdx_pki.SIMULATED_QE.isv_svn + 5)
    collateral = tdx_pki.issue_collateral(
        platform,
        issue_date=ISSUED_AT - timedelta(days=1),
        next_update=ISSUED_AT + timedelta(days=29),
        qe=qe,
    )
    root = td.backend.trust_root_pem()
    good = td.statement()
    _add_evidence(
        builder,
        "tdx-dcap-verification-failed",
        "A QE identity requiring a higher QE ISVSVN than the quoting enclave's",
        sign_statement(_with(good, collateral=collateral), td.key),
        root=root,
        policy=td.policy(),
        reason="dcap_verification_failed",
        docs="docs/policy.md#tdx-checks-each-needs-evidence_format-and-quote_signature",
    )
    files = {
        "quote": good.predicate.quote,
        "root": root,
        "collateral": json.dumps(collateral, indent=2).encode() + b"\n",
    }
    builder.add(
        _Case(
            "quote/tdx-dcap-verification-failed",
            "quote",
            "A simulated quote with collateral whose QE identity requires a higher ISVSVN",
            _QUOTE_DOCS,
            files,
            NOW,
            REFUSE,
            "dcap_verification_failed",
        )
    )


def _snp_product_unknown_case(guest: _SnpGuest, builder: _Builder) -> None:
    """product_unknown: no product from the policy, the report or the VCEK.

    A version 2 report (no CPUID) shipped with the committed VCEK whose
    productName attestd does not know (``conformance/fixtures/``, made by
    ``attestd.conformance._fixtures``: the ASK's RSA-PSS cannot be seeded).
    """
    pem = (SNP_FIXTURE.parent / fixtures.UNKNOWN_PRODUCT_VCEK).read_bytes()
    vcek = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    good = guest.statement()
    _, ask, ark = good.predicate.certificates
    quote = guest.resigned(
        good.predicate.quote, version=2, cpuid_fam_id=0, cpuid_mod_id=0, cpuid_step=0
    )
    _add_evidence(
        builder,
        "snp-product-unknown",
        "A version 2 report (no CPUID) with a VCEK naming an unknown product, no snp.product",
        sign_statement(_with(good, quote=quote, certificates=(vcek, ask, ark)), guest.key),
        root=guest.backend.trust_root_pem(),
        policy=guest.policy(),
        reason="product_unknown",
        docs=_SNP_DOCS,
    )


def _collateral_too_large_case(td: _Td, builder: _Builder) -> None:
    """collateral_too_large: a policy's collateral file one byte over MAX_COLLATERAL_BYTES.

    The file is synthesized by the runner (docs/conformance.md, "Synthesized
    inputs"), named by its role beside the policy, which names it by that name.
    """
    good = td.statement()
    _add_evidence(
        builder,
        "tdx-collateral-too-large",
        "A policy's collateral file (source = file) one byte over the 4 MiB limit",
        sign_statement(good, td.key),
        root=td.backend.trust_root_pem(),
        policy=_tdx_policy(td, "[tdx.collateral]", 'source = "file"', 'path = "collateral_file"'),
        reason="collateral_too_large",
        docs="docs/policy.md#tdx-checks-each-needs-evidence_format-and-quote_signature",
    )
    builder.cases[-1].synthesized["collateral_file"] = {
        "size": MAX_COLLATERAL_BYTES + 1,
        "byte": "20",
    }


# -- writing ------------------------------------------------------------------------------


_NAMES = {"policy": "policy.toml", "root": "root.pem", "key": "key.pem"}


def _write(builder: _Builder, seed: str, out: Path) -> None:
    entries = []
    # A file another case already holds is referenced there, not copied: chain cases
    # share most attestations. Roots stay beside the policy or layout that names them.
    written: dict[bytes, str] = {}
    for case in builder.cases:
        directory = Path("cases") / case.id
        inputs: dict[str, Any] = {}
        roots = b"".join(
            data for role, data in sorted(case.files.items()) if role.startswith("root")
        )
        for role, data in sorted(case.files.items()):
            digest = hashlib.sha256(data).digest()
            if role in ("policy", "layout"):  # the same text naming another root is another file
                digest = hashlib.sha256(digest + roots).digest()
            if not role.startswith("root") and digest in written:
                inputs[role] = written[digest]
                continue
            name = case.names.get(role) or _NAMES.get(role, role)
            (out / directory).mkdir(parents=True, exist_ok=True)
            (out / directory / name).write_bytes(data)
            inputs[role] = str(directory / name)
            written.setdefault(digest, inputs[role])
        for role, spec in sorted(case.synthesized.items()):
            inputs[role] = {"synthesize": spec}
        expect: dict[str, str] = {"outcome": case.outcome}
        if case.reason is not None:
            expect["reason"] = case.reason
        entry: dict[str, Any] = {
            "id": case.id,
            "part": case.id.split("/")[0],
            "kind": case.kind,
            "tests": case.tests,
            "docs": case.docs,
            "inputs": inputs,
        }
        if case.vectors:
            entry["vectors"] = case.vectors
        entries.append(entry | {"now": format_rfc3339(case.now), "expect": expect})
    document = {
        "suite": "attestd-conformance",
        "version": SUITE_VERSION,
        "seed": seed,
        "gaps": GAPS,
        "cases": entries,
    }
    (out / MANIFEST).write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")


def build(out: Path, seed: str = DEFAULT_SEED) -> int:
    """Write the suite's cases and manifest under ``out`` (its ``cases/`` replaced); the count.

    Every case is judged by attestd's adapter before the manifest is written:
    a verdict other than the expected one is a RuntimeError, not a silent case.
    """
    builder = _Builder(out)
    with (
        tempfile.TemporaryDirectory(prefix="attestd-conformance-") as tmp,
        seeded(seed.encode()) as stream,
    ):
        td = _td(Path(tmp) / "tdx", stream)
        _quote_cases(td, builder)
        _vendor_cases(builder)
        _evidence_cases(td, builder)
        _result_cases(td, builder, Path(tmp), stream)
        later_chain_cases = _chain_cases(Path(tmp), builder, stream)
        guest = _snp_guest(Path(tmp) / "snp", td, stream)
        _snp_quote_cases(guest, builder)
        _snp_evidence_cases(guest, td, builder)
        _tdx_reference_cases(td, builder)
        _snp_reference_cases(guest, builder)
        _more_evidence_cases(td, builder, Path(tmp))
        later_chain_cases(guest.backend.trust_root_pem())
        _dcap_catch_all_cases(td, builder)
        _snp_product_unknown_case(guest, builder)
        _collateral_too_large_case(td, builder)
    shutil.rmtree(out / "cases", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    _write(builder, seed, out)
    suite = load_suite(out, VECTORS)
    wrong = []
    for case in suite.cases:
        if case.vectors:
            problem = check_vectors(case)
            if problem is not None and problem.skipped:
                continue  # no vectors here: the cases stand as written, unchecked
            if problem is not None:
                wrong.append(f"{case.id}: {problem.detail}")
                continue
        verdict = adapter.judge(case, suite.root)
        if (verdict.outcome, verdict.reason) != (case.expect.outcome, case.expect.reason):
            wrong.append(f"{case.id}: {verdict.line()} ({verdict.detail})")
        elif verdict.others:  # a refusal case triggers its reason and nothing else
            wrong.append(f"{case.id}: also {', '.join(verdict.others)}")
    if wrong:
        raise RuntimeError("cases attestd does not judge as expected:\n" + "\n".join(wrong))
    return len(suite.cases)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the attestd conformance suite.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    count = build(args.out, args.seed)
    print(f"{count} cases written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
