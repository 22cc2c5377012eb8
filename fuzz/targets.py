"""One fuzz target per parser of outside bytes, each a ``check(bytes)`` and its documented errors.

    targets = make_targets(files_dir)          # files_dir: what config/policy/layout may name
    target = targets["tdx_quote"]
    try:
        target.check(data)
    except target.allowed:
        pass                                   # refused, as the parser documents
    # anything else that escapes is an untyped exception: a finding

Every target calls the parser's public entry point, the one attestd itself calls
on bytes that arrive from outside (a device, a file, a peer), so the targets
survive refactors of the machinery behind it. Where a value must also hold a
property (a quote rebuilds to its input, a log replays to four RTMRs), the check
asserts it, and a failed assertion is a finding like any other exception.

Three targets wrap the fuzzer's bytes before parsing, because a fuzzer cannot
reach a JSON document inside base64 inside JSON: ``stage_provenance`` puts them
into a stage attestation as its provenance payload, ``ear_claims`` signs them as
an EAR token's claims, and ``evidence_statement`` parses them as an envelope's
payload. The config, policy and layout targets write the bytes to a file in
``files_dir`` and load it, as the daemon and attestctl do.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from attestd.agent.config import load_config
from attestd.agent.errors import ConfigError, PreviousAttestationError
from attestd.agent.stages import parse_previous
from attestd.evidence import (
    EvidenceError,
    Statement,
    agent_key_link,
    log_head_link,
    open_evidence,
    subjects_link,
)
from attestd.evidence.envelope import PAYLOAD_TYPE
from attestd.evidence.provenance import STAGE_ATTESTATION_MEDIA_TYPE
from attestd.evidence.statement import parse_statement
from attestd.tee.errors import CcelFormatError, QuoteFormatError
from attestd.tee.snp.abi import build_cert_table, parse_cert_table, parse_report
from attestd.tee.tdx.abi import parse_quote
from attestd.tee.tdx.ccel import parse_ccel_table, parse_event_log, replay_rtmrs
from attestd.tee.tdx.collateral import Collateral, CollateralError
from attestd.verifier.ear import ResultError, verify_result
from attestd.verifier.errors import PolicyError
from attestd.verifier.layout import LayoutError, load_layout
from attestd.verifier.policy import load_policy

EAR_NOW = datetime(2026, 1, 1, tzinfo=UTC)
"""The clock every EAR check runs at: the seeds are signed at this moment."""
EAR_NONCE = bytes(range(32))
"""The nonce the EAR seeds carry; odd mode bytes ask verify_result to check it."""
EAR_KEY = ec.derive_private_key(0xA77E57D_F022, ec.SECP256R1())
"""A fixed verifier key, so that seeds signed by the generator verify in every process."""


@dataclass(frozen=True)
class Target:
    """A parser under fuzzing: feed ``check`` any bytes; only ``allowed`` may escape."""

    name: str
    check: Callable[[bytes], None]
    allowed: tuple[type[Exception], ...]
    about: str


def _quote(data: bytes) -> None:
    quote = parse_quote(data)
    rebuilt = quote.to_bytes()
    assert data[: len(rebuilt)] == rebuilt, "the quote does not rebuild to its input"
    assert not data[len(rebuilt) :].strip(b"\0"), "non-zero bytes after an accepted quote"


def _ccel_table(data: bytes) -> None:
    table = parse_ccel_table(data)
    assert sum(data) % 256 == 0 and table.revision == 1 and len(data) == 56


def _ccel_log(data: bytes) -> None:
    log = parse_event_log(data)
    try:
        rtmrs = replay_rtmrs(log)
    except CcelFormatError:
        return
    assert len(rtmrs) == 4 and all(len(r) == 48 for r in rtmrs)


def _snp_report(data: bytes) -> None:
    assert parse_report(data).to_bytes() == data, "the report does not rebuild to its input"


def _snp_cert_table(data: bytes) -> None:
    table = parse_cert_table(data)
    assert all(isinstance(k, str) and isinstance(v, bytes) for k, v in table.items())
    if table:
        assert parse_cert_table(build_cert_table(table)) == table


def _collateral(data: bytes) -> None:
    Collateral.from_json(data)


def _links(statement: Statement) -> None:
    """The binding's three links, as the appraisal checks them: a broken one is a verdict."""
    binding = statement.predicate.binding
    agent_key_link(binding, statement.predicate.agent_key_pem)
    subjects_link(binding, statement.subjects)
    log_head_link(binding, statement.predicate.runtime_log)


def _evidence(data: bytes) -> None:
    _, statement = open_evidence(data)
    _links(statement)


def _statement(data: bytes) -> None:
    _links(parse_statement(data))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def wrap_provenance(payload: bytes) -> bytes:
    """A stage attestation whose provenance envelope carries ``payload`` (unsigned)."""
    envelope = {
        "payload": _b64(payload),
        "payloadType": PAYLOAD_TYPE,
        "signatures": [{"keyid": "fuzz", "sig": _b64(b"\0" * 64)}],
    }
    document = {"mediaType": STAGE_ATTESTATION_MEDIA_TYPE, "provenance": envelope, "evidence": {}}
    return json.dumps(document).encode()


def _stage_attestation(data: bytes) -> None:
    parse_previous(data)


def _stage_provenance(data: bytes) -> None:
    parse_previous(wrap_provenance(data))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_claims(claims: bytes, key: ec.EllipticCurvePrivateKey = EAR_KEY) -> bytes:
    """A compact ES256 JWS of ``claims`` exactly as given (PyJWT would re-encode them)."""
    header = _b64url(b'{"alg":"ES256","typ":"JWT"}')
    signing_input = f"{header}.{_b64url(claims)}".encode()
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return signing_input + b"." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big")).encode()


def _verify_ear(token: bytes, mode: int) -> None:
    nonce = EAR_NONCE if mode & 1 else None
    verify_result(token, EAR_KEY.public_key(), nonce=nonce, now=EAR_NOW)


def _ear_token(data: bytes) -> None:
    """First byte: mode (bit 0: check the nonce); the rest: the token."""
    if data:
        _verify_ear(data[1:], data[0])


def _ear_claims(data: bytes) -> None:
    """First byte: mode (bit 0: check the nonce); the rest: claims, signed here."""
    if data:
        _verify_ear(sign_claims(data[1:]), data[0])


class _FileLoader:
    """Writes each input to one file in ``directory`` and loads it with ``load``."""

    def __init__(self, directory: Path, name: str, load: Callable[[Path], object]) -> None:
        self.path = directory / f".fuzz-{name}-{os.getpid()}.toml"
        self.load = load

    def __call__(self, data: bytes) -> None:
        self.path.write_bytes(data)
        self.load(self.path)


def make_targets(files_dir: Path) -> dict[str, Target]:
    """Every target, by name; config, policy and layout files resolve their paths in files_dir."""
    quote_error = (QuoteFormatError,)
    targets = [
        Target("tdx_quote", _quote, quote_error, "tee.tdx.abi.parse_quote (rebuilds to input)"),
        Target("ccel_table", _ccel_table, (CcelFormatError,), "tee.tdx.ccel.parse_ccel_table"),
        Target("ccel_log", _ccel_log, (CcelFormatError,), "parse_event_log + replay_rtmrs"),
        Target("snp_report", _snp_report, quote_error, "tee.snp.abi.parse_report (rebuilds)"),
        Target("snp_cert_table", _snp_cert_table, quote_error, "GHCB table: parse_cert_table"),
        Target("dcap_collateral", _collateral, (CollateralError,), "Collateral.from_json"),
        Target("evidence_envelope", _evidence, (EvidenceError,), "open_evidence + consistency"),
        Target("evidence_statement", _statement, (EvidenceError,), "parse_statement + consistency"),
        Target(
            "stage_attestation",
            _stage_attestation,
            (PreviousAttestationError,),
            "agent.stages.parse_previous",
        ),
        Target(
            "stage_provenance",
            _stage_provenance,
            (PreviousAttestationError,),
            "parse_previous, fuzzing the provenance payload",
        ),
        Target("ear_token", _ear_token, (ResultError,), "verifier.ear.verify_result"),
        Target("ear_claims", _ear_claims, (ResultError,), "verify_result of signed claims"),
        Target(
            "agent_config",
            _FileLoader(files_dir, "config", load_config),
            (ConfigError,),
            "agent.config.load_config",
        ),
        Target(
            "policy",
            _FileLoader(files_dir, "policy", load_policy),
            (PolicyError,),
            "verifier.policy.load_policy",
        ),
        Target(
            "layout",
            _FileLoader(files_dir, "layout", load_layout),
            (LayoutError,),
            "verifier.layout.load_layout",
        ),
    ]
    return {t.name: t for t in targets}


TARGET_NAMES = tuple(make_targets(Path()).keys())
