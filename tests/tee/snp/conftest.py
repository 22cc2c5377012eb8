"""The real Milan report in ../shared/vectors/snp, and one simulated guest per session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509

from attestd.tee.snp.simulated import SimulatedSnpBackend
from attestd.tee.snp.verify import load_certificate

#: A moment at which the Milan VCEK (2022-09-24 .. 2029-09-24) and AMD's roots are valid.
VECTORS_NOW = datetime(2025, 6, 1, tzinfo=UTC)


@dataclass(frozen=True)
class RealReport:
    raw: bytes
    vcek_der: bytes

    @property
    def vcek(self) -> x509.Certificate:
        return load_certificate(self.vcek_der)


@pytest.fixture(scope="session")
def real(vectors_dir: Path) -> RealReport:
    snp = vectors_dir / "snp"
    return RealReport(
        (snp / "milan_report_v2.bin").read_bytes(), (snp / "milan_vcek.der").read_bytes()
    )


@pytest.fixture(scope="session")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> SimulatedSnpBackend:
    """One simulated guest (two RSA-4096 keys, made once) for every test that shares it."""
    return SimulatedSnpBackend.open(tmp_path_factory.mktemp("snp-sim-state"))
