"""Real simulated evidence, built the way the agent builds it, and policies to match.

A ``Scenario`` holds one simulated TDX backend whose RTMR3 carries a short
runtime log, an agent key and two subjects. ``statement()`` takes a fresh
quote over a binding; tests change the statement afterwards (or swap the key)
and sign it with ``sign()`` to make the evidence they need.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from attestd.conformance._evidence import (
    DATASET,
    MODEL,
    binding,
    demo_events,
    simulated_statement,
)
from attestd.evidence import (
    RuntimeEvent,
    Statement,
    Subject,
    event_digest,
    format_rfc3339,
    key_id,
    sign_statement,
)
from attestd.evidence.subjects import statement_subjects
from attestd.tee.tdx import _simulated_pki as tdx_pki
from attestd.tee.tdx.abi import parse_quote
from attestd.tee.tdx.simulated import SimulatedTdMeasurements, SimulatedTdxBackend
from attestd.verifier.policy import Policy, load_policy

NONCE = bytes.fromhex("5eed" * 16)


@dataclass(frozen=True)
class Guest:
    """What every simulated guest of the tests has: an agent key, subjects, a log and a clock.

    Subclasses add their backend and ``statement``; evidence and policies are made alike.
    """

    key: ec.EllipticCurvePrivateKey
    subjects: tuple[Subject, ...]
    events: tuple[RuntimeEvent, ...]
    issued_at: datetime

    @property
    def now(self) -> datetime:
        """The verifier's clock: two seconds after the evidence was issued."""
        return self.issued_at + timedelta(seconds=2)

    def sign(self, statement: Statement, key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
        """The DSSE evidence of ``statement``, signed by the agent key unless told otherwise."""
        return sign_statement(statement, key or self.key)

    def evidence(self, **kwargs: object) -> bytes:
        """Well-formed evidence; keyword arguments go to the subclass's ``statement``."""
        make: Callable[..., Statement] = self.statement  # type: ignore[attr-defined]
        return self.sign(make(**kwargs))

    @staticmethod
    def write_policy(directory: Path, lines: list[str], extra: str) -> Policy:
        """The policy of ``lines``, then artifact rules for the subjects, then ``extra``."""
        lines += ["[[artifacts]]", f'name = "{MODEL.name}"', f'sha256 = "{MODEL.digest["sha256"]}"']
        lines += ["[[artifacts]]", f'name = "{DATASET.name}"']
        lines += [f'sha256 = "{DATASET.digest["sha256"]}"', "required = false"]
        path = directory / "policy.toml"
        path.write_text("\n".join(lines) + "\n" + extra)
        return load_policy(path)


@dataclass(frozen=True)
class Scenario(Guest):
    """One simulated TD with its agent key, subjects, runtime log and clock."""

    backend: SimulatedTdxBackend
    state_dir: Path

    def statement(
        self,
        *,
        nonce: bytes = NONCE,
        subjects: Sequence[Subject] | None = None,
        issued_at: datetime | None = None,
        exact_subjects: bool = False,
    ) -> Statement:
        """A statement with a fresh quote over its binding, as the agent makes it.

        ``exact_subjects`` names ``subjects`` as given (a forger's list), not by the agent's rule.
        """
        given = self.subjects if subjects is None else subjects
        # As the agent chooses them: with no artifact, the agent subject (evidence/subjects.py).
        key = key_id(self.key.public_key())
        chosen = tuple(given if exact_subjects else statement_subjects(given, key))
        bound = binding(
            self.key, chosen, self.events, nonce=nonce, issued_at=issued_at or self.issued_at
        )
        return simulated_statement(
            self.backend, self.key, chosen, self.events, bound, host="test-td"
        )

    def measurements(self) -> dict[str, str]:
        """MRTD and RTMR0..2 as the quotes report them, lowercase hex."""
        body = parse_quote(self.backend.get_quote(bytes(64))).body
        values = {"mrtd": body.mr_td.hex()}
        values.update({f"rtmr{i}": body.rtmrs[i].hex() for i in range(3)})
        return values

    def issue_collateral(
        self,
        *,
        issue_date: datetime = tdx_pki.NOT_VALID_BEFORE,
        next_update: datetime = tdx_pki.NOT_VALID_AFTER,
        tcb_status: str = "UpToDate",
    ) -> dict[str, str]:
        """Fresh DCAP collateral for this platform, as ``EvidencePredicate.collateral`` holds it."""
        platform = tdx_pki.load(self.backend.state_directory)
        return tdx_pki.issue_collateral(
            platform, issue_date=issue_date, next_update=next_update, tcb_status=tcb_status
        )

    def policy(self, directory: Path, *, tdx: bool = True, extra: str = "") -> Policy:
        """A policy trusting this simulator's root and, by default, its measurements."""
        (directory / "root.pem").write_bytes(self.backend.trust_root_pem())
        lines = ["[trust]", 'root = "simulated"', 'simulated_root = "root.pem"']
        lines += ["[freshness]", "max_age_seconds = 300", "max_clock_skew_seconds = 30"]
        if tdx:
            lines.append("[tdx]")
            lines += [f'{name} = ["{value}"]' for name, value in self.measurements().items()]
        return self.write_policy(directory, lines, extra)


def make_scenario(state_dir: Path, measurements: SimulatedTdMeasurements | None = None) -> Scenario:
    """A simulated backend in ``state_dir`` whose RTMR3 has three events extended into it."""
    backend = SimulatedTdxBackend.open(state_dir, measurements)
    issued_at = datetime.now(UTC).replace(microsecond=0)
    events = demo_events(format_rfc3339(issued_at))
    for event in events:
        backend.extend_runtime_register(event_digest(event))
    return Scenario(
        backend=backend,
        state_dir=state_dir,
        key=ec.generate_private_key(ec.SECP256R1()),
        subjects=(MODEL, DATASET),
        events=events,
        issued_at=issued_at,
    )


def replace_log(statement: Statement, events: Sequence[RuntimeEvent]) -> Statement:
    """``statement`` with a different runtime log and everything else unchanged."""
    predicate = dataclasses.replace(statement.predicate, runtime_log=tuple(events))
    return dataclasses.replace(statement, predicate=predicate)


def replace_predicate(statement: Statement, **changes: Any) -> Statement:
    """``statement`` with predicate fields changed (``collateral=``, ``ccel=`` ...)."""
    predicate = dataclasses.replace(statement.predicate, **changes)
    return dataclasses.replace(statement, predicate=predicate)


def fresh_nonce() -> bytes:
    return os.urandom(32)
