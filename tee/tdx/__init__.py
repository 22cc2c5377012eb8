"""Intel TDX: quote layouts, quote verification, and a simulated TD.

    >>> from datetime import UTC, datetime
    >>> from attestd.tee.tdx import VerifyOptions, intel_sgx_root_ca, parse_quote, verify_quote
    >>> quote = verify_quote(raw, VerifyOptions([intel_sgx_root_ca()], datetime.now(UTC)))
    >>> quote.body.mr_td, quote.body.rtmrs[3], quote.body.report_data

    >>> from attestd.tee.tdx import SimulatedTdxBackend
    >>> sim = SimulatedTdxBackend.open(state_dir)
    >>> verify_quote(sim.get_quote(bytes(64)), VerifyOptions([sim.trust_root()], now))

``abi`` turns bytes into values and back, ``verify`` checks signatures up to a
trusted root, ``simulated`` emits the same bytes from a simulated PKI.
"""

from attestd.tee.tdx.abi import (
    EnclaveReport,
    QeReportCertificationData,
    Quote,
    QuoteHeader,
    QuoteSignatureData,
    TdReport10,
    TdReport15,
    parse_quote,
)
from attestd.tee.tdx.simulated import SimulatedTdMeasurements, SimulatedTdxBackend
from attestd.tee.tdx.verify import VerifyOptions, intel_sgx_root_ca, verify_quote

__all__ = [
    "EnclaveReport",
    "QeReportCertificationData",
    "Quote",
    "QuoteHeader",
    "QuoteSignatureData",
    "SimulatedTdMeasurements",
    "SimulatedTdxBackend",
    "TdReport10",
    "TdReport15",
    "VerifyOptions",
    "intel_sgx_root_ca",
    "parse_quote",
    "verify_quote",
]
