"""The TDX half of an appraisal: the quote, its TCB status and its registers.

Cryptography lives in ``attestd.tee.tdx`` (``verify`` for the signature chain,
``dcap`` for the TCB status through dcap-qvl, ``ccel`` for the boot log);
this module compares what they verified with the policy.
"""

from __future__ import annotations

import hmac
from datetime import datetime

from cryptography import x509

from attestd.evidence import Statement
from attestd.tee.tdx.abi import Quote, parse_quote
from attestd.tee.tdx.ccel import parse_ccel_table, parse_event_log, replay_rtmrs
from attestd.tee.tdx.collateral import (
    Collateral,
    CollateralSource,
    CollateralUnavailableError,
    EvidenceCollateralSource,
    FileCollateralSource,
    PccsCollateralSource,
)
from attestd.tee.tdx.dcap import DcapOptions, verify_with_collateral
from attestd.tee.tdx.rtmr import RUNTIME_LOG_RTMR
from attestd.tee.tdx.verify import VerifyOptions, intel_sgx_root_ca, verify_quote
from attestd.verifier.checks import (
    REFERENCE_VALUE_ABSENT,
    CheckDef,
    Outcome,
    allowed_value,
    claim,
    failed,
    names,
    not_checked,
    passed,
    warned,
)
from attestd.verifier.policy import CollateralOrigin, Policy, TrustRoot

TDX_QUOTE_REASONS = (
    "untrusted_root",
    "pck_chain_invalid",
    "certificate_expired",
    "qe_report_signature_invalid",
    "attestation_key_binding_invalid",
    "quote_signature_invalid",
)
"""What ``quote_signature`` reports when a TDX quote does not verify (``tee/tdx/verify.py``)."""

DCAP_REASONS = (
    "tcb_revoked", "certificate_revoked", "certificate_expired", "untrusted_root",
    "collateral_expired", "collateral_not_yet_valid", "collateral_signature_invalid",
    "collateral_mismatch", "quote_signature_invalid", "qe_report_signature_invalid",
    "attestation_key_binding_invalid", "dcap_verification_failed",
)  # fmt: skip
"""What dcap-qvl reports when it refuses a quote with its collateral (``tee/tdx/dcap.py``)."""


# Policy keys whose TD report field is spelt differently.
_BODY_FIELD = {"mrtd": "mr_td"}


class TdxAppraiser:
    def __init__(self, statement: Statement, policy: Policy, now: datetime) -> None:
        self._statement = statement
        self._policy = policy
        self._now = now
        self._quote: Quote | None = None

    @property
    def quote(self) -> Quote:
        assert self._quote is not None  # guaranteed by the quote_signature dependency
        return self._quote

    def _root(self) -> x509.Certificate:
        trust = self._policy.trust
        if trust.root is TrustRoot.SIMULATED:
            assert trust.simulated_root is not None  # load_policy guarantees it
            return trust.simulated_root
        return intel_sgx_root_ca()

    def verify(self) -> Outcome:
        quote = parse_quote(self._statement.predicate.quote)
        options = VerifyOptions(trusted_roots=[self._root()], now=self._now)
        self._quote = verify_quote(quote, options)
        return passed(f"TDX quote verifies to the {self._policy.trust.root} root of trust")

    def report_data(self) -> bytes:
        return bytes(self.quote.body.report_data)

    def runtime_register(self) -> tuple[str, bytes]:
        return f"RTMR{RUNTIME_LOG_RTMR}", bytes(self.quote.body.rtmrs[RUNTIME_LOG_RTMR])

    def register(self, key: str, label: str, reason: str, *, required: bool) -> Outcome:
        """A TD report field against the policy's allowed values for it."""
        value = bytes(getattr(self.quote.body, _BODY_FIELD.get(key, key)))
        allowed = self._policy.tdx.allowed(key)
        return allowed_value(label, f"tdx.{key}", value, allowed, reason=reason, required=required)

    def rtmr(self, index: int) -> Outcome:
        value = bytes(self.quote.body.rtmrs[index])
        allowed = self._policy.tdx.allowed(f"rtmr{index}")
        return allowed_value(
            f"RTMR{index}", f"tdx.rtmr{index}", value, allowed,
            reason="rtmr_not_allowed", required=True,
        )  # fmt: skip

    # -- checks ----------------------------------------------------------------

    def _collateral_source(self) -> CollateralSource:
        config = self._policy.tdx.collateral
        if config.origin is CollateralOrigin.FILE:
            assert config.path is not None
            return FileCollateralSource(config.path)
        if config.origin is CollateralOrigin.PCCS:
            assert config.pccs_url is not None and config.cache_dir is not None
            return PccsCollateralSource(config.pccs_url, config.cache_dir)
        shipped = self._statement.predicate.collateral
        if shipped is None:
            raise CollateralUnavailableError(
                "the evidence carries no DCAP collateral and the policy takes it from the "
                'evidence; set [tdx.collateral] source to "file" or "pccs"'
            )
        return EvidenceCollateralSource(shipped)

    def tcb_status(self) -> Outcome:
        collateral: Collateral = self._collateral_source().collateral_for(self.quote, self._now)
        root = self._policy.trust.root
        options = DcapOptions(
            now=self._now, root="intel" if root is TrustRoot.INTEL else self._root()
        )
        policy = self._policy.tdx
        if self.quote.body.debug:
            # dcap-qvl refuses to rate the TCB of a debuggable TD at all.
            detail = "the TCB of a debuggable TD is not rated (dcap-qvl refuses debug TDs)"
            if policy.allow_debug:
                return warned("debug_td", detail)
            return failed("debug_td", detail)
        result = verify_with_collateral(self.quote, collateral, options)
        advisories = ", ".join(result.advisory_ids) or "none"
        if result.status not in policy.allowed_tcb_statuses:
            return failed(
                "tcb_status_not_allowed",
                f"TCB status {result.status} (advisories: {advisories}) is not among "
                f"tdx.allowed_tcb_statuses ({', '.join(policy.allowed_tcb_statuses)})",
            )
        rejected = [a for a in result.advisory_ids if a in policy.rejected_advisories]
        if rejected:
            return failed("advisory_rejected", f"advisories {', '.join(rejected)} are rejected")
        if policy.accepted_advisories:
            unaccepted = [a for a in result.advisory_ids if a not in policy.accepted_advisories]
            if unaccepted:
                return failed(
                    "advisory_not_accepted",
                    f"advisories {', '.join(unaccepted)} are not in tdx.accepted_advisories",
                )
        return passed(f"TCB status {result.status} (advisories: {advisories}), allowed")

    def tee_tcb_svn(self) -> Outcome:
        actual = bytes(self.quote.body.tee_tcb_svn)
        minimum = self._policy.tdx.min_tee_tcb_svn
        if minimum is None:
            return not_checked(
                f"the policy sets no tdx.min_tee_tcb_svn; TEE_TCB_SVN is {actual.hex()}"
            )
        low = [i for i, (a, m) in enumerate(zip(actual, minimum, strict=True)) if a < m]
        if low:
            return failed(
                "tee_tcb_svn_too_low",
                f"TEE_TCB_SVN {actual.hex()} is below {minimum.hex()} at components {low}",
            )
        return passed(f"TEE_TCB_SVN {actual.hex()} is at least {minimum.hex()}")

    def debug(self) -> Outcome:
        if not self.quote.body.debug:
            return passed("the TD is not debuggable")
        if self._policy.tdx.allow_debug:
            return warned("debug_td", "the TD is debuggable (allowed by tdx.allow_debug)")
        return failed("debug_td", "the TD is debuggable: its host can read and change its memory")

    def ccel(self) -> Outcome:
        blob = self._statement.predicate.ccel
        if blob is None:
            if self._policy.tdx.require_ccel:
                return failed(
                    "ccel_missing", "tdx.require_ccel is set and the evidence has no CCEL"
                )
            return not_checked("the evidence carries no CC event log; RTMR0-2 rest on the policy")
        table = parse_ccel_table(blob.table)
        if not table.is_tdx:
            return failed("ccel_malformed", "the CCEL table is not a TDX one")
        log = parse_event_log(blob.log)
        replayed = replay_rtmrs(log)
        for index in range(3):
            quoted = bytes(self.quote.body.rtmrs[index])
            if not hmac.compare_digest(replayed[index], quoted):
                return failed(
                    "ccel_mismatch",
                    f"the CC event log replays RTMR{index} to {replayed[index].hex()}, "
                    f"the quote has {quoted.hex()}",
                )
        return passed(f"{len(log.events)} CC event log entries replay to RTMR0-2 of the quote")


# -- the registry of the TDX checks ---------------------------------------------------------

_QUOTE = ("evidence_format", "quote_signature")
_MEASURED = (claim("executables"),)
_CONFIGURED = (claim("configuration"),)
_ABSENT = (REFERENCE_VALUE_ABSENT,)


def _field(key: str, label: str) -> CheckDef[TdxAppraiser]:
    """An owner-defined TD field: checked only when the policy sets it."""
    return CheckDef(
        key,
        lambda t: t.register(key, label, "mr_not_allowed", required=False),
        _QUOTE,
        reasons=("mr_not_allowed",),
        claims=_CONFIGURED,
    )


def _rtmr(index: int) -> CheckDef[TdxAppraiser]:
    return CheckDef(
        f"rtmr{index}",
        lambda t: t.rtmr(index),
        _QUOTE,
        reasons=("rtmr_not_allowed", *_ABSENT),
        claims=_MEASURED,
    )


_TCB_STATUS_REASONS = (
    "tcb_status_not_allowed", "advisory_rejected", "advisory_not_accepted",
    "collateral_unavailable", "collateral_malformed", "collateral_too_large",
    *DCAP_REASONS, "debug_td",
)  # fmt: skip

TDX_CHECKS: tuple[CheckDef[TdxAppraiser], ...] = (
    CheckDef(
        "tcb_status",
        TdxAppraiser.tcb_status,
        _QUOTE,
        reasons=_TCB_STATUS_REASONS,
        claims=(claim("hardware"),),
    ),
    CheckDef(
        "mrtd",
        lambda t: t.register("mrtd", "MRTD", "mrtd_not_allowed", required=True),
        _QUOTE,
        reasons=("mrtd_not_allowed", *_ABSENT),
        claims=_MEASURED,
    ),
    _rtmr(0),
    _rtmr(1),
    _rtmr(2),
    _field("mr_config_id", "MRCONFIGID"),
    _field("mr_owner", "MROWNER"),
    _field("mr_owner_config", "MROWNERCONFIG"),
    CheckDef(
        "tee_tcb_svn",
        TdxAppraiser.tee_tcb_svn,
        _QUOTE,
        reasons=("tee_tcb_svn_too_low",),
        claims=(claim("hardware"),),
    ),
    CheckDef(
        "debug",
        TdxAppraiser.debug,
        _QUOTE,
        reasons=("debug_td",),
        claims=(claim("configuration"), claim("runtime-opaque")),
    ),
    CheckDef(
        "ccel",
        TdxAppraiser.ccel,
        _QUOTE,
        reasons=("ccel_mismatch", "ccel_malformed", "ccel_missing"),
        claims=_MEASURED,
    ),
)
"""The TDX checks, in the order they run, after the common ones."""

TDX_CHECK_NAMES = names(TDX_CHECKS)
