"""Appraise one piece of evidence against a policy.

    from attestd.verifier import appraise, load_policy

    policy = load_policy(Path("policy.toml"))
    result = appraise(evidence_bytes, nonce=nonce_sent, policy=policy)
    if result.status is not AppraisalStatus.AFFIRMING:
        print(result.reasons)

Evidence asked for from a log checkpoint (``GetEvidence`` with a checkpoint)
is appraised with that checkpoint; its log replays from it::

    result = appraise(evidence_bytes, nonce=nonce_sent, policy=policy, checkpoint=sent)

The checks run in the order of the chain of trust, top to bottom, each a named
:class:`Check`: the envelope is read, the agent key is the one the binding
names, the key signed the statement, the quote chains to the policy's root,
the quote carries the binding, and the binding carries the nonce, the subjects
and the runtime log. Then come the TEE's checks and the policy's reference
values. A check whose inputs did not pass is skipped, never guessed.

Each check is declared once, at the end of this module (``APPRAISAL_CHECKS``,
``REFERENCE_CHECKS``) or of ``_tdx.py`` / ``_snp.py``: its name, the checks
it needs, its step, its reasons and its AR4SI claims. ``Runner``
(``verifier/checks.py``) runs them; the binding links themselves are
``attestd.evidence``'s (``agent_key_link``, ``subjects_link``, ``log_head_link``).

Cryptographic verification of the quote lives in ``attestd.tee.tdx.verify``;
what lives here is the comparison of verified values with expected ones.
Bad evidence never raises: it is a failed check carrying the error's reason.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

from securesystemslib.dsse import Envelope

from attestd.errors import AttestdError
from attestd.evidence import (
    LOG_START,
    LogCheckpoint,
    Statement,
    agent_key_link,
    batch_link,
    checkpoint_after,
    load_public_key_pem,
    log_head_link,
    open_evidence,
    replays_through_head,
    report_data_for_root,
    subjects_link,
    verify_envelope,
)
from attestd.evidence.binding import AGENT_KEY_MISMATCH, LOG_HEAD_MISMATCH, SUBJECTS_MISMATCH
from attestd.evidence.subjects import AGENT_SUBJECT_MISMATCH, agent_subject_link, artifact_subjects
from attestd.tee.backend import TeeType
from attestd.verifier._snp import SNP_CHECK_NAMES, SNP_CHECKS, SNP_REPORT_REASONS, SnpAppraiser
from attestd.verifier._tdx import TDX_CHECK_NAMES, TDX_CHECKS, TDX_QUOTE_REASONS, TdxAppraiser
from attestd.verifier.checks import (
    REFERENCE_VALUE_ABSENT,
    CheckDef,
    Claim,
    Outcome,
    Runner,
    claim,
    failed,
    identity,
    names,
    passed,
    warned,
)
from attestd.verifier.policy import Policy, TrustRoot
from attestd.verifier.result import AppraisalResult, EvidenceSummary, RootOfTrust

__all__ = [
    "APPRAISAL_CHECKS",
    "CHECK_NAMES",
    "COMMON_CHECKS",
    "REFERENCE_CHECKS",
    "SNP_CHECK_NAMES",
    "TDX_CHECK_NAMES",
    "appraise",
    "appraise_to_checkpoint",
]


def appraise(
    evidence: bytes,
    *,
    nonce: bytes,
    policy: Policy,
    now: datetime | None = None,
    checkpoint: LogCheckpoint | None = None,
) -> AppraisalResult:
    """Appraise ``evidence`` (a DSSE envelope) sent in answer to ``nonce``, under ``policy``.

    ``now`` is the verifier's clock (aware datetime), injectable for tests;
    it defaults to the current UTC time. A naive ``now`` is a programming
    error (ValueError), not bad evidence. ``checkpoint`` is the log checkpoint
    the verifier sent with its request, if any: the evidence's ``logStart``
    must be exactly it (``log_start_mismatch``), and the log replays from it.
    """
    if now is not None and now.utcoffset() is None:
        raise ValueError("appraise: now must be a timezone-aware datetime")
    start = checkpoint if checkpoint is not None else LOG_START
    return _Appraisal(policy, nonce, now or datetime.now(UTC), start).run(evidence)


def appraise_to_checkpoint(
    evidence: bytes,
    *,
    nonce: bytes,
    policy: Policy,
    checkpoint: LogCheckpoint | None = None,
) -> tuple[AppraisalResult, LogCheckpoint | None]:
    """:func:`appraise`, and the checkpoint the evidence's log reaches, from its one parse.

        result, reached = appraise_to_checkpoint(evidence, nonce=n, policy=p, checkpoint=c)

    ``reached`` (None if the statement could not be read) is a claim like the
    result's evidence summary: the next checkpoint only when the result is not
    contraindicated (the log then replayed to the quoted register or bound head).
    """
    appraisal = _Appraisal(policy, nonce, datetime.now(UTC), checkpoint or LOG_START)
    result = appraisal.run(evidence)
    if appraisal.statement is None:
        return result, None
    predicate = appraisal.statement.predicate
    return result, checkpoint_after(predicate.log_start, predicate.runtime_log)


class _Appraisal:
    """The state of one appraisal: what has been parsed and verified so far."""

    def __init__(
        self, policy: Policy, nonce: bytes, now: datetime, checkpoint: LogCheckpoint
    ) -> None:
        self.policy = policy
        self.nonce = nonce
        self.now = now
        self.checkpoint = checkpoint
        self.runner = Runner()
        self.evidence: bytes = b""
        self.envelope: Envelope | None = None
        self.statement: Statement | None = None
        self.tdx: TdxAppraiser | None = None
        self.snp: SnpAppraiser | None = None

    def run(self, evidence: bytes) -> AppraisalResult:
        self.evidence = evidence
        self.runner.run(APPRAISAL_CHECKS, self)
        # The TEE's checks are reported once the quote's TEE is known (quote_signature ran).
        if self.tdx is not None:
            self.runner.run(TDX_CHECKS, self.tdx)
        if self.snp is not None:
            self.runner.run(SNP_CHECKS, self.snp)
        self.runner.run(REFERENCE_CHECKS, self)
        return self._result()

    @property
    def tee(self) -> TdxAppraiser | SnpAppraiser:
        tee = self.tdx or self.snp
        assert tee is not None  # guaranteed by the quote_signature dependency
        return tee

    # -- the envelope and the agent key ---------------------------------------

    def evidence_format(self) -> Outcome:
        self.envelope, self.statement = open_evidence(self.evidence)
        subjects = len(self.statement.subjects)
        events = len(self.statement.predicate.runtime_log)
        return passed(f"DSSE envelope with a statement of {subjects} subjects, {events} events")

    def agent_key(self) -> Outcome:
        predicate = self._statement().predicate
        broken = agent_key_link(predicate.binding, predicate.agent_key_pem)
        if broken is not None:
            return failed(broken.reason, broken.detail)
        return passed(f"agent key {predicate.binding.agent_key_id} is the one the binding names")

    def envelope_signature(self) -> Outcome:
        key = load_public_key_pem(self._statement().predicate.agent_key_pem)
        try:
            assert self.envelope is not None  # guaranteed by the evidence_format dependency
            verify_envelope(self.envelope, key)
        except AttestdError as err:
            return failed("envelope_signature_invalid", err.message)
        return passed("the DSSE signature verifies under the agent key")

    # -- the quote and what it carries ----------------------------------------

    def quote_signature(self) -> Outcome:
        statement = self._statement()
        tee = statement.predicate.tee
        trust = self.policy.trust
        if str(tee.tee) != trust.tee:
            return failed(
                "tee_not_allowed",
                f"the evidence comes from {tee.tee}; the policy's root ({trust.root}) "
                f"vouches for {trust.tee}",
            )
        trusts_simulated = trust.root is TrustRoot.SIMULATED
        if tee.simulated != trusts_simulated:
            claimed = "simulated" if tee.simulated else "hardware"
            return failed(
                "root_of_trust_mismatch",
                f"the evidence claims a {claimed} TEE ({tee.root_of_trust}) but the policy "
                f'trusts root = "{trust.root}"',
            )
        if TeeType(tee.tee) is TeeType.TDX:
            self.tdx = TdxAppraiser(statement, self.policy, self.now)
            return self.tdx.verify()
        self.snp = SnpAppraiser(statement, self.policy, self.now)
        return self.snp.verify()

    def report_data(self) -> Outcome:
        root = self._statement().predicate.membership.root
        if not hmac.compare_digest(self.tee.report_data(), report_data_for_root(root)):
            return failed(
                "report_data_mismatch",
                "the quote's REPORTDATA does not bind this evidence's batch root "
                "(a batch tree or binding from another quote?)",
            )
        return passed("the quote's REPORTDATA binds the batch root")

    def batch_proof(self) -> Outcome:
        predicate = self._statement().predicate
        broken = batch_link(predicate.binding, predicate.membership)
        if broken is not None:
            return failed(broken.reason, broken.detail)
        proof = predicate.membership.proof
        return passed(
            f"the binding is leaf {proof.leaf_index} of a batch of {proof.tree_size} "
            "under the batch root"
        )

    def nonce_check(self) -> Outcome:
        if not hmac.compare_digest(self._statement().predicate.binding.nonce, self.nonce):
            return failed("nonce_mismatch", "the binding's nonce is not the nonce sent")
        return passed("the binding carries the nonce sent")

    def subjects(self) -> Outcome:
        statement = self._statement()
        binding = statement.predicate.binding
        broken = subjects_link(binding, statement.subjects) or agent_subject_link(
            statement.subjects, binding.agent_key_id
        )
        if broken is not None:
            return failed(broken.reason, broken.detail)
        return passed(f"{len(statement.subjects)} subjects match the binding's digest")

    def runtime_log(self) -> Outcome:
        predicate = self._statement().predicate
        events = predicate.runtime_log
        start = predicate.log_start
        if start != self.checkpoint:
            # Only the checkpoint this verifier holds ties the events before it to what it
            # verified earlier; any other start would let the agent skip events unseen.
            return failed(
                LOG_START_MISMATCH,
                f"the evidence's log starts at {_describe(start)}, but the verifier asked "
                f"from {_describe(self.checkpoint)}",
            )
        register = self.tee.runtime_register()
        if register is None:
            broken = log_head_link(predicate.binding, events, start)
            if broken is not None:
                return failed(broken.reason, broken.detail)
            return passed(
                f"{len(events)} events replay to the binding's head, which REPORTDATA binds "
                "(this TEE has no runtime register)"
            )
        # The head was snapshotted when the batch was cut; events recorded while the quote
        # was in flight follow it, and the whole log replays to the register quoted.
        broken = replays_through_head(predicate.binding, events, start, register=register)
        if broken is not None:
            return failed(broken.reason, broken.detail)
        name = register[0]
        origin = "" if start.is_start else f" from the checkpoint at event {start.length}"
        return passed(f"{len(events)} events replay{origin} through the binding's head to {name}")

    def freshness(self) -> Outcome:
        issued_at = self._statement().predicate.binding.issued_at
        age = (self.now - issued_at).total_seconds()
        bounds = self.policy.freshness
        if bounds.max_age_seconds is not None and age > bounds.max_age_seconds:
            return failed(
                "evidence_expired",
                f"issued {age:.0f} s ago, more than max_age_seconds = {bounds.max_age_seconds}",
            )
        if -age > bounds.max_clock_skew_seconds:
            return failed(
                "evidence_from_future",
                f"issued {-age:.0f} s in the future, more than "
                f"max_clock_skew_seconds = {bounds.max_clock_skew_seconds}",
            )
        if age < 0:
            return passed(f"issued {-age:.0f} s ahead of the verifier's clock, within the skew")
        if bounds.max_age_seconds is None:
            return passed(f"issued {age:.0f} s ago; no age bound is set")
        return passed(f"issued {age:.0f} s ago, within {bounds.max_age_seconds} s")

    # -- reference values ------------------------------------------------------

    def artifacts(self) -> Outcome:
        if not self.policy.artifacts:
            return warned(REFERENCE_VALUE_ABSENT, "the policy names no artifacts")
        subjects = artifact_subjects(self._statement().subjects)  # the agent is no artifact
        problems: list[tuple[str, str]] = []
        for artifact in self.policy.artifacts:
            label = artifact.name or f"sha256:{artifact.sha256}"
            if artifact.name is not None:
                named = [s for s in subjects if s.name == artifact.name]
                if named and named[0].digest.get("sha256") != artifact.sha256:
                    digest = named[0].digest.get("sha256")
                    problems.append(
                        (
                            "artifact_digest_mismatch",
                            f"{label} has sha256 {digest}, not {artifact.sha256}",
                        )
                    )
                    continue
                present = bool(named)
            else:
                present = any(s.digest.get("sha256") == artifact.sha256 for s in subjects)
            if not present and artifact.required:
                problems.append(("artifact_missing", f"required artifact {label} is not a subject"))
        if problems:
            return failed(problems[0][0], "; ".join(detail for _, detail in problems))
        return passed(f"{len(self.policy.artifacts)} policy artifacts checked")

    # -- the result ------------------------------------------------------------

    def _statement(self) -> Statement:
        assert self.statement is not None  # guaranteed by the evidence_format dependency
        return self.statement

    def _result(self) -> AppraisalResult:
        trusted = str(self.policy.trust.root)
        root = RootOfTrust(policy=trusted)
        summary = EvidenceSummary()
        tee: TeeType | None = None
        claims_simulated = False
        if self.statement is not None:
            predicate = self.statement.predicate
            tee = TeeType(predicate.tee.tee)
            claims_simulated = predicate.tee.simulated
            root = RootOfTrust(trusted, predicate.tee.root_of_trust, predicate.tee.simulated)
            summary = EvidenceSummary(
                subjects={s.name: dict(s.digest) for s in self.statement.subjects},
                # The log's length, not the events carried: evidence from a checkpoint
                # carries only the events after it.
                log_length=predicate.log_start.length + len(predicate.runtime_log),
                agent_key_id=predicate.binding.agent_key_id,
                agent_version=predicate.agent_version,
                issued_at=predicate.binding.issued_at,
            )
        return AppraisalResult(
            checks=self.runner.checks,
            tee=tee,
            simulated=claims_simulated or self.policy.trust.root is TrustRoot.SIMULATED,
            root_of_trust=root,
            evidence=summary,
            appraised_at=self.now,
        )


def _describe(start: LogCheckpoint) -> str:
    if start.is_start:
        return "the beginning"
    return f"event {start.length} (head {start.head.hex()})"


LOG_START_MISMATCH = "log_start_mismatch"
"""The evidence's ``logStart`` is not the checkpoint the verifier sent (or it sent none)."""

# -- the registry of the common checks ---------------------------------------------------------

_FORMAT = ("evidence_format",)
_QUOTE = ("evidence_format", "quote_signature")
_UNRECOGNIZED_ROOT = {"tee_not_allowed": 97, "root_of_trust_mismatch": 97, "untrusted_root": 97}

APPRAISAL_CHECKS: tuple[CheckDef[_Appraisal], ...] = (
    CheckDef(
        "evidence_format",
        _Appraisal.evidence_format,
        reasons=("evidence_malformed", "nonce_invalid"),
        claims=(identity(99),),
    ),
    CheckDef(
        "agent_key",
        _Appraisal.agent_key,
        _FORMAT,
        reasons=(AGENT_KEY_MISMATCH, "evidence_malformed"),
        claims=(identity(96),),
    ),
    CheckDef(
        "envelope_signature",
        _Appraisal.envelope_signature,
        ("agent_key",),
        reasons=("envelope_signature_invalid",),
        claims=(identity(99),),
    ),
    CheckDef(
        "quote_signature",
        _Appraisal.quote_signature,
        _FORMAT,
        reasons=(
            "tee_not_allowed",
            "root_of_trust_mismatch",
            "quote_malformed",
            *dict.fromkeys(TDX_QUOTE_REASONS + SNP_REPORT_REASONS),
        ),
        claims=(
            Claim("hardware", fail=99, by_reason=_UNRECOGNIZED_ROOT),
            # A verified TDX or SEV-SNP quote is a guest whose memory the host cannot read.
            Claim("runtime-opaque", fail=None, warn=None),
        ),
    ),
    CheckDef(
        "report_data",
        _Appraisal.report_data,
        _QUOTE,
        reasons=("report_data_mismatch",),
        claims=(identity(99),),
    ),
    CheckDef(
        "batch_proof",
        _Appraisal.batch_proof,
        _FORMAT,
        reasons=(
            "batch_leaf_index_invalid",
            "batch_tree_size_invalid",
            "batch_root_mismatch",
        ),
        claims=(identity(99),),
    ),
    CheckDef(
        "nonce",
        _Appraisal.nonce_check,
        _FORMAT,
        reasons=("nonce_mismatch",),
        claims=(identity(99),),
    ),
    CheckDef(
        "subjects",
        _Appraisal.subjects,
        _FORMAT,
        reasons=(SUBJECTS_MISMATCH, AGENT_SUBJECT_MISMATCH),
        claims=(claim("file-system", 99),),
    ),
    CheckDef(
        "runtime_log",
        _Appraisal.runtime_log,
        _QUOTE,
        reasons=(LOG_HEAD_MISMATCH, LOG_START_MISMATCH),
        claims=(claim("executables", 99),),
    ),
    CheckDef(
        "freshness",
        _Appraisal.freshness,
        _FORMAT,
        reasons=("evidence_expired", "evidence_from_future"),
        claims=(identity(96),),
    ),
)
"""The checks every appraisal runs first, whatever the TEE, in order."""

REFERENCE_CHECKS: tuple[CheckDef[_Appraisal], ...] = (
    CheckDef(
        "artifacts",
        _Appraisal.artifacts,
        _FORMAT,
        reasons=("artifact_digest_mismatch", "artifact_missing", REFERENCE_VALUE_ABSENT),
        claims=(claim("file-system"),),
    ),
)
"""The checks every appraisal runs last, after the TEE's."""

COMMON_CHECKS = APPRAISAL_CHECKS + REFERENCE_CHECKS

CHECK_NAMES = names(COMMON_CHECKS)
"""The checks every appraisal reports, whatever the TEE, in the order they run;
the TEE's own checks (``TDX_CHECK_NAMES`` or ``SNP_CHECK_NAMES``) run between
``freshness`` and ``artifacts``."""
