"""Every check the verifier reports, by suite: where to look a check up.

    from attestd.verifier.registry import SUITES, claims_table, find

    find("appraisal", "nonce").reasons     # ("nonce_mismatch",)
    claims_table(SUITES["chain"])          # {"stages": (Claim("sourced-data", ...),), ...}

Each check is declared once, next to its step, as a
:class:`~attestd.verifier.checks.CheckDef` (name, needs, step, reasons, AR4SI
claims): the common appraisal checks in ``appraisal.py``, the TEEs' in
``_tdx.py`` and ``_snp.py``, a pipeline's in ``chain.py``, ``attestctl quote
verify``'s in ``quote.py``. This module gathers the verifier's
suites so that the EAR trust vector (``ear.py``) and the docs' tables
(checked by ``tests/verifier/test_registry.py``) follow from one source.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from attestd.verifier._snp import SNP_CHECKS, SNP_REPORT_REASONS
from attestd.verifier._tdx import DCAP_REASONS, TDX_CHECKS, TDX_QUOTE_REASONS
from attestd.verifier.appraisal import COMMON_CHECKS
from attestd.verifier.chain import CHAIN_CHECKS, STAGE_CHECKS
from attestd.verifier.checks import CheckDef, Claim
from attestd.verifier.quote import SNP_QUOTE_CHECKS, TDX_QUOTE_CHECKS

__all__ = [
    "DCAP_REASONS",
    "SNP_REPORT_REASONS",
    "SUITES",
    "TDX_QUOTE_REASONS",
    "claims_table",
    "find",
]

SUITES: Mapping[str, tuple[CheckDef[Any], ...]] = MappingProxyType(
    {
        "appraisal": COMMON_CHECKS,
        "tdx": TDX_CHECKS,
        "snp": SNP_CHECKS,
        "stage": STAGE_CHECKS,
        "chain": CHAIN_CHECKS,
        "quote_tdx": TDX_QUOTE_CHECKS,
        "quote_snp": SNP_QUOTE_CHECKS,
    }
)
"""The verifier's suites. An appraisal runs ``appraisal`` with its TEE's
(``tdx`` or ``snp``) between ``freshness`` and ``artifacts``; a chain runs
``stage`` per attestation (each appraised) and then ``chain``; ``attestctl
quote verify`` runs ``quote_tdx`` or ``quote_snp`` on a bare quote or report
(no claims: its result is not an EAR)."""


def find(suite: str, name: str) -> CheckDef[Any]:
    """The check ``name`` of ``suite``; KeyError if there is none."""
    for check in SUITES[suite]:
        if check.name == name:
            return check
    raise KeyError(f"{suite}.{name}")


def claims_table(suite: Sequence[CheckDef[Any]]) -> Mapping[str, tuple[Claim, ...]]:
    """Each check of ``suite`` that makes AR4SI claims, to its claims."""
    return MappingProxyType({check.name: check.claims for check in suite if check.claims})
