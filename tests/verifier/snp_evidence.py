"""Real simulated SEV-SNP evidence, built the way the agent builds it, and policies to match.

An ``SnpScenario`` holds one simulated SEV-SNP guest, an agent key, two
subjects and a short runtime log. SNP has no runtime register, so the log is
extended nowhere: its head travels only in the binding, which REPORTDATA binds.
``statement()`` takes a fresh report over a binding and ships the VCEK, ASK and
ARK (or, for a guest whose host signs with a VLEK, the VLEK, ASVK and ARK) as
the agent does: ``backend.attest`` reads them from the GHCB table.

The simulated PKI costs two RSA-4096 keys: make it once with
``attestd.tee.snp._simulated_pki.generate()`` and give it to every
``make_snp_scenario`` that may share it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from attestd.conformance._evidence import (
    DATASET,
    MODEL,
    binding,
    demo_events,
    simulated_statement,
)
from attestd.evidence import (
    Statement,
    Subject,
    format_rfc3339,
)
from attestd.tee.snp import _simulated_pki as snp_pki
from attestd.tee.snp.abi import parse_report
from attestd.tee.snp.simulated import STATE_SUBDIR, SimulatedSnpBackend, SimulatedSnpMeasurements
from attestd.verifier.policy import Policy
from tests.verifier.simulated_evidence import NONCE, Guest


@dataclass(frozen=True)
class SnpScenario(Guest):
    """One simulated SEV-SNP guest with its agent key, subjects, runtime log and clock."""

    backend: SimulatedSnpBackend

    def statement(
        self,
        *,
        nonce: bytes = NONCE,
        subjects: Sequence[Subject] | None = None,
        issued_at: datetime | None = None,
    ) -> Statement:
        """A statement with a fresh report over its binding, and the VCEK chain the agent ships."""
        chosen = tuple(self.subjects if subjects is None else subjects)
        bound = binding(
            self.key, chosen, self.events, nonce=nonce, issued_at=issued_at or self.issued_at
        )
        return simulated_statement(
            self.backend, self.key, chosen, self.events, bound, host="test-snp-guest"
        )

    def measurement(self) -> str:
        """The launch MEASUREMENT as the reports carry it, lowercase hex."""
        return parse_report(self.backend.get_quote(bytes(64))).measurement.hex()

    def policy(self, directory: Path, *, snp: str | None = None, extra: str = "") -> Policy:
        """A policy trusting this simulator's ARK; ``[snp]`` allows its measurement unless given.

        ``snp`` is the body of the ``[snp]`` table; ``extra`` follows the whole policy.
        """
        (directory / "ark.pem").write_bytes(self.backend.trust_root_pem())
        lines = ["[trust]", 'root = "simulated"', 'simulated_root = "ark.pem"']
        lines += ["[freshness]", "max_age_seconds = 300", "max_clock_skew_seconds = 30"]
        lines += ["[snp]", snp if snp is not None else f'measurement = ["{self.measurement()}"]']
        return self.write_policy(directory, lines, extra)


def make_snp_scenario(
    state_dir: Path,
    measurements: SimulatedSnpMeasurements | None = None,
    *,
    platform: snp_pki.SimulatedPki | None = None,
) -> SnpScenario:
    """A simulated SEV-SNP guest in ``state_dir``, on ``platform`` if given (else a new PKI).

    Launch values live in the state directory, so each launch configuration
    needs its own; sharing ``platform`` between them spares the RSA key generation.
    """
    if platform is not None:
        directory = state_dir / STATE_SUBDIR
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        snp_pki.save(platform, directory)
    backend = SimulatedSnpBackend.open(state_dir, measurements)
    issued_at = datetime.now(UTC).replace(microsecond=0)
    events = demo_events(format_rfc3339(issued_at))
    return SnpScenario(
        backend=backend,
        key=ec.generate_private_key(ec.SECP256R1()),
        subjects=(MODEL, DATASET),
        events=events,
        issued_at=issued_at,
    )
