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

import functools
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
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
from attestd.tee.tdx.abi import Quote, parse_quote
from attestd.tee.tdx.verify import VerifyOptions, intel_sgx_root_ca, verify_quote
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
    "mrtd",
    "rtmr0",
    "rtmr1",
    "rtmr2",
    "debug",
    "artifacts",
)
"""Every check :func:`appraise` reports, in the order it runs them."""


@dataclass(frozen=True)
class _Outcome:
    status: CheckStatus
    reason: str | None
    detail: str


def _passed(detail: str) -> _Outcome:
    return _Outcome(CheckStatus.PASS, None, detail)


def _failed(reason: str, detail: str) -> _Outcome:
    return _Outcome(CheckStatus.FAIL, reason, detail)


def _warned(reason: str, detail: str) -> _Outcome:
    return _Outcome(CheckStatus.WARN, reason, detail)


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
        self.quote: Quote | None = None

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
        for register in ("mrtd", "rtmr0", "rtmr1", "rtmr2"):
            self._check(register, after_quote, functools.partial(self._measurement, register))
        self._check("debug", after_quote, self._debug)
        self._check("artifacts", after_format, self._artifacts)
        return self._result()

    def _check(self, name: str, needs: tuple[str, ...], step: Callable[[], _Outcome]) -> None:
        done = {check.name: check.status for check in self.checks}
        blocked = [need for need in needs if done.get(need) is not CheckStatus.PASS]
        if blocked:
            self.checks.append(
                Check(name, CheckStatus.SKIP, None, f"skipped: {', '.join(blocked)} did not pass")
            )
            return
        try:
            outcome = step()
        except AttestdError as err:
            outcome = _failed(err.reason, err.message)
        except Exception as err:  # fail closed: a bug must not turn into a pass
            outcome = _failed("internal_error", f"{type(err).__name__}: {err}")
        self.checks.append(Check(name, outcome.status, outcome.reason, outcome.detail))

    # -- the envelope and the agent key ---------------------------------------

    def _evidence_format(self) -> _Outcome:
        self.envelope, self.statement = open_evidence(self.evidence)
        subjects = len(self.statement.subjects)
        events = len(self.statement.predicate.runtime_log)
        return _passed(f"DSSE envelope with a statement of {subjects} subjects, {events} events")

    def _agent_key(self) -> _Outcome:
        predicate = self._statement().predicate
        key = load_public_key_pem(predicate.agent_key_pem)
        actual = key_id(key)
        named = predicate.binding.agent_key_id
        if not hmac.compare_digest(actual.encode(), named.encode()):
            return _failed(
                "agent_key_mismatch",
                f"the statement's agent key is {actual}, the binding names {named}",
            )
        self.agent_key = key
        return _passed(f"agent key {actual} is the one the binding names")

    def _envelope_signature(self) -> _Outcome:
        assert self.agent_key is not None
        try:
            assert self.envelope is not None  # guaranteed by the evidence_format dependency
            verify_envelope(self.envelope, self.agent_key)
        except AttestdError as err:
            return _failed("envelope_signature_invalid", err.message)
        return _passed("the DSSE signature verifies under the agent key")

    # -- the quote and what it carries ----------------------------------------

    def _quote_signature(self) -> _Outcome:
        tee = self._statement().predicate.tee
        if tee.tee is not TeeType.TDX:
            return _failed("tee_unsupported", f"this verifier appraises TDX quotes, not {tee.tee}")
        trusts_simulated = self.policy.trust.root is TrustRoot.SIMULATED
        if tee.simulated != trusts_simulated:
            claimed = "simulated" if tee.simulated else "hardware"
            return _failed(
                "root_of_trust_mismatch",
                f"the evidence claims a {claimed} TEE ({tee.root_of_trust}) but the policy "
                f'trusts root = "{self.policy.trust.root}"',
            )
        quote = parse_quote(self._statement().predicate.quote)
        options = VerifyOptions(trusted_roots=[self._trusted_root()], now=self.now)
        self.quote = verify_quote(quote, options)
        return _passed(f"TDX quote verifies to the {self.policy.trust.root} root of trust")

    def _trusted_root(self) -> x509.Certificate:
        trust = self.policy.trust
        if trust.root is TrustRoot.SIMULATED:
            assert trust.simulated_root is not None  # load_policy guarantees it
            return trust.simulated_root
        return intel_sgx_root_ca()

    def _report_data(self) -> _Outcome:
        expected = report_data_for(self._statement().predicate.binding)
        actual = bytes(self._quote().body.report_data)
        if not hmac.compare_digest(actual, expected):
            return _failed(
                "report_data_mismatch",
                "the quote's REPORTDATA is not SHA-512 of this evidence's binding "
                "(a quote from other evidence?)",
            )
        return _passed("the quote's REPORTDATA is SHA-512 of the binding")

    def _nonce(self) -> _Outcome:
        if not hmac.compare_digest(self._statement().predicate.binding.nonce, self.nonce):
            return _failed("nonce_mismatch", "the binding's nonce is not the nonce sent")
        return _passed("the binding carries the nonce sent")

    def _subjects(self) -> _Outcome:
        statement = self._statement()
        actual = subjects_digest(statement.subjects)
        bound = statement.predicate.binding.subjects_digest
        if not hmac.compare_digest(actual.encode(), bound.encode()):
            return _failed(
                "subjects_digest_mismatch",
                f"the subjects hash to {actual}, the binding says {bound}",
            )
        return _passed(f"{len(statement.subjects)} subjects match the binding's digest")

    def _runtime_log(self) -> _Outcome:
        predicate = self._statement().predicate
        events = predicate.runtime_log
        try:
            head = replay(events)
        except AttestdError as err:
            return _failed("runtime_log_mismatch", err.message)
        if not hmac.compare_digest(head, predicate.binding.log_head):
            return _failed(
                "runtime_log_mismatch",
                f"{len(events)} events replay to {head.hex()}, "
                f"the binding's head is {predicate.binding.log_head.hex()}",
            )
        rtmr3 = bytes(self._quote().body.rtmrs[3])
        if not hmac.compare_digest(head, rtmr3):
            return _failed(
                "runtime_log_mismatch",
                f"{len(events)} events replay to {head.hex()}, the quote's RTMR3 is {rtmr3.hex()}",
            )
        return _passed(f"{len(events)} events replay to the binding's head and to RTMR3")

    def _freshness(self) -> _Outcome:
        issued_at = self._statement().predicate.binding.issued_at
        age = (self.now - issued_at).total_seconds()
        bounds = self.policy.freshness
        if age > bounds.max_age_seconds:
            return _failed(
                "evidence_expired",
                f"issued {age:.0f} s ago, more than max_age_seconds = {bounds.max_age_seconds}",
            )
        if -age > bounds.max_clock_skew_seconds:
            return _failed(
                "evidence_from_future",
                f"issued {-age:.0f} s in the future, more than "
                f"max_clock_skew_seconds = {bounds.max_clock_skew_seconds}",
            )
        if age < 0:
            return _passed(f"issued {-age:.0f} s ahead of the verifier's clock, within the skew")
        return _passed(f"issued {age:.0f} s ago, within {bounds.max_age_seconds} s")

    # -- reference values ------------------------------------------------------

    def _measurement(self, register: str) -> _Outcome:
        body = self._quote().body
        value = bytes(body.mr_td if register == "mrtd" else body.rtmrs[int(register[-1])]).hex()
        allowed = self.policy.tdx.allowed(register)
        label = register.upper()
        if allowed is None:
            return _warned(
                "reference_value_absent",
                f"the policy sets no tdx.{register}; {label} {value} was not checked",
            )
        if value not in allowed:
            reason = "mrtd_not_allowed" if register == "mrtd" else "rtmr_not_allowed"
            return _failed(reason, f"{label} {value} is not among the policy's tdx.{register}")
        return _passed(f"{label} {value} is allowed by the policy")

    def _debug(self) -> _Outcome:
        if not self._quote().body.debug:
            return _passed("the TD is not debuggable")
        if self.policy.tdx.allow_debug:
            return _warned("debug_td", "the TD is debuggable (allowed by tdx.allow_debug)")
        return _failed("debug_td", "the TD is debuggable: its host can read and change its memory")

    def _artifacts(self) -> _Outcome:
        if not self.policy.artifacts:
            return _warned("reference_value_absent", "the policy names no artifacts")
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
            return _failed(problems[0][0], "; ".join(detail for _, detail in problems))
        return _passed(f"{len(self.policy.artifacts)} policy artifacts checked")

    # -- the result ------------------------------------------------------------

    def _statement(self) -> Statement:
        assert self.statement is not None  # guaranteed by the evidence_format dependency
        return self.statement

    def _quote(self) -> Quote:
        assert self.quote is not None  # guaranteed by the quote_signature dependency
        return self.quote

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
