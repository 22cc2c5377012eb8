"""The SEV-SNP half of an appraisal: the report, its VCEK chain, and the launch values.

Cryptography lives in ``attestd.tee.snp.verify`` (report signature, VCEK ->
ASK -> ARK or VLEK -> ASVK -> ARK, reported TCB against the VCEK); this module
compares what it verified with the policy. The report's SIGNING_KEY field
decides which chain, and the ``signing_key`` check which keys the policy
accepts (``snp.signing_keys``). SNP has no runtime register: the runtime log is
bound through REPORTDATA alone.

With ``snp.check_revocation`` on (the default under ``root = "amd"``), the
ARK's CRL from ``snp.crl_store``, ``snp.vcek_cache_dir`` or ``snp.kds_url`` must
be had, verify, and not list the chain's ASK or ASVK: ``quote_signature``
fails closed, with ``collateral_unavailable``, when no CRL can be had.
"""

from __future__ import annotations

from datetime import datetime

from cryptography import x509

from attestd._files import FileMissingError, FileRefusedError, read_regular_file
from attestd.evidence import Statement
from attestd.tee.snp.abi import AttestationReport, CertChain, parse_report
from attestd.tee.snp.kds import (
    MAX_CERTIFICATE_BYTES,
    CrlSource,
    VcekSource,
    VcekUnavailableError,
    get_vcek,
    offline_path,
    refuse_vlek,
)
from attestd.tee.snp.verify import (
    SIGNING_KEY_NAMES,
    VerifyOptions,
    load_certificate,
    vcek_extensions,
    verify_report,
)
from attestd.verifier.checks import (
    REFERENCE_VALUE_ABSENT,
    CheckDef,
    Claim,
    Outcome,
    allowed_value,
    claim,
    failed,
    names,
    passed,
)
from attestd.verifier.policy import Policy, TrustRoot

SNP_REPORT_REASONS = (
    "vcek_unavailable",
    "vcek_chain_invalid",
    "untrusted_root",
    "certificate_expired",
    "report_signature_invalid",
    "vcek_extensions_invalid",
    "product_mismatch",
    "signing_key_mismatch",
    "tcb_mismatch",
    "chip_id_mismatch",
    "certificate_revoked",
    "collateral_unavailable",
    "collateral_too_large",
    "collateral_malformed",
    "collateral_signature_invalid",
    "collateral_not_yet_valid",
    "collateral_expired",
)
"""What ``quote_signature`` reports when an SEV-SNP report does not verify
(``tee/snp/verify.py``, ``tee/snp/kds.py``)."""


class SnpAppraiser:
    def __init__(self, statement: Statement, policy: Policy, now: datetime) -> None:
        self._statement = statement
        self._policy = policy
        self._now = now
        self._report: AttestationReport | None = None
        self._product: str | None = None

    @property
    def report(self) -> AttestationReport:
        assert self._report is not None  # guaranteed by the quote_signature dependency
        return self._report

    def _trusted_arks(self) -> list[x509.Certificate] | None:
        trust = self._policy.trust
        if trust.root is TrustRoot.SIMULATED:
            assert trust.simulated_root is not None  # load_policy guarantees it
            return [trust.simulated_root]
        return None  # AMD's pinned ARKs

    def verify(self) -> Outcome:
        report = parse_report(self._statement.predicate.quote)
        snp = self._policy.snp
        revocation = self._crl_source()
        if revocation is None and snp.revocation_checked(self._policy.trust.root):
            return failed(
                "collateral_unavailable",
                f"snp.check_revocation is on (the default under root = "
                f'"{self._policy.trust.root}") but no CRL source is configured: set '
                "snp.kds_url, snp.crl_store or snp.vcek_cache_dir, or check_revocation = false",
            )
        options = VerifyOptions(
            now=self._now,
            product=snp.product,
            trusted_arks=self._trusted_arks(),
            revocation=revocation,
        )
        # The evidence carries the chain its host provided, in CertChain's order.
        try:
            shipped = CertChain.from_ordered(
                [load_certificate(der) for der in self._statement.predicate.certificates]
            )
        except ValueError as err:
            return failed(
                "vcek_chain_invalid", f"a certificate in the evidence is unreadable: {err}"
            )
        ask = shipped.ask
        if shipped.signer is not None and snp.use_certificate_table:
            vcek = shipped.signer
        else:
            found = self._stored_vcek(report)
            if found is None:
                refuse_vlek(report, ["the evidence", "snp.vcek_store"])
                product = snp.product or report.product
                if product is None:
                    return failed(
                        "vcek_unavailable",
                        "the evidence carries no VCEK, none is in snp.vcek_store, and the "
                        "product needed to ask AMD's KDS is unknown (set snp.product)",
                    )
                source = VcekSource(
                    use_certificate_table=False,
                    cache_dir=snp.vcek_cache_dir,
                    kds_base_url=snp.kds_url,
                )
                found = get_vcek(report, product, source)
            vcek = found
        self._report = verify_report(report, vcek=vcek, ask=ask, options=options)
        extensions = vcek_extensions(vcek)
        self._product = options.product or report.product or extensions.product
        if extensions.csp_id is not None:
            signer = f"VLEK of cloud provider {extensions.csp_id!r} and the ASVK"
        else:
            signer = "VCEK and the ASK"
        revoked = ", whose CRL lists neither" if revocation is not None else ""
        return passed(
            f"SEV-SNP report verifies through its {signer} to the {self._policy.trust.root} ARK"
            f"{revoked}"
        )

    def _crl_source(self) -> CrlSource | None:
        """Where the ARK's CRL comes from; None when revocation is not checked or nowhere."""
        snp = self._policy.snp
        if not snp.revocation_checked(self._policy.trust.root):
            return None
        if snp.crl_store is None and snp.vcek_cache_dir is None and snp.kds_url is None:
            return None
        return CrlSource(
            offline_store=snp.crl_store, cache_dir=snp.vcek_cache_dir, kds_base_url=snp.kds_url
        )

    def _stored_vcek(self, report: AttestationReport) -> x509.Certificate | None:
        """The VCEK (or VLEK) from the offline store, named by chip and TCB: no product needed."""
        store = self._policy.snp.vcek_store
        if store is None:
            return None
        path = offline_path(store, report.chip_id, report.reported_tcb)
        try:
            data = read_regular_file(path, MAX_CERTIFICATE_BYTES, "VCEK")
        except FileMissingError:
            return None
        except FileRefusedError as err:
            raise VcekUnavailableError(f"cannot read {path}: {err.detail}") from err
        try:
            return load_certificate(data)
        except ValueError as err:
            raise VcekUnavailableError(f"{path} is not a certificate: {err}") from err

    def report_data(self) -> bytes:
        return bytes(self.report.report_data)

    def runtime_register(self) -> tuple[str, bytes] | None:
        return None

    # -- checks ----------------------------------------------------------------

    def value(self, key: str, label: str, required: bool) -> Outcome:
        value = bytes(getattr(self.report, key))
        allowed = getattr(self._policy.snp, key)
        reason = "measurement_not_allowed" if key == "measurement" else f"{key}_not_allowed"
        return allowed_value(label, f"snp.{key}", value, allowed, reason=reason, required=required)

    def reported_tcb(self) -> Outcome:
        if self._product is None:
            return failed("product_unknown", "cannot decode the TCB: the product is unknown")
        tcb = self.report.tcb(self._product)
        minimum = self._policy.snp.min_tcb
        low = [
            f"{name} {getattr(tcb, name)} < {getattr(minimum, name)}"
            for name in ("bootloader", "tee", "snp", "microcode", "fmc")
            if (getattr(tcb, name) or 0) < getattr(minimum, name)
        ]
        if low:
            return failed("tcb_too_low", f"reported TCB below snp.min_tcb: {', '.join(low)}")
        return passed(f"reported TCB {tcb} ({self._product}) meets snp.min_tcb")

    def guest_policy(self) -> Outcome:
        policy = self.report.guest_policy
        rules = self._policy.snp
        if policy.debug and not rules.allow_debug:
            return failed("debug_guest", "the guest policy allows debugging (snp.allow_debug)")
        if policy.migrate_ma and not rules.allow_migration_agent:
            return failed(
                "migration_agent_allowed",
                "the guest policy allows a migration agent (snp.allow_migration_agent)",
            )
        if policy.smt and not rules.allow_smt:
            return failed("smt_allowed", "the guest policy allows SMT (snp.allow_smt = false)")
        return passed(
            f"guest policy debug={policy.debug} migrate_ma={policy.migrate_ma} smt={policy.smt}"
        )

    def signing_key(self) -> Outcome:
        """The key the report names (and verify_report matched to the certificate) is allowed."""
        name = SIGNING_KEY_NAMES.get(self.report.signing_key, str(self.report.signing_key))
        allowed = self._policy.snp.signing_keys
        if name not in allowed:
            return failed(
                "signing_key_not_allowed",
                f"the report is signed by a {name.upper()}; snp.signing_keys allows "
                f"{', '.join(allowed)}",
            )
        return passed(f"signed by a {name.upper()}, which snp.signing_keys allows")

    def vmpl(self) -> Outcome:
        vmpl = self.report.vmpl
        if vmpl not in self._policy.snp.vmpl:
            return failed("vmpl_not_allowed", f"VMPL {vmpl} is not among snp.vmpl")
        return passed(f"VMPL {vmpl} is allowed")

    def guest_svn(self) -> Outcome:
        svn = self.report.guest_svn
        if svn < self._policy.snp.min_guest_svn:
            return failed(
                "guest_svn_too_low",
                f"GUEST_SVN {svn} < snp.min_guest_svn {self._policy.snp.min_guest_svn}",
            )
        return passed(f"GUEST_SVN {svn} meets snp.min_guest_svn")


# -- the registry of the SEV-SNP checks -----------------------------------------------------

_QUOTE = ("evidence_format", "quote_signature")
_CONFIGURED = (claim("configuration"),)


def _optional(key: str, label: str) -> CheckDef[SnpAppraiser]:
    """A launch value checked only when the policy sets it."""
    return CheckDef(
        key,
        lambda s: s.value(key, label, False),
        _QUOTE,
        reasons=(f"{key}_not_allowed",),
        claims=_CONFIGURED,
    )


SNP_CHECKS: tuple[CheckDef[SnpAppraiser], ...] = (
    CheckDef(
        "signing_key",
        SnpAppraiser.signing_key,
        _QUOTE,
        reasons=("signing_key_not_allowed",),
        claims=(claim("hardware"),),
    ),
    CheckDef(
        "reported_tcb",
        SnpAppraiser.reported_tcb,
        _QUOTE,
        reasons=("tcb_too_low", "product_unknown"),
        claims=(claim("hardware"),),
    ),
    CheckDef(
        "measurement",
        lambda s: s.value("measurement", "MEASUREMENT", True),
        _QUOTE,
        reasons=("measurement_not_allowed", REFERENCE_VALUE_ABSENT),
        claims=(claim("executables"),),
    ),
    _optional("host_data", "HOST_DATA"),
    _optional("id_key_digest", "ID_KEY_DIGEST"),
    _optional("author_key_digest", "AUTHOR_KEY_DIGEST"),
    CheckDef(
        "guest_policy",
        SnpAppraiser.guest_policy,
        _QUOTE,
        reasons=("debug_guest", "migration_agent_allowed", "smt_allowed"),
        claims=(
            claim("configuration"),
            Claim("runtime-opaque", fail=None, by_reason={"debug_guest": 96}),
        ),
    ),
    CheckDef("vmpl", SnpAppraiser.vmpl, _QUOTE, reasons=("vmpl_not_allowed",), claims=_CONFIGURED),
    CheckDef(
        "guest_svn",
        SnpAppraiser.guest_svn,
        _QUOTE,
        reasons=("guest_svn_too_low",),
        claims=_CONFIGURED,
    ),
)
"""The SEV-SNP checks, in the order they run, after the common ones."""

SNP_CHECK_NAMES = names(SNP_CHECKS)
