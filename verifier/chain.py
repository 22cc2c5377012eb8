"""Verify a chain of stage attestations against a pipeline layout.

    from attestd.verifier.chain import verify_chain
    from attestd.verifier.layout import load_layout

    layout = load_layout(Path("layout.toml"))
    result = verify_chain([Path(p).read_bytes() for p in files], layout, labels=files)
    if result.status is not AppraisalStatus.AFFIRMING:
        for check in result.failures:
            print(check.stage, check.name, check.reason, check.detail)
    print(json.dumps(result.to_json()))

Each attestation is checked on its own first: its evidence is appraised by
``attestd.verifier.appraisal`` under the policy its layout stage makes, with
the nonce ``stage_nonce(provenance payload)``; its provenance must be signed by
the agent key the quoted binding names, its outputs must be the evidence's
subjects, and its runtime-log segment a contiguous slice of the evidence's
log. Then the chain: every layout stage present once, in the order the
previous-stage links record, in one run, each stage's inputs its
predecessor's outputs, no artifact substituted on the way, licences allowed
and tags present; optionally, an OMS signature on the final product.

Like ``appraise``, ``verify_chain`` never raises for bad attestations: every
broken link is a failed, named check. The order of the attestations given does
not matter; the order the stages ran in is the one their signed links record.
docs/layout.md lists every check and reason.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from securesystemslib.dsse import Envelope

from attestd.errors import AttestdError
from attestd.evidence import (
    RuntimeEvent,
    Statement,
    agent_key_link,
    format_rfc3339,
    load_public_key_pem,
    open_evidence,
    verify_envelope,
)
from attestd.evidence.binding import AGENT_KEY_MISMATCH
from attestd.evidence.provenance import (
    StageArtifact,
    StageAttestation,
    StageProvenance,
    provenance_digest,
    stage_nonce,
)
from attestd.evidence.subjects import artifact_subjects
from attestd.verifier.appraisal import appraise
from attestd.verifier.checks import (
    Check,
    CheckDef,
    CheckStatus,
    Outcome,
    Runner,
    claim,
    failed,
    identity,
    names,
    not_checked,
    passed,
    warned,
)
from attestd.verifier.layout import Layout, StageRule
from attestd.verifier.oms import (
    OmsClosing,
    OmsError,
    OmsSignature,
    OmsSignatureError,
    close_chain,
    verify_oms_bundle,
)
from attestd.verifier.policy import ArtifactPolicy
from attestd.verifier.result import AppraisalResult, AppraisalStatus, overall_status
from attestd.verifier.software import REASONS as SOFTWARE_REASONS
from attestd.verifier.software import Violation, slsa_build_level, violations
from attestd.verifier.spdx import SpdxError, is_allowed, parse_expression

__all__ = [
    "CHAIN_CHECKS",
    "CHAIN_CHECK_NAMES",
    "STAGE_CHECKS",
    "STAGE_CHECK_NAMES",
    "TABLE_HEADER",
    "ChainResult",
    "StageResult",
    "verify_chain",
]


@dataclass(frozen=True)
class StageResult:
    """The verdict on one stage attestation, with its appraisal and what the table shows."""

    source: str
    stage: str | None
    checks: tuple[Check, ...]
    provenance: StageProvenance | None = None
    appraisal: AppraisalResult | None = None
    tee: str | None = None
    root: str | None = None
    agent_key_id: str | None = None
    digest: str | None = None
    """provenance_digest of the provenance payload: how the next stage names this one."""
    software: tuple[Violation, ...] = ()
    """Each software rule the stage's measured stack breaks (verifier/software.py)."""
    slsa_level: int | None = None
    """The SLSA Build level (1-3) its provenance meets; None when it was not judged."""

    @property
    def status(self) -> AppraisalStatus:
        return overall_status(self.checks)

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(c.reason for c in self.checks if c.status is CheckStatus.FAIL and c.reason)

    def table_row(self) -> tuple[str, ...]:
        """This stage as a row under :data:`TABLE_HEADER`: what it is, what it moved, and why not.

        The status is the distinct reasons of the failed checks, else of the
        warnings, else ``ok``; an agent key id is cut to fit a terminal.
        """
        inputs = self.provenance.inputs if self.provenance else ()
        outputs = self.provenance.outputs if self.provenance else ()
        flow = (
            f"{', '.join(_short_name(a.name) for a in inputs) or '-'} -> "
            f"{', '.join(_short_name(a.name) for a in outputs) or '-'}"
        )
        licences = sorted({"-" if a.license is None else a.license for a in outputs})
        warnings = [c.reason for c in self.checks if c.status is CheckStatus.WARN and c.reason]
        key = self.agent_key_id or "-"
        return (
            self.stage or f"? ({self.source})",
            self.tee or "-",
            self.root or "-",
            key[:19] + "..." if len(key) > 22 else key,
            flow,
            ", ".join(licences) or "-",
            ", ".join(dict.fromkeys(self.reasons or warnings)) or "ok",
        )

    def to_json(self) -> dict[str, Any]:
        provenance = self.provenance
        return {
            "stage": self.stage,
            "source": self.source,
            "status": self.status.value,
            "tee": self.tee,
            "rootOfTrust": self.root,
            "agentKeyId": self.agent_key_id,
            "provenanceDigest": self.digest,
            "runId": provenance.run_id if provenance else None,
            "previous": provenance.previous if provenance else None,
            "inputs": [a.to_json() for a in provenance.inputs] if provenance else [],
            "outputs": [a.to_json() for a in provenance.outputs] if provenance else [],
            "softwareStack": (
                provenance.software_stack.to_json()
                if provenance and provenance.software_stack
                else None
            ),
            "softwareViolations": [v.to_json() for v in self.software],
            "slsaBuildLevel": self.slsa_level,
            "appraisal": self.appraisal.to_json() if self.appraisal else None,
            "checks": [c.to_json(with_stage=True) for c in self.checks],
        }


@dataclass(frozen=True)
class ChainResult:
    """The verdict on a whole chain: each stage's, and the chain's own checks."""

    pipeline: str
    run_id: str | None
    stages: tuple[StageResult, ...]
    """In layout order; attestations of no layout stage, or of one already seen, follow."""
    checks: tuple[Check, ...]
    max_age_seconds: int | None
    verified_at: datetime
    oms: dict[str, object] | None = None

    @property
    def all_checks(self) -> tuple[Check, ...]:
        return tuple(c for s in self.stages for c in s.checks) + self.checks

    @property
    def status(self) -> AppraisalStatus:
        """Affirming only if every stage and chain check passed (skips count for nothing)."""
        return overall_status(self.all_checks)

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.all_checks if c.status is CheckStatus.FAIL)

    @property
    def reasons(self) -> tuple[str, ...]:
        """The distinct reasons of the failed checks, in the order they were found."""
        return tuple(dict.fromkeys(c.reason for c in self.failures if c.reason))

    @property
    def slsa_level(self) -> int | None:
        """The chain's SLSA Build level: its weakest stage's (None if a stage was not judged)."""
        levels = [s.slsa_level for s in self.stages]
        if not levels or any(level is None for level in levels):
            return None
        return min(level for level in levels if level is not None)

    @property
    def affirming(self) -> bool:
        """Whether the whole chain verified: every stage and chain check passed or skipped."""
        return self.status is AppraisalStatus.AFFIRMING

    def render_table(self) -> str:
        """The chain for people: one row per stage, the chain's own failures, then the verdict.

        ``attestctl chain verify`` prints this; ``to_json`` is the machine-readable form.
        """
        rows = [TABLE_HEADER, *(stage.table_row() for stage in self.stages)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_HEADER))]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
        ]
        for stage in self.stages:
            # The offending package (or digest) and its stage, one line each.
            for violation in stage.software:
                lines.append(f"stage {stage.stage}: {violation.reason}: {violation.detail}")
        for check in self.checks:
            if check.status is not CheckStatus.PASS:
                label = check.reason or check.status.value
                lines.append(f"chain: {check.name}: {label}: {check.detail}")
        if self.max_age_seconds is None:
            lines.append("freshness: not checked (the layout sets no max_age_seconds)")
        verdict = "VERIFIED" if self.affirming else "NOT VERIFIED"
        because = f" ({', '.join(self.reasons)})" if self.reasons else ""
        lines.append(f"chain {self.pipeline} run {self.run_id}: {verdict}{because}")
        return "".join(line + "\n" for line in lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "pipeline": self.pipeline,
            "runId": self.run_id,
            "freshness": {
                "maxAgeSeconds": self.max_age_seconds,
                "checked": self.max_age_seconds is not None,
            },
            "verifiedAt": format_rfc3339(self.verified_at),
            "reasons": list(self.reasons),
            "slsaBuildLevel": self.slsa_level,
            "stages": [s.to_json() for s in self.stages],
            "checks": [c.to_json(with_stage=True) for c in self.checks],
            "oms": self.oms,
        }


TABLE_HEADER = ("STAGE", "TEE", "ROOT", "AGENT KEY", "INPUTS -> OUTPUTS", "LICENCE", "STATUS")
"""The columns of :meth:`ChainResult.render_table`, one :meth:`StageResult.table_row` each."""


def _short_name(name: str) -> str:
    """An artifact's last path component: the table has no room for absolute paths."""
    return name.rstrip("/").rsplit("/", 1)[-1] or name


def verify_chain(
    attestations: Sequence[bytes],
    layout: Layout,
    *,
    labels: Sequence[str] | None = None,
    now: datetime | None = None,
    oms: OmsClosing | None = None,
) -> ChainResult:
    """Verify stage attestation files (``StageAttestation.to_json()`` bytes) against ``layout``.

    ``labels`` name the attestations in the result (file names; default
    ``#0``, ``#1``...). ``now`` is the verifier's clock, aware. ``oms`` closes
    the chain with a model signature; a missing ``model_signing`` or an
    unreadable bundle raises an OmsError, a bad signature is a failed check.
    """
    if now is not None and now.utcoffset() is None:
        raise ValueError("verify_chain: now must be a timezone-aware datetime")
    clock = now or datetime.now(UTC)
    given = list(labels) if labels is not None else [f"#{i}" for i in range(len(attestations))]
    if len(given) != len(attestations):
        raise ValueError("verify_chain: one label per attestation")
    parsed = [
        _Stage(label, data, layout, clock) for label, data in zip(given, attestations, strict=True)
    ]
    return _Chain(layout, parsed, clock, oms).run()


# -- one stage attestation ---------------------------------------------------------------


class _Stage:
    """One attestation: parsed, appraised, and checked on its own."""

    def __init__(self, source: str, data: bytes, layout: Layout, now: datetime) -> None:
        self.source = source
        self.data = data
        self.layout = layout
        self.now = now
        self.runner = Runner()
        self.provenance: StageProvenance | None = None
        self.payload = b""
        self.envelope: Envelope | None = None
        self.statement: Statement | None = None
        self.evidence = b""
        self.rule: StageRule | None = None
        self.appraisal: AppraisalResult | None = None
        self.software_violations: tuple[Violation, ...] = ()
        self.slsa_level: int | None = None
        self.runner.run(OWN_CHECKS, self)

    @property
    def name(self) -> str | None:
        return self.provenance.stage if self.provenance else None

    @property
    def digest(self) -> str | None:
        return provenance_digest(self.payload) if self.provenance else None

    def parse(self) -> Outcome:
        try:
            attestation = StageAttestation.from_json(self.data)
            parsed = attestation.read_provenance()
            _, self.statement = open_evidence(attestation.evidence)
        except AttestdError as err:
            return failed("attestation_malformed", err.message)
        self.envelope, self.payload, self.evidence = (
            parsed.envelope,
            parsed.payload,
            attestation.evidence,
        )
        self.provenance = provenance = parsed.provenance
        self.runner.stage = provenance.stage  # every check from here on speaks about this stage
        return passed(f"stage {provenance.stage!r} of run {provenance.run_id!r}")

    def stage(self) -> Outcome:
        self.rule = self.layout.stage(self._provenance().stage)
        if self.rule is None:
            known = ", ".join(s.name for s in self.layout.stages)
            return failed("stage_unknown", f"the layout has no stage {self.name!r} ({known})")
        return passed(f"the layout has stage {self.name!r}")

    def pipeline(self) -> Outcome:
        pipeline = self._provenance().pipeline
        if pipeline != self.layout.pipeline:
            return failed(
                "pipeline_mismatch",
                f"the attestation is of pipeline {pipeline!r}, the layout of "
                f"{self.layout.pipeline!r}",
            )
        return passed(f"pipeline {pipeline!r}")

    def tee(self) -> Outcome:
        assert self.rule is not None  # guaranteed by the stage dependency
        tee = str(self._statement().predicate.tee.tee)
        if tee not in self.rule.tees:
            return failed(
                "tee_not_accepted",
                f"stage {self.rule.name!r} ran on {tee}; the layout accepts "
                f"{', '.join(self.rule.tees)}",
            )
        return passed(f"{tee} is accepted for stage {self.rule.name!r}")

    def appraise_evidence(self) -> Outcome:
        assert self.rule is not None  # guaranteed by the tee dependency
        tee = str(self._statement().predicate.tee.tee)
        outputs = [ArtifactPolicy(a.sha256, a.name) for a in self._provenance().outputs]
        policy = self.rule.policy(tee, self.layout.freshness(), outputs, self.layout.source)
        result = appraise(
            self.evidence, nonce=stage_nonce(self.payload), policy=policy, now=self.now
        )
        self.appraisal = result
        if result.status is AppraisalStatus.AFFIRMING:
            return passed(f"the {tee} evidence is affirmed, bound to this provenance")
        troubles = [c for c in result.checks if c.status in (CheckStatus.FAIL, CheckStatus.WARN)]
        detail = "; ".join(f"{c.name}: {c.reason}: {c.detail}" for c in troubles)
        worst = [c for c in troubles if c.status is CheckStatus.FAIL] or troubles
        first = worst[0].reason or "evidence_not_affirming"
        if result.status is AppraisalStatus.WARNING:
            return warned(first, detail)
        return failed(first, detail)

    def agent_key(self) -> Outcome:
        named = self._statement().predicate.binding.agent_key_id
        allowed = self.rule.agent_keys if self.rule is not None else None
        if allowed is None:
            return passed(f"agent key {named} (the layout allows any)")
        if named not in allowed:
            return failed(
                "agent_key_not_allowed", f"agent key {named} is not among the stage's agent_keys"
            )
        return passed(f"agent key {named} is allowed")

    def provenance_signature(self) -> Outcome:
        predicate = self._statement().predicate
        named = predicate.binding.agent_key_id
        broken = agent_key_link(predicate.binding, predicate.agent_key_pem)
        if broken is not None:
            return failed(broken.reason, broken.detail)
        assert self.envelope is not None  # guaranteed by the attestation_format dependency
        if named not in self.envelope.signatures:
            signers = ", ".join(sorted(self.envelope.signatures))
            return failed(
                "provenance_key_mismatch",
                f"the provenance is signed by {signers}, the evidence's agent key is {named}",
            )
        try:
            verify_envelope(self.envelope, load_public_key_pem(predicate.agent_key_pem))
        except AttestdError as err:
            return failed("provenance_signature_invalid", err.message)
        return passed(f"the provenance is signed by the evidence's agent key {named}")

    def builder(self) -> Outcome:
        builder = self._provenance().builder_id
        named = self._statement().predicate.binding.agent_key_id
        if not builder.endswith(f"#{named}"):
            return failed(
                "builder_mismatch", f"builder.id {builder!r} does not name the agent key {named}"
            )
        return passed(f"builder.id {builder!r}")

    def outputs(self) -> Outcome:
        outputs = {a.name: dict(a.digest) for a in self._provenance().outputs}
        # The agent subject (a stage with no outputs) is no output; the appraisal checked it.
        subjects = {s.name: dict(s.digest) for s in artifact_subjects(self._statement().subjects)}
        if outputs != subjects:
            missing = sorted(set(outputs) - set(subjects))
            extra = sorted(set(subjects) - set(outputs))
            differ = sorted(n for n in set(outputs) & set(subjects) if outputs[n] != subjects[n])
            return failed(
                "outputs_mismatch",
                f"the provenance's outputs are not the evidence's subjects (not attested: "
                f"{missing}, not in the provenance: {extra}, other digests: {differ})",
            )
        return passed(f"{len(outputs)} outputs are the evidence's subjects")

    def log_segment(self) -> Outcome:
        segment = self._provenance().log_segment
        log = self._statement().predicate.runtime_log
        if not segment:
            return passed("the stage recorded no runtime events")
        if _slice_at(log, segment) is None:
            return failed(
                "log_segment_mismatch",
                f"the {len(segment)} events of the provenance's runtime-log segment are not a "
                f"contiguous slice of the evidence's {len(log)}-event log",
            )
        return passed(f"{len(segment)} runtime events are a slice of the evidence's log")

    def software(self) -> Outcome:
        assert self.rule is not None  # guaranteed by the stage dependency
        rules = self.layout.software_for(self.rule)
        if not rules.any:
            return not_checked("the layout sets no software rules for this stage")
        found = violations(self._provenance(), rules)
        self.software_violations = tuple(found)
        if found:
            detail = "; ".join(v.detail for v in found)
            return failed(found[0].reason, detail)
        return passed("the stage's software stack meets the layout's software rules")

    def slsa(self) -> Outcome:
        assert self.rule is not None  # guaranteed by the stage dependency
        done = {c.name: c.status for c in self.runner.checks}
        signed = done.get("provenance_signature") is CheckStatus.PASS
        affirmed = done.get("evidence") is CheckStatus.PASS
        level = slsa_build_level(self._provenance(), signed=signed, affirmed=affirmed)
        self.slsa_level = level
        minimum = self.layout.software_for(self.rule).min_slsa_level
        if minimum is not None and level < minimum:
            return failed(
                "slsa_level_insufficient",
                f"stage {self.rule.name!r} meets SLSA Build L{level}; the layout requires "
                f"L{minimum}",
            )
        return passed(f"SLSA Build L{level}" + (f" (L{minimum} required)" if minimum else ""))

    def _provenance(self) -> StageProvenance:
        assert self.provenance is not None  # guaranteed by the attestation_format dependency
        return self.provenance

    def _statement(self) -> Statement:
        assert self.statement is not None  # guaranteed by the attestation_format dependency
        return self.statement

    def result(self) -> StageResult:
        order = {name: i for i, name in enumerate(STAGE_CHECK_NAMES)}
        checks = sorted(self.runner.checks, key=lambda c: order.get(c.name, len(order)))
        tee = root = key = None
        if self.statement is not None:
            predicate = self.statement.predicate
            tee = str(predicate.tee.tee)
            key = predicate.binding.agent_key_id
            root = predicate.tee.root_of_trust
            if self.rule is not None and tee in self.rule.trust:
                root = f"{self.rule.trust[tee].root} ({root})"
        return StageResult(
            self.source, self.name, tuple(checks), self.provenance, self.appraisal,
            tee, root, key, self.digest, self.software_violations, self.slsa_level,
        )  # fmt: skip


def _slice_at(log: Sequence[RuntimeEvent], segment: Sequence[RuntimeEvent]) -> int | None:
    first = segment[0].sequence
    start = next((i for i, e in enumerate(log) if e.sequence == first), None)
    if start is None or tuple(log[start : start + len(segment)]) != tuple(segment):
        return None
    return start


# -- a stage in its chain ------------------------------------------------------------


@dataclass(frozen=True)
class _Link:
    """What a stage's place in the chain is checked against: the stages around it."""

    stage: _Stage
    provenance: StageProvenance
    index: int
    before: _Stage | None
    earlier: Sequence[_Stage]
    digests: dict[str, _Stage]
    run_id: str | None
    layout: Layout


def _same_run(link: _Link) -> Outcome:
    if link.provenance.run_id != link.run_id:
        return failed(
            "run_mismatch",
            f"the attestation is from run {link.provenance.run_id!r}, "
            f"the chain is run {link.run_id!r}",
        )
    return passed(f"run {link.run_id!r}")


def _is_first(link: _Link) -> bool:
    """The stage names no predecessor: first in the list, or a root of a partial order."""
    rule = link.stage.rule
    if rule is not None and rule.after is not None:
        return not rule.after
    return link.index == 0


def _should_follow(link: _Link) -> str:
    """Whom the layout lets the stage follow, for messages."""
    rule = link.stage.rule
    if rule is not None and rule.after:
        return " or ".join(repr(name) for name in rule.after)
    return f"{link.before.name!r}" if link.before is not None else "no stage (it is the first)"


def _previous(link: _Link) -> Outcome:
    previous, before = link.provenance.previous, link.before
    if not _is_first(link) and (before is None or before.provenance is None):
        return not_checked("skipped: the predecessor's attestation is missing")
    expected = before.digest if before is not None else None
    if previous == expected:
        if before is None:
            return passed("the first stage names no predecessor")
        return passed(f"follows {before.name!r} (provenance sha256 {expected})")
    other = link.digests.get(previous) if previous is not None else None
    should = _should_follow(link)
    if other is not None:
        return failed(
            "stage_out_of_order",
            f"the stage ran after {other.name!r}; the layout puts it after {should}",
        )
    if previous is None:
        return failed(
            "previous_link_broken", f"the stage names no predecessor; it must follow {should}"
        )
    return failed(
        "previous_link_broken",
        f"the stage follows provenance sha256 {previous}, which is not {should}'s "
        f"({expected}): an attestation from another run?",
    )


def _inputs(link: _Link) -> Outcome:
    inputs, before = link.provenance.inputs, link.before
    produced = {a.name: (s, a) for s in link.earlier if s.provenance for a in s.provenance.outputs}
    substituted = [
        f"{a.name} is sha256 {a.sha256}, {produced[a.name][0].name!r} produced "
        f"{produced[a.name][1].sha256}"
        for a in inputs
        if a.name in produced and not hmac.compare_digest(a.sha256, produced[a.name][1].sha256)
    ]
    if substituted:
        return failed("artifact_substituted", "; ".join(substituted))
    if _is_first(link):
        return passed(f"{len(inputs)} inputs from outside the chain (the first stage)")
    rule = link.stage.rule
    if rule is not None and not rule.inputs_from_previous:
        return passed(f"{len(inputs)} inputs (the layout does not tie them to the predecessor)")
    if before is None or before.provenance is None:
        return not_checked("skipped: the predecessor's attestation is missing")
    wanted = {a.name for a in before.provenance.outputs}
    got = {a.name for a in inputs}
    if wanted != got:
        return failed(
            "inputs_mismatch",
            f"inputs {sorted(got)} are not {before.name!r}'s outputs {sorted(wanted)} "
            f"(missing {sorted(wanted - got)}, extra {sorted(got - wanted)})",
        )
    return passed(f"inputs are {before.name!r}'s {len(wanted)} outputs, digest for digest")


def _licenses(link: _Link) -> Outcome:
    artifacts = (*link.provenance.inputs, *link.provenance.outputs)
    allowed = link.layout.allowed_licenses
    if allowed is None:
        return not_checked("the layout sets no allowed_licenses")
    problems: list[tuple[str, str]] = []
    for artifact in artifacts:
        if artifact.license is None:
            problems.append(("license_missing", f"{artifact.name} carries no licence"))
            continue
        try:
            expression = parse_expression(artifact.license)
        except SpdxError as err:
            problems.append((err.reason, f"{artifact.name}: {err.message}"))
            continue
        if not is_allowed(expression, allowed):
            problems.append(
                ("license_not_allowed", f"{artifact.name} is {artifact.license!r}, not allowed")
            )
    if problems:
        return failed(problems[0][0], "; ".join(detail for _, detail in problems))
    return passed(f"{len(artifacts)} artifacts carry allowed licences")


def _tags(link: _Link) -> Outcome:
    provenance, rule = link.provenance, link.stage.rule
    problems: list[str] = []
    required = rule.required_tags if rule is not None else ()
    for artifact in provenance.outputs:
        problems += _missing_tags(artifact, required, "the stage")
    rules = {r.name: r for r in link.layout.artifacts}
    for artifact in (*provenance.inputs, *provenance.outputs):
        if artifact.name in rules:
            problems += _missing_tags(artifact, rules[artifact.name].required_tags, "its rule")
    if problems:
        return failed("tag_missing", "; ".join(problems))
    if not required and not any(a.name in rules for a in provenance.outputs):
        return not_checked("the layout requires no tags of this stage")
    return passed("every required tag is present")


def _missing_tags(artifact: StageArtifact, required: Iterable[str], who: str) -> list[str]:
    absent = [t for t in required if t not in artifact.tags]
    return [f"{artifact.name} lacks {', '.join(absent)} ({who} requires it)"] if absent else []


# -- the chain -----------------------------------------------------------------------


@dataclass
class _Chain:
    layout: Layout
    parsed: list[_Stage]
    now: datetime
    oms: OmsClosing | None
    runner: Runner = field(
        default_factory=lambda: Runner(verdicts=(OmsSignatureError,), propagate=(OmsError,))
    )
    by_stage: dict[str, _Stage] = field(default_factory=dict)
    extras: list[_Stage] = field(default_factory=list)
    present: list[_Stage | None] = field(default_factory=list)
    signed: OmsSignature | None = None

    def run(self) -> ChainResult:
        self._place()
        present = self.present
        run_id = next((s.provenance.run_id for s in present if s and s.provenance), None)
        digests = {s.digest: s for s in self.parsed if s.digest is not None}
        for index, stage in enumerate(present):
            if stage is None or stage.provenance is None:
                continue
            before = self._predecessor(index, stage)
            earlier = [s for s in present[:index] if s is not None and s.provenance is not None]
            link = _Link(
                stage, stage.provenance, index, before, earlier, digests, run_id, self.layout
            )
            stage.runner.run(LINK_CHECKS, link)
        self.runner.run(CHAIN_CHECKS, self)
        oms_json: dict[str, object] | None = None
        if self.oms is not None:
            signature = self.signed.to_json() if self.signed is not None else None
            oms_json = {"bundle": str(self.oms.bundle), "signature": signature}
        stages = [s.result() for s in present if s is not None] + [s.result() for s in self.extras]
        return ChainResult(
            self.layout.pipeline, run_id, tuple(stages), self.runner.checks,
            self.layout.max_age_seconds, self.now, oms_json,
        )  # fmt: skip

    def _predecessor(self, index: int, stage: _Stage) -> _Stage | None:
        """The stage this one is checked as following.

        Listed order unless the rule has ``after``; then the allowed predecessor
        its link names, else the first one present (the link is then refused)."""
        rule = stage.rule
        if rule is None or rule.after is None:
            return self.present[index - 1] if index > 0 else None
        allowed = [s for s in (self.by_stage.get(n) for n in rule.after) if s is not None]
        linked = stage.provenance.previous if stage.provenance is not None else None
        for candidate in allowed:
            if candidate.digest is not None and candidate.digest == linked:
                return candidate
        return allowed[0] if allowed else None

    def _place(self) -> None:
        """Give each layout stage its attestation; set the unknown and repeated apart."""
        for stage in self.parsed:
            name = stage.name
            if name is None or stage.rule is None:
                self.extras.append(stage)
            elif name in self.by_stage:
                stage.runner.record(
                    "stage",
                    failed(
                        "stage_duplicate",
                        f"{stage.source} is a second attestation of stage {name!r} "
                        f"(the first is {self.by_stage[name].source})",
                    ),
                )
                self.extras.append(stage)
            else:
                self.by_stage[name] = stage
        self.present = [self.by_stage.get(rule.name) for rule in self.layout.stages]

    def stages(self) -> Outcome:
        missing = [rule.name for rule in self.layout.stages if rule.name not in self.by_stage]
        if missing:
            return failed("stage_missing", f"no attestation of stage(s) {', '.join(missing)}")
        return passed(f"all {len(self.layout.stages)} layout stages present")

    def artifacts(self) -> Outcome:
        seen = {
            a.name
            for s in self.present
            if s is not None and s.provenance is not None
            for a in (*s.provenance.inputs, *s.provenance.outputs)
        }
        absent = [r.name for r in self.layout.artifacts if r.required and r.name not in seen]
        if absent:
            return failed(
                "artifact_missing", f"required artifact(s) {', '.join(absent)} never appear"
            )
        return passed(f"{len(self.layout.artifacts)} artifact rules checked")

    def oms_signature(self) -> Outcome:
        assert self.oms is not None  # guaranteed by applies
        self.signed = verify_oms_bundle(self.oms)  # OmsSignatureError: a failed check
        return passed(f"{self.oms.bundle} verifies")

    def oms_digest(self) -> Outcome:
        assert self.oms is not None and self.signed is not None  # guaranteed by oms_signature
        last = self.present[-1] if self.present else None
        if last is None or last.provenance is None:
            return not_checked("skipped: the last stage is missing")
        return close_chain(self.signed, last.provenance.outputs, self.oms.artifact)


# -- the registry of the chain's checks --------------------------------------------------

_FORMAT = ("attestation_format",)
_CONFIGURED = (claim("configuration"),)
_SOURCED = (claim("sourced-data"),)

OWN_CHECKS: tuple[CheckDef[_Stage], ...] = (
    CheckDef(
        "attestation_format",
        _Stage.parse,
        reasons=("attestation_malformed",),
        claims=(identity(99),),
    ),
    CheckDef(
        "stage",
        _Stage.stage,
        _FORMAT,
        reasons=("stage_unknown", "stage_duplicate"),
        claims=_CONFIGURED,
    ),
    CheckDef(
        "pipeline",
        _Stage.pipeline,
        _FORMAT,
        reasons=("pipeline_mismatch",),
        claims=_CONFIGURED,
    ),
    CheckDef(
        "tee",
        _Stage.tee,
        ("stage",),
        reasons=("tee_not_accepted",),
        claims=(claim("hardware", 97),),
    ),
    # No claims of its own: the stage's appraisal speaks through its own vector, merged in.
    # Its reason is the appraisal's (any appraisal reason).
    CheckDef("evidence", _Stage.appraise_evidence, ("tee",)),
    CheckDef(
        "agent_key",
        _Stage.agent_key,
        _FORMAT,
        reasons=("agent_key_not_allowed",),
        claims=(identity(96),),
    ),
    CheckDef(
        "provenance_signature",
        _Stage.provenance_signature,
        _FORMAT,
        reasons=("provenance_key_mismatch", "provenance_signature_invalid", AGENT_KEY_MISMATCH),
        claims=(identity(99),),
    ),
    CheckDef(
        "builder",
        _Stage.builder,
        _FORMAT,
        reasons=("builder_mismatch",),
        claims=_CONFIGURED,
    ),
    CheckDef(
        "outputs",
        _Stage.outputs,
        _FORMAT,
        reasons=("outputs_mismatch",),
        claims=(claim("file-system"),),
    ),
    CheckDef(
        "log_segment",
        _Stage.log_segment,
        _FORMAT,
        reasons=("log_segment_mismatch",),
        claims=(claim("executables", 99),),
    ),
    CheckDef(
        "software",
        _Stage.software,
        ("stage",),
        reasons=SOFTWARE_REASONS,
        claims=(claim("executables"),),
    ),
    # After evidence and provenance_signature: the level follows from how they ended.
    CheckDef(
        "slsa_level",
        _Stage.slsa,
        ("stage",),
        reasons=("slsa_level_insufficient",),
        claims=_CONFIGURED,
    ),
)
"""The checks of one stage attestation on its own, in order."""

LINK_CHECKS: tuple[CheckDef[_Link], ...] = (
    CheckDef("run", _same_run, reasons=("run_mismatch",), claims=_SOURCED),
    CheckDef(
        "previous",
        _previous,
        reasons=("stage_out_of_order", "previous_link_broken"),
        claims=_SOURCED,
    ),
    CheckDef(
        "inputs", _inputs, reasons=("artifact_substituted", "inputs_mismatch"), claims=_SOURCED
    ),
    CheckDef(
        "licenses",
        _licenses,
        reasons=("license_not_allowed", "license_missing", "license_invalid"),
        claims=_SOURCED,
    ),
    CheckDef("tags", _tags, reasons=("tag_missing",), claims=_SOURCED),
)
"""The checks of a stage's place in the chain (a stage present in the layout), in order."""

STAGE_CHECKS = OWN_CHECKS + LINK_CHECKS
STAGE_CHECK_NAMES = names(STAGE_CHECKS)
"""The checks of one stage attestation, in the order they are reported."""

CHAIN_CHECKS: tuple[CheckDef[_Chain], ...] = (
    CheckDef("stages", _Chain.stages, reasons=("stage_missing",), claims=_SOURCED),
    CheckDef(
        "artifacts",
        _Chain.artifacts,
        reasons=("artifact_missing",),
        claims=_SOURCED,
        applies=lambda chain: bool(chain.layout.artifacts),
    ),
    CheckDef(
        "oms_signature",
        _Chain.oms_signature,
        reasons=("oms_signature_invalid",),
        claims=(claim("file-system", 99),),
        applies=lambda chain: chain.oms is not None,
    ),
    CheckDef(
        "oms_digest",
        _Chain.oms_digest,
        ("oms_signature",),
        reasons=("oms_digest_mismatch",),
        claims=(claim("file-system"),),
        applies=lambda chain: chain.oms is not None,
    ),
)
"""The checks of the chain as a whole (the OMS ones only with an OMS closing)."""

CHAIN_CHECK_NAMES = names(CHAIN_CHECKS)
