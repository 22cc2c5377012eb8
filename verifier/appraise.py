"""Appraise one piece of evidence against a policy.

    from attestd.verifier import appraise, load_policy

    policy = load_policy(Path("policy.toml"))
    result = appraise(evidence_bytes, nonce=nonce_sent, policy=policy)
    if result.status is not AppraisalStatus.AFFIRMING:
        print(result.reasons)

The checks run in the order of the chain of trust, top to bottom, each a named
:class:`Check`: the envelope is read, the agent key is the one the binding
names, the key signed the statement, the quote chains to the policy's root,
the quote carries the binding, and the binding carries the nonce, the subjects
and the runtime log. Then come the policy's reference values. A check whose
inputs did not pass is skipped, never guessed.

Cryptographic verification of the quote lives in ``attestd.tee.tdx.verify``;
what lives here is the comparison of verified values with expected ones.
Bad evidence never raises: it is a failed check carrying the error's reason.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric import ec
from securesystemslib.dsse import Envelope

from attestd.errors import AttestdError
from attestd.evidence import (
    Statement,
    key_id,
    load_public_key_pem,
    open_evidence,
    replay,
    report_data_for,
    subjects_digest,
    verify_envelope,
)
from attestd.tee.backend import TeeType
from attestd.verifier._outcome import Outcome, failed, passed, run_step, warned
from attestd.verifier._snp import SNP_CHECK_NAMES, SnpAppraiser
from attestd.verifier._tdx import TDX_CHECK_NAMES, TdxAppraiser
from attestd.verifier.policy import Policy, TrustRoot
from attestd.verifier.result import (
    AppraisalResult,
    Check,
    CheckStatus,
    EvidenceSummary,
    RootOfTrust,
)

CHECK_NAMES = (
    "evidence_format",
    "agent_key",
    "envelope_signature",
    "quote_signature",
    "report_data",
    "nonce",
    "subjects",
    "runtime_log",
    "freshness",
    "artifacts",
)
"""The checks every appraisal reports, whatever the TEE, in the order they run;
the TEE's own checks (``TDX_CHECK_NAMES`` or ``SNP_CHECK_NAMES``) run between
``freshness`` and ``artifacts``."""

__all__ = ["CHECK_NAMES", "SNP_CHECK_NAMES", "TDX_CHECK_NAMES", "appraise"]


def appraise(
    evidence: bytes, *, nonce: bytes, policy: Policy, now: datetime | None = None
) -> AppraisalResult:
    """Appraise ``evidence`` (a DSSE envelope) sent in answer to ``nonce``, under ``policy``.

    ``now`` is the verifier's clock (aware datetime), injectable for tests;
    it defaults to the current UTC time. A naive ``now`` is a programming
    error (ValueError), not bad evidence.
    """
    if now is not None and now.utcoffset() is None:
        raise ValueError("appraise: now must be a timezone-aware datetime")
    return _Appraisal(policy, nonce, now or datetime.now(UTC)).run(evidence)


class _Appraisal:
    """The state of one appraisal: what has been parsed and verified so far."""

    def __init__(self, policy: Policy, nonce: bytes, now: datetime) -> None:
        self.policy = policy
        self.nonce = nonce
        self.now = now
        self.checks: list[Check] = []
        self.evidence: bytes = b""
        self.envelope: Envelope | None = None
        self.statement: Statement | None = None
        self.agent_key: ec.EllipticCurvePublicKey | None = None
        self.tee: TdxAppraiser | SnpAppraiser | None = None

    def run(self, evidence: bytes) -> AppraisalResult:
        self.evidence = evidence
        after_format = ("evidence_format",)
        after_quote = ("evidence_format", "quote_signature")
        self._check("evidence_format", (), self._evidence_format)
        self._check("agent_key", after_format, self._agent_key)
        self._check("envelope_signature", ("agent_key",), self._envelope_signature)
        self._check("quote_signature", after_format, self._quote_signature)
        self._check("report_data", after_quote, self._report_data)
        self._check("nonce", after_format, self._nonce)
        self._check("subjects", after_format, self._subjects)
        self._check("runtime_log", after_quote, self._runtime_log)
        self._check("freshness", after_format, self._freshness)
        if self.tee is not None:
            for name, step in self.tee.reference_checks():
                self._check(name, after_quote, step)
        self._check("artifacts", after_format, self._artifacts)
        return self._result()

    def _check(self, name: str, needs: tuple[str, ...], step: Callable[[], Outcome]) -> None:
        done = {check.name: check.status for check in self.checks}
        blocked = [need for need in needs if done.get(need) is not CheckStatus.PASS]
        if blocked:
            self.checks.append(
                Check(name, CheckStatus.SKIP, None, f"skipped: {', '.join(blocked)} did not pass")
            )
            return
        outcome = run_step(step)
        self.checks.append(Check(name, outcome.status, outcome.reason, outcome.detail))

    # -- the envelope and the agent key ---------------------------------------

    def _evidence_format(self) -> Outcome:
        self.envelope, self.statement = open_evidence(self.evidence)
        subjects = len(self.statement.subjects)
        events = len(self.statement.predicate.runtime_log)
        return passed(f"DSSE envelope with a statement of {subjects} subjects, {events} events")

    def _agent_key(self) -> Outcome:
        predicate = self._statement().predicate
        key = load_public_key_pem(predicate.agent_key_pem)
        actual = key_id(key)
        named = predicate.binding.agent_key_id
        if not hmac.compare_digest(actual.encode(), named.encode()):
            return failed(
                "agent_key_mismatch",
                f"the statement's agent key is {actual}, the binding names {named}",
            )
        self.agent_key = key
        return passed(f"agent key {actual} is the one the binding names")

    def _envelope_signature(self) -> Outcome:
        assert self.agent_key is not None
        try:
            assert self.envelope is not None  # guaranteed by the evidence_format dependency
            verify_envelope(self.envelope, self.agent_key)
        except AttestdError as err:
            return failed("envelope_signature_invalid", err.message)
        return passed("the DSSE signature verifies under the agent key")

    # -- the quote and what it carries ----------------------------------------

    def _quote_signature(self) -> Outcome:
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
        appraiser = (
            TdxAppraiser(statement, self.policy, self.now)
            if tee.tee is TeeType.TDX
            else SnpAppraiser(statement, self.policy, self.now)
        )
        self.tee = appraiser
        return appraiser.verify()

    def _report_data(self) -> Outcome:
        assert self.tee is not None  # guaranteed by the quote_signature dependency
        expected = report_data_for(self._statement().predicate.binding)
        if not hmac.compare_digest(self.tee.report_data(), expected):
            return failed(
                "report_data_mismatch",
                "the quote's REPORTDATA is not SHA-512 of this evidence's binding "
                "(a quote from other evidence?)",
            )
        return passed("the quote's REPORTDATA is SHA-512 of the binding")

    def _nonce(self) -> Outcome:
        if not hmac.compare_digest(self._statement().predicate.binding.nonce, self.nonce):
            return failed("nonce_mismatch", "the binding's nonce is not the nonce sent")
        return passed("the binding carries the nonce sent")

    def _subjects(self) -> Outcome:
        statement = self._statement()
        actual = subjects_digest(statement.subjects)
        bound = statement.predicate.binding.subjects_digest
        if not hmac.compare_digest(actual.encode(), bound.encode()):
            return failed(
                "subjects_digest_mismatch",
                f"the subjects hash to {actual}, the binding says {bound}",
            )
        return passed(f"{len(statement.subjects)} subjects match the binding's digest")

    def _runtime_log(self) -> Outcome:
        assert self.tee is not None  # guaranteed by the quote_signature dependency
        predicate = self._statement().predicate
        events = predicate.runtime_log
        try:
            head = replay(events)
        except AttestdError as err:
            return failed("runtime_log_mismatch", err.message)
        if not hmac.compare_digest(head, predicate.binding.log_head):
            return failed(
                "runtime_log_mismatch",
                f"{len(events)} events replay to {head.hex()}, "
                f"the binding's head is {predicate.binding.log_head.hex()}",
            )
        register = self.tee.runtime_register()
        if register is None:
            return passed(
                f"{len(events)} events replay to the binding's head, which REPORTDATA binds "
                "(this TEE has no runtime register)"
            )
        name, value = register
        if not hmac.compare_digest(head, value):
            return failed(
                "runtime_log_mismatch",
                f"{len(events)} events replay to {head.hex()}, the quote's {name} is {value.hex()}",
            )
        return passed(f"{len(events)} events replay to the binding's head and to {name}")

    def _freshness(self) -> Outcome:
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

    def _artifacts(self) -> Outcome:
        if not self.policy.artifacts:
            return warned("reference_value_absent", "the policy names no artifacts")
        subjects = self._statement().subjects
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
            tee = predicate.tee.tee
            claims_simulated = predicate.tee.simulated
            root = RootOfTrust(trusted, predicate.tee.root_of_trust, predicate.tee.simulated)
            summary = EvidenceSummary(
                subjects={s.name: dict(s.digest) for s in self.statement.subjects},
                log_length=len(predicate.runtime_log),
                agent_key_id=predicate.binding.agent_key_id,
                agent_version=predicate.agent_version,
                issued_at=predicate.binding.issued_at,
            )
        return AppraisalResult(
            checks=tuple(self.checks),
            tee=tee,
            simulated=claims_simulated or self.policy.trust.root is TrustRoot.SIMULATED,
            root_of_trust=root,
            evidence=summary,
            appraised_at=self.now,
        )
