"""A conformance suite any verifier can run, its generator, runner and attestd's adapter.

    from attestd.conformance import load_suite, run_suite

    suite = load_suite(Path("conformance"))
    report = run_suite(suite, ["attestctl", "conformance", "adapter"], strict=True)
    report.passed, report.failed

docs/conformance.md describes the suite, the adapter protocol and how reason
names are versioned.
"""

from attestd.conformance.adapter import Verdict, judge
from attestd.conformance.manifest import SUITE_VERSION, Case, ManifestError, Suite, load_suite
from attestd.conformance.runner import CaseReport, RunReport, run_suite

__all__ = [
    "SUITE_VERSION",
    "Case",
    "CaseReport",
    "ManifestError",
    "RunReport",
    "Suite",
    "Verdict",
    "judge",
    "load_suite",
    "run_suite",
]
