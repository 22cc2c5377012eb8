"""Signed stage chains, built the way the agent builds them, without gRPC.

    agent = make_tdx_agent(state_dir, clock=lambda: at)   # a simulated TD with an agent key
    built = Pipeline({"prepare": agent, ...}).run()        # four linked stage attestations
    layout = Pipeline(...).layout(directory)               # the layout that accepts them

The conformance generator (``attestd.conformance.generate``) and the tests
(``tests/verifier/chain_builder.py`` re-exports this module) share this one
builder. A ``StageAgent`` is one simulated TEE (TDX or SEV-SNP) with an agent key and
its runtime log; on TDX every event is extended into RTMR3 as the agent does.
``attest`` turns a ``StageProvenance`` into a stage attestation: the canonical
provenance payload signed by the agent key, and evidence whose binding nonce
is ``stage_nonce(payload)``, whose subjects are the outputs, and whose quote
carries ``report_data_for(binding)``. ``Pipeline`` runs the four stages
prepare -> train -> quantize -> package, each linked to its predecessor by
``provenance_digest``, and writes the layout that accepts them.

Every knob a test needs to break one link is a keyword argument: sign the
provenance with another key, attest other subjects, bind another nonce, claim
another segment, run the stages in another order or in another run.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from attestd.conformance._evidence import binding, simulated_statement
from attestd.evidence import (
    RuntimeEvent,
    event_digest,
    format_rfc3339,
    key_id,
    sign_statement,
)
from attestd.evidence.envelope import sign_json
from attestd.evidence.provenance import (
    StageArtifact,
    StageAttestation,
    StageProvenance,
    builder_id,
    provenance_digest,
    stage_nonce,
)
from attestd.evidence.stack import SoftwareStack
from attestd.evidence.subjects import statement_subjects
from attestd.tee.snp import _simulated_pki as snp_pki
from attestd.tee.snp.abi import parse_report
from attestd.tee.snp.simulated import STATE_SUBDIR as SNP_STATE_SUBDIR
from attestd.tee.snp.simulated import SimulatedSnpBackend
from attestd.tee.tdx.abi import parse_quote
from attestd.tee.tdx.simulated import STATE_SUBDIR as TDX_STATE_SUBDIR
from attestd.tee.tdx.simulated import SimulatedTdxBackend

PIPELINE = "llm-release"
RUN_ID = "run-42"
STAGES = ("prepare", "train", "quantize", "package")
LICENSES = ("Apache-2.0", "CC-BY-4.0", "MIT")

RAW = StageArtifact("/data/raw", {"sha256": "a0" * 32}, "CC-BY-4.0", ("pii:none",))
DATASET = StageArtifact("/data/train", {"sha256": "a1" * 32}, "CC-BY-4.0", ("pii:none",))
BASE = StageArtifact("/models/base", {"sha256": "b1" * 32}, "Apache-2.0", ("eval:passed",))
INT8 = StageArtifact("/models/int8", {"sha256": "c1" * 32}, "Apache-2.0", ("eval:passed",))
RELEASE = StageArtifact("/release/model", {"sha256": "d1" * 32}, "Apache-2.0", ("eval:passed",))

#: Each stage's inputs and outputs in the happy chain.
FLOW: Mapping[str, tuple[tuple[StageArtifact, ...], tuple[StageArtifact, ...]]] = {
    "prepare": ((RAW,), (DATASET,)),
    "train": ((DATASET,), (BASE,)),
    "quantize": ((BASE,), (INT8,)),
    "package": ((INT8,), (RELEASE,)),
}


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class StageAgent:
    """One simulated TEE running an agent: backend, agent key and runtime log."""

    tee: str
    backend: SimulatedTdxBackend | SimulatedSnpBackend
    key: ec.EllipticCurvePrivateKey
    events: list[RuntimeEvent] = field(default_factory=list)
    clock: Callable[[], datetime] = _now
    """Every timestamp the agent writes (events, issuedAt, startedOn): the generator fixes it."""

    @property
    def key_id(self) -> str:
        return key_id(self.key.public_key())

    def record(self, domain: str, operation: str, content: bytes) -> RuntimeEvent:
        """Append an event; on TDX extend RTMR3 by its digest, as the agent does."""
        stamp = format_rfc3339(self.clock())
        event = RuntimeEvent(len(self.events), domain, operation, content, stamp)
        if isinstance(self.backend, SimulatedTdxBackend):
            self.backend.extend_runtime_register(event_digest(event))
        self.events.append(event)
        return event

    def evidence(
        self,
        nonce: bytes,
        subjects: Sequence[StageArtifact],
        *,
        issued_at: datetime | None = None,
    ) -> bytes:
        """Evidence over ``subjects`` answering ``nonce``, signed by the agent key."""
        chosen = tuple(statement_subjects([a.subject() for a in subjects], self.key_id))
        events = tuple(self.events)
        bound = binding(self.key, chosen, events, nonce=nonce, issued_at=issued_at or self.clock())
        statement = simulated_statement(
            self.backend, self.key, chosen, events, bound, host=f"test-{self.tee}"
        )
        return sign_statement(statement, self.key)

    def layout_tables(self, directory: Path, stage_index: int) -> list[str]:
        """The TOML of this agent's root and launch values for ``[[stages]]`` entry ``index``."""
        root = directory / f"root-{self.tee}-{self.key_id[7:19]}.pem"
        root.write_bytes(self.backend.trust_root_pem())
        lines = [
            f'tee = ["{self.tee}"]',
            f"[stages.trust.{self.tee}]",
            'root = "simulated"',
            f'simulated_root = "{root.name}"',
        ]
        if isinstance(self.backend, SimulatedTdxBackend):
            body = parse_quote(self.backend.get_quote(bytes(64))).body
            lines.append("[stages.tdx]")
            lines.append(f'mrtd = ["{body.mr_td.hex()}"]')
            lines += [f'rtmr{i} = ["{body.rtmrs[i].hex()}"]' for i in range(3)]
        else:
            measurement = parse_report(self.backend.get_quote(bytes(64))).measurement.hex()
            lines += ["[stages.snp]", f'measurement = ["{measurement}"]']
        return lines


def make_tdx_agent(
    state_dir: Path,
    *,
    platform: Path | None = None,
    clock: Callable[[], datetime] | None = None,
) -> StageAgent:
    """A simulated TD under ``state_dir``; with ``platform``, a copy of that TD's state.

    Copies share the platform's PKI, collateral and launch measurements (one
    root, one MRTD, as a layout derived from a pipeline spec expects of every
    stage) while each keeps its own runtime register.
    """
    if platform is not None:
        shutil.copytree(platform / TDX_STATE_SUBDIR, state_dir / TDX_STATE_SUBDIR)
    backend = SimulatedTdxBackend.open(state_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    return StageAgent("tdx", backend, key, clock=clock or _now)


def make_snp_agent(
    state_dir: Path,
    platform: snp_pki.SimulatedPki,
    *,
    clock: Callable[[], datetime] | None = None,
) -> StageAgent:
    """A simulated SEV-SNP guest on ``platform`` (share one: its RSA-4096 keys are slow)."""
    directory = state_dir / SNP_STATE_SUBDIR
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    snp_pki.save(platform, directory)
    backend = SimulatedSnpBackend.open(state_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    return StageAgent("sev-snp", backend, key, clock=clock or _now)


@dataclass(frozen=True)
class BuiltStage:
    """One stage attestation with the values that made it."""

    provenance: StageProvenance
    payload: bytes
    provenance_envelope: bytes
    evidence: bytes

    @property
    def digest(self) -> str:
        return provenance_digest(self.payload)

    @property
    def attestation(self) -> bytes:
        return StageAttestation(self.provenance_envelope, self.evidence).to_json()


def attest(
    agent: StageAgent,
    stage: str,
    inputs: Sequence[StageArtifact],
    outputs: Sequence[StageArtifact],
    previous: str | None,
    *,
    run_id: str = RUN_ID,
    pipeline: str = PIPELINE,
    events: int = 2,
    signer: ec.EllipticCurvePrivateKey | None = None,
    subjects: Sequence[StageArtifact] | None = None,
    nonce: bytes | None = None,
    segment: Sequence[RuntimeEvent] | None = None,
    issued_at: datetime | None = None,
    software_stack: SoftwareStack | None = None,
    stack_lists: Sequence[tuple[str, bytes]] = (),
    builder: str | None = None,
) -> BuiltStage:
    """Run one stage on ``agent``: record ``events`` events, then attest it as the agent does.

    ``builder`` replaces the provenance's builder.id (a forged or misattributed one).
    """
    started = agent.clock()
    recorded = [
        agent.record(f"pipeline.{stage}", "step", f"{run_id}:{i}".encode()) for i in range(events)
    ]
    provenance = StageProvenance(
        pipeline=pipeline,
        run_id=run_id,
        stage=stage,
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        previous=previous,
        builder_id=builder or builder_id(agent.tee, agent.backend.describe().backend, agent.key_id),
        agent_version="0.1.0",
        started_on=started,
        finished_on=agent.clock(),
        log_segment=tuple(recorded if segment is None else segment),
        software_stack=software_stack,
        stack_lists=tuple(stack_lists),
    )
    envelope = sign_json(provenance.to_statement(), signer or agent.key)
    raw = base64.b64decode(json.loads(envelope)["payload"])
    evidence = agent.evidence(
        nonce if nonce is not None else stage_nonce(raw),
        outputs if subjects is None else subjects,
        issued_at=issued_at,
    )
    return BuiltStage(provenance, raw, envelope, evidence)


@dataclass
class Pipeline:
    """The four-stage pipeline on simulated TEEs: prepare and quantize on TDX, the rest on SNP."""

    agents: Mapping[str, StageAgent]

    def run(
        self,
        *,
        order: Sequence[str] = STAGES,
        run_id: str = RUN_ID,
        flow: Mapping[str, tuple[Sequence[StageArtifact], Sequence[StageArtifact]]] = FLOW,
        overrides: Mapping[str, Mapping[str, object]] | None = None,
    ) -> dict[str, BuiltStage]:
        """Attest the stages in ``order``, each linked to the one run before it."""
        built: dict[str, BuiltStage] = {}
        previous: str | None = None
        for stage in order:
            inputs, outputs = flow[stage]
            extra = dict((overrides or {}).get(stage, {}))
            link = extra.pop("previous", previous)
            result = attest(
                self.agents[stage], stage, inputs, outputs, link,  # type: ignore[arg-type]
                run_id=run_id, **extra,  # type: ignore[arg-type]
            )  # fmt: skip
            built[stage] = result
            previous = result.digest
        return built

    def layout(
        self,
        directory: Path,
        *,
        extra: str = "",
        stage_extra: Mapping[str, str] | None = None,
        agents: Mapping[str, StageAgent] | None = None,
        licenses: Sequence[str] | None = LICENSES,
    ) -> Path:
        """Write a layout accepting this pipeline's stages on their agents; return its path."""
        lines = [f'pipeline = "{PIPELINE}"']
        if licenses is not None:
            lines.append("allowed_licenses = [" + ", ".join(f'"{x}"' for x in licenses) + "]")
        lines.append(extra)
        for index, stage in enumerate(STAGES):
            agent = (agents or {}).get(stage, self.agents[stage])
            lines += ["[[stages]]", f'name = "{stage}"']
            lines += (stage_extra or {}).get(stage, "").splitlines()
            lines += agent.layout_tables(directory, index)
        path = directory / "layout.toml"
        path.write_text("\n".join(lines) + "\n")
        return path


def attestation_bytes(
    built: Mapping[str, BuiltStage], names: Sequence[str] = STAGES
) -> list[bytes]:
    return [built[name].attestation for name in names]


def with_outputs(
    flow: Mapping[str, tuple[Sequence[StageArtifact], Sequence[StageArtifact]]],
    stage: str,
    *,
    inputs: Sequence[StageArtifact] | None = None,
    outputs: Sequence[StageArtifact] | None = None,
) -> dict[str, tuple[Sequence[StageArtifact], Sequence[StageArtifact]]]:
    """``flow`` with one stage's inputs or outputs replaced."""
    changed = dict(flow)
    old_inputs, old_outputs = changed[stage]
    changed[stage] = (
        old_inputs if inputs is None else tuple(inputs),
        old_outputs if outputs is None else tuple(outputs),
    )
    return changed


def retag(artifact: StageArtifact, **changes: object) -> StageArtifact:
    """``artifact`` with fields changed (``license=``, ``tags=``, ``digest=``)."""
    return replace(artifact, **changes)  # type: ignore[arg-type]


LONG_AGO = timedelta(days=400)
