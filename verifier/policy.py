"""The appraisal policy: which root to trust and which values to accept.

    from pathlib import Path
    from attestd.verifier.policy import load_policy

    policy = load_policy(Path("/etc/attestd/policy.toml"))
    policy.trust.root            # TrustRoot.INTEL or TrustRoot.SIMULATED
    policy.tdx.mrtd              # allowed MRTD values, lowercase hex, or None

The file is TOML and is read strictly: an unknown table or key, a value of the
wrong type or a malformed hex string is a :class:`PolicyError` that names the
key and the file, because a misspelt ``mrdt`` that silently checks nothing is
worse than a verifier that refuses to start. Every option is described in
``docs/policy.md``.
"""

from __future__ import annotations

import enum
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from attestd.verifier.errors import PolicyError

# TDX measurement registers (MRTD, RTMRn) are SHA-384 values.
_MEASUREMENT_HEX_LEN = 96
_SHA256_HEX_LEN = 64
_HEX_DIGITS = frozenset("0123456789abcdef")

DEFAULT_MAX_AGE_SECONDS = 300
DEFAULT_MAX_CLOCK_SKEW_SECONDS = 30


class TrustRoot(enum.StrEnum):
    """The root a quote must chain to."""

    INTEL = "intel"
    SIMULATED = "simulated"


@dataclass(frozen=True)
class TrustPolicy:
    """``[trust]``: the root of trust, and the simulated root's certificate when used."""

    root: TrustRoot
    simulated_root_path: Path | None = None
    simulated_root: x509.Certificate | None = None


@dataclass(frozen=True)
class FreshnessPolicy:
    """``[freshness]``: how old evidence may be, and how far ahead the agent's clock may run."""

    max_age_seconds: int = DEFAULT_MAX_AGE_SECONDS
    max_clock_skew_seconds: int = DEFAULT_MAX_CLOCK_SKEW_SECONDS


@dataclass(frozen=True)
class TdxPolicy:
    """``[tdx]``: allowed measurement values (lowercase hex); ``None`` means not checked."""

    mrtd: tuple[str, ...] | None = None
    rtmr0: tuple[str, ...] | None = None
    rtmr1: tuple[str, ...] | None = None
    rtmr2: tuple[str, ...] | None = None
    allow_debug: bool = False

    def allowed(self, register: str) -> tuple[str, ...] | None:
        """The allowed values of ``register`` ("mrtd", "rtmr0", "rtmr1" or "rtmr2")."""
        values: tuple[str, ...] | None = getattr(self, register)
        return values


@dataclass(frozen=True)
class ArtifactPolicy:
    """One ``[[artifacts]]`` entry: a subject that must (or may) appear in the evidence."""

    sha256: str
    name: str | None = None
    required: bool = True


@dataclass(frozen=True)
class Policy:
    """A whole policy file, validated."""

    trust: TrustPolicy
    freshness: FreshnessPolicy = FreshnessPolicy()
    tdx: TdxPolicy = TdxPolicy()
    artifacts: tuple[ArtifactPolicy, ...] = ()
    source: Path | None = None


def load_policy(path: Path) -> Policy:
    """Read and validate the policy file at ``path``; raise :class:`PolicyError` if it is wrong."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise PolicyError(f"cannot read policy file: {err.strerror}", path=str(path)) from err
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise PolicyError(f"not valid TOML: {err}", path=str(path)) from err
    return parse_policy(document, source=path)


def parse_policy(document: Mapping[str, Any], *, source: Path) -> Policy:
    """Validate an already-parsed TOML document; relative paths resolve against ``source``."""
    reader = _Reader(source)
    reader.only_keys(document, "", {"trust", "freshness", "tdx", "artifacts"})
    if "trust" not in document:
        raise reader.error("missing required table [trust]: the root of trust is never implied")
    return Policy(
        trust=_trust(reader, reader.table(document, "trust")),
        freshness=_freshness(reader, reader.table(document, "freshness")),
        tdx=_tdx(reader, reader.table(document, "tdx")),
        artifacts=_artifacts(reader, document.get("artifacts", []), "artifacts"),
        source=source,
    )


def _trust(reader: _Reader, table: Mapping[str, Any]) -> TrustPolicy:
    reader.only_keys(table, "trust", {"root", "simulated_root"})
    root_name = reader.string(table, "trust", "root")
    if root_name is None:
        raise reader.error('trust.root is required ("intel" or "simulated")')
    try:
        root = TrustRoot(root_name)
    except ValueError:
        choices = ", ".join(f'"{r.value}"' for r in TrustRoot)
        raise reader.error(f"trust.root must be one of {choices}, not {root_name!r}") from None
    pem_name = reader.string(table, "trust", "simulated_root")
    if root is TrustRoot.INTEL:
        if pem_name is not None:
            raise reader.error('trust.simulated_root is only allowed with root = "simulated"')
        return TrustPolicy(root=root)
    if pem_name is None:
        raise reader.error('trust.simulated_root is required when root = "simulated"')
    pem_path = reader.relative(pem_name)
    return TrustPolicy(
        root=root, simulated_root_path=pem_path, simulated_root=_certificate(pem_path)
    )


def _certificate(path: Path) -> x509.Certificate:
    try:
        pem = path.read_bytes()
    except OSError as err:
        raise PolicyError(
            f"cannot read trust.simulated_root: {err.strerror}", path=str(path)
        ) from err
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as err:
        raise PolicyError(
            f"trust.simulated_root is not a PEM certificate: {err}", path=str(path)
        ) from err


def _freshness(reader: _Reader, table: Mapping[str, Any]) -> FreshnessPolicy:
    reader.only_keys(table, "freshness", {"max_age_seconds", "max_clock_skew_seconds"})
    max_age = reader.integer(table, "freshness", "max_age_seconds", DEFAULT_MAX_AGE_SECONDS)
    skew = reader.integer(
        table, "freshness", "max_clock_skew_seconds", DEFAULT_MAX_CLOCK_SKEW_SECONDS
    )
    if max_age <= 0:
        raise reader.error("freshness.max_age_seconds must be positive")
    if skew < 0:
        raise reader.error("freshness.max_clock_skew_seconds must not be negative")
    return FreshnessPolicy(max_age_seconds=max_age, max_clock_skew_seconds=skew)


def _tdx(reader: _Reader, table: Mapping[str, Any]) -> TdxPolicy:
    registers = ("mrtd", "rtmr0", "rtmr1", "rtmr2")
    reader.only_keys(table, "tdx", {*registers, "allow_debug"})
    allowed = {
        register: reader.hex_list(table, f"tdx.{register}", register, _MEASUREMENT_HEX_LEN)
        for register in registers
    }
    return TdxPolicy(
        mrtd=allowed["mrtd"],
        rtmr0=allowed["rtmr0"],
        rtmr1=allowed["rtmr1"],
        rtmr2=allowed["rtmr2"],
        allow_debug=reader.boolean(table, "tdx", "allow_debug", default=False),
    )


def _artifacts(reader: _Reader, entries: Any, key: str) -> tuple[ArtifactPolicy, ...]:
    if not isinstance(entries, list):
        raise reader.error(f"{key} must be an array of tables ([[{key}]])")
    artifacts = []
    for index, entry in enumerate(entries):
        where = f"{key}[{index}]"
        if not isinstance(entry, dict):
            raise reader.error(f"{where} must be a table ([[{key}]])")
        reader.only_keys(entry, where, {"name", "sha256", "required"})
        if "sha256" not in entry:
            raise reader.error(f"{where}.sha256 is required")
        artifacts.append(
            ArtifactPolicy(
                sha256=reader.hex_value(entry["sha256"], f"{where}.sha256", _SHA256_HEX_LEN),
                name=reader.string(entry, where, "name"),
                required=reader.boolean(entry, where, "required", default=True),
            )
        )
    return tuple(artifacts)


class _Reader:
    """Typed access to TOML values; every complaint names the key and the file."""

    def __init__(self, source: Path) -> None:
        self.source = source

    def error(self, message: str) -> PolicyError:
        return PolicyError(message, path=str(self.source))

    def relative(self, name: str) -> Path:
        path = Path(name)
        return path if path.is_absolute() else self.source.parent / path

    def only_keys(self, table: Mapping[str, Any], where: str, known: set[str]) -> None:
        for key in table:
            if key not in known:
                full = f"{where}.{key}" if where else key
                expected = ", ".join(sorted(known))
                raise self.error(f"unknown key {full!r} (expected one of: {expected})")

    def table(self, document: Mapping[str, Any], key: str) -> Any:
        value = document.get(key, {})
        if not isinstance(value, dict):
            raise self.error(f"{key} must be a table ([{key}])")
        return value

    def string(self, table: Mapping[str, Any], where: str, key: str) -> str | None:
        if key not in table:
            return None
        value = table[key]
        if not isinstance(value, str) or not value:
            raise self.error(f"{where}.{key} must be a non-empty string")
        return value

    def integer(self, table: Mapping[str, Any], where: str, key: str, default: int) -> int:
        value = table.get(key, default)
        # bool is an int in Python; `max_age_seconds = true` is a mistake, not 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"{where}.{key} must be an integer")
        return value

    def boolean(self, table: Mapping[str, Any], where: str, key: str, *, default: bool) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise self.error(f"{where}.{key} must be true or false")
        return value

    def hex_list(
        self, table: Mapping[str, Any], where: str, key: str, length: int
    ) -> tuple[str, ...] | None:
        if key not in table:
            return None
        values = table[key]
        if not isinstance(values, list) or not values:
            raise self.error(f"{where} must be a non-empty array of hex strings")
        return tuple(
            self.hex_value(value, f"{where}[{index}]", length) for index, value in enumerate(values)
        )

    def hex_value(self, value: Any, where: str, length: int) -> str:
        if not isinstance(value, str):
            raise self.error(f"{where} must be a hex string")
        lowered = value.lower()
        if len(lowered) != length or not set(lowered) <= _HEX_DIGITS:
            raise self.error(f"{where} must be {length} hex digits ({length // 2} bytes)")
        return lowered
