"""AMD SEV-SNP: attestation report layouts, report verification, VCEK retrieval, a simulated guest.

    >>> from datetime import UTC, datetime
    >>> from attestd.tee.snp import VerifyOptions, load_certificate, parse_report, verify_report
    >>> report = verify_report(raw, vcek=load_certificate(vcek_der),
    ...                        options=VerifyOptions(now=datetime.now(UTC)))
    >>> report.measurement, report.report_data, report.guest_policy.debug

    >>> from attestd.tee.snp import SimulatedSnpBackend, parse_cert_table
    >>> sim = SimulatedSnpBackend.open(state_dir)
    >>> raw, table = sim.get_report_with_certificates(bytes(64))
    >>> CertChain.from_raw_table(table).ordered()    # (VCEK, ASK, ARK): the one chain order

``abi`` turns bytes into values and back, ``verify`` checks signatures up to a
trusted AMD ARK (through the ASK for a VCEK, the ASVK for a cloud provider's
VLEK), ``kds`` finds the VCEK a report needs (a VLEK never comes from AMD's
KDS), ``simulated`` emits the same bytes from a simulated AMD PKI.
"""

from attestd.tee.snp.abi import (
    AttestationReport,
    CertChain,
    CertKind,
    GuestPolicy,
    PlatformInfo,
    TcbVersion,
    build_cert_table,
    encode_signature,
    parse_cert_table,
    parse_report,
)
from attestd.tee.snp.kds import VcekSource, VcekUnavailableError, get_vcek, vcek_url
from attestd.tee.snp.simulated import SimulatedSnpBackend, SimulatedSnpMeasurements
from attestd.tee.snp.verify import (
    VcekExtensions,
    VerifyOptions,
    amd_ark,
    amd_ask,
    amd_asvk,
    load_certificate,
    vcek_extensions,
    verify_report,
)

__all__ = [
    "AttestationReport",
    "CertChain",
    "CertKind",
    "GuestPolicy",
    "PlatformInfo",
    "SimulatedSnpBackend",
    "SimulatedSnpMeasurements",
    "TcbVersion",
    "VcekExtensions",
    "VcekSource",
    "VcekUnavailableError",
    "VerifyOptions",
    "amd_ark",
    "amd_ask",
    "amd_asvk",
    "build_cert_table",
    "encode_signature",
    "get_vcek",
    "load_certificate",
    "parse_cert_table",
    "parse_report",
    "vcek_extensions",
    "vcek_url",
    "verify_report",
]
