"""The agent's TOML configuration, parsed strictly.

Every option is documented in docs/configuration.md. Unknown keys are errors:
a typo in a security setting must not silently fall back to a default.

Example::

    config = load_config(Path("/etc/attestd/attestd.toml"))
    config.tee.backend  # "simulated-tdx"
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attestd._metrics import MetricsAddressError, parse_metrics_address
from attestd._toml import TomlReader, load_toml
from attestd.agent.errors import ConfigError
from attestd.evidence import MAX_EVENT_CONTENT_BYTES, MAX_RUNTIME_LOG_EVENTS
from attestd.evidence.runtime_log_format import MAX_ID
from attestd.tee.detect import BACKEND_NAMES, simulated_measurement_widths

#: Backends this build can run. "simulated-*" names are deliberate: simulation
#: is only ever used when asked for by name.
KNOWN_BACKENDS = BACKEND_NAMES

_LOG_LEVELS = ("debug", "info", "warning", "error")
#: The verifier service's agent names (verifier/service/api.py).
_PUSH_NAME = re.compile(r"[A-Za-z0-9._-]{1,200}")


@dataclass(frozen=True)
class TlsConfig:
    cert: Path
    key: Path
    client_ca: Path


@dataclass(frozen=True)
class ListenConfig:
    unix_socket: Path | None
    unix_socket_mode: int
    tcp_address: str | None
    tls: TlsConfig | None


@dataclass(frozen=True)
class PipelineConfig:
    """Who may use the Unix socket, by the kernel's peer credentials (empty: anyone).

    A caller must be in every non-empty list: its uid in ``allowed_uids`` and
    its (effective, primary) gid in ``allowed_gids``.
    """

    allowed_uids: frozenset[int] = frozenset()
    allowed_gids: frozenset[int] = frozenset()


@dataclass(frozen=True)
class SimulatedMeasurementsConfig:
    """Overrides for the simulated TEE's measurements; absent keeps the state's."""

    values: Mapping[str, bytes | int | str] = field(default_factory=dict)


@dataclass(frozen=True)
class TeeConfig:
    backend: str
    simulated: SimulatedMeasurementsConfig
    vmpl: int = 0
    """The VMPL SEV-SNP reports are requested at (0 unless the guest runs under an SVSM)."""
    quote_latency_ms: int = 0
    """Simulated backends only: how long each quote takes, serialized like configfs-tsm."""


@dataclass(frozen=True)
class EvidenceConfig:
    """``[evidence]``: how GetEvidence requests share quotes (docs/evidence-format.md section 8)."""

    batching: bool = True
    """False takes one quote per request, in arrival order (the unbatched baseline)."""
    max_batch: int = 256
    """Most requests one quote serves; the rest wait for the next quote."""
    signing_percent: int = 60
    """Most of the time, on average, the agent spends signing evidence (1-100 %).

    Signing is the agent's heaviest CPU work; verifiers asking back to back
    would otherwise keep it busy all the time and starve the pipeline it measures.
    """


@dataclass(frozen=True)
class MetricsConfig:
    """``[metrics]``: where the Prometheus endpoint listens (None: no endpoint)."""

    address: str | None = None
    """``HOST:PORT`` with an IP literal (attestd._metrics.parse_metrics_address)."""


@dataclass(frozen=True)
class LimitsConfig:
    max_message_bytes: int
    max_artifacts_per_call: int
    max_event_content_bytes: int
    max_log_events_in_evidence: int
    log_page_size: int


@dataclass(frozen=True)
class PushConfig:
    """``[push]``: push evidence to a verifier service (agents it cannot reach, behind NAT).

    The agent asks the verifier for a challenge (a nonce and the checkpoint it
    verified), answers it with its own evidence, and pushes it, every
    ``interval_s``; over mutual TLS with ``cert``/``key``, the verifier's
    certificate checked against ``ca`` and ``server_name``.
    """

    verifier: str
    name: str
    cert: Path
    key: Path
    ca: Path
    server_name: str | None = None
    interval_s: int = 60


@dataclass(frozen=True)
class AgentConfig:
    state_dir: Path
    log_level: str
    tee: TeeConfig
    listen: ListenConfig
    artifact_roots: tuple[Path, ...]
    limits: LimitsConfig
    evidence: EvidenceConfig = EvidenceConfig()
    pipeline: PipelineConfig = PipelineConfig()
    metrics: MetricsConfig = MetricsConfig()
    push: PushConfig | None = None


def load_config(path: Path, *, tee_override: str | None = None) -> AgentConfig:
    """Read and validate the configuration file at ``path``; errors name the file and the key."""
    raw = load_toml(path, "configuration file", lambda message: ConfigError(f"{path}: {message}"))
    try:
        return parse_config(raw, base_dir=path.parent, tee_override=tee_override)
    except ConfigError as err:
        # parse_config names the key; the file is named here, once, for every error.
        raise type(err)(f"{path}: {err.message}") from err


def parse_config(
    raw: Mapping[str, Any], *, base_dir: Path, tee_override: str | None = None
) -> AgentConfig:
    """Validate an already-parsed TOML document; relative paths are taken from ``base_dir``."""
    top = TomlReader(ConfigError, unknown="option").view(raw, "config")

    def path_of(value: str) -> Path:
        return (base_dir / value).resolve() if not Path(value).is_absolute() else Path(value)

    agent = top.table("agent")
    state_text = agent.text("state_dir", "/var/lib/attestd")
    if not state_text:
        raise ConfigError("config.agent.state_dir must not be empty")
    state_dir = path_of(state_text)
    log_level = agent.text("log_level", "info")
    if log_level is None or log_level not in _LOG_LEVELS:
        raise ConfigError(f"config.agent.log_level must be one of {', '.join(_LOG_LEVELS)}")
    agent.finish()

    tee = top.table("tee")
    file_backend = tee.text("backend")
    backend = tee_override or file_backend
    if backend is None:
        raise ConfigError("config.tee.backend is required (or give --tee)")
    if backend not in KNOWN_BACKENDS:
        raise ConfigError(
            f"unknown TEE backend {backend!r}; this build offers: {', '.join(KNOWN_BACKENDS)}"
        )
    simulated_table = tee.table("simulated")
    simulated: dict[str, bytes | int | str] = {}
    # [tee.simulated] keys: hex byte strings of the simulator's width, or (width None) integers.
    for key, size in simulated_measurement_widths(backend).items():
        if size is None:
            if simulated_table.has(key):
                simulated[key] = simulated_table.integer(key, 0, minimum=0, maximum=(1 << 64) - 1)
            continue
        text = simulated_table.text(key)
        if text is None:
            continue
        try:
            value = bytes.fromhex(text)
        except ValueError as err:
            raise ConfigError(f"config.tee.simulated.{key} is not hex") from err
        if len(value) != size:
            raise ConfigError(f"config.tee.simulated.{key} must be {size} bytes, got {len(value)}")
        simulated[key] = value
    if backend == "simulated-snp" and simulated_table.has("signing_key"):
        # Not a measurement: the key the simulated host signs with (a cloud host's VLEK).
        signing_key = simulated_table.text("signing_key")
        if signing_key not in ("vcek", "vlek"):
            raise ConfigError('config.tee.simulated.signing_key must be "vcek" or "vlek"')
        simulated["signing_key"] = signing_key
    quote_latency_ms = simulated_table.integer("quote_latency_ms", 0, minimum=0, maximum=60_000)
    if simulated_table.has("quote_latency_ms") and not backend.startswith("simulated-"):
        raise ConfigError(
            "config.tee.simulated.quote_latency_ms applies to simulated backends only"
        )
    simulated_table.finish()
    vmpl = tee.integer("vmpl", 0, minimum=0, maximum=3)
    if tee.has("vmpl") and backend not in ("sev-snp", "auto"):
        raise ConfigError("config.tee.vmpl applies to the sev-snp backend only")
    tee.finish()

    listen = top.table("listen")
    socket_text = listen.text("unix_socket", "/run/attestd/attestd.sock")
    socket_mode = listen.integer("unix_socket_mode", 0o660, minimum=0, maximum=0o777)
    tcp_address = listen.text("tcp_address")
    tls: TlsConfig | None = None
    if listen.has("tls"):
        tls_table = listen.table("tls")
        tls = TlsConfig(
            cert=path_of(tls_table.require_str("cert")),
            key=path_of(tls_table.require_str("key")),
            client_ca=path_of(tls_table.require_str("client_ca")),
        )
        tls_table.finish()
    listen.finish()
    if tcp_address is not None:
        _check_address(tcp_address)
        if tls is None:
            raise ConfigError(
                "config.listen.tcp_address needs [listen.tls]: remote clients must use mutual TLS"
            )
    if not socket_text and tcp_address is None:
        raise ConfigError("config.listen has neither unix_socket nor tcp_address")

    artifacts = top.table("artifacts")
    roots = tuple(path_of(root) for root in artifacts.list_of_str("roots"))
    artifacts.finish()

    limits_table = top.table("limits")
    limits = LimitsConfig(
        max_message_bytes=limits_table.integer(
            "max_message_bytes", 4 << 20, minimum=64 << 10, maximum=64 << 20
        ),
        max_artifacts_per_call=limits_table.integer(
            "max_artifacts_per_call", 64, minimum=1, maximum=4096
        ),
        max_event_content_bytes=limits_table.integer(
            "max_event_content_bytes",
            MAX_EVENT_CONTENT_BYTES,
            minimum=1,
            maximum=MAX_EVENT_CONTENT_BYTES,
        ),
        max_log_events_in_evidence=limits_table.integer(
            "max_log_events_in_evidence",
            MAX_RUNTIME_LOG_EVENTS,
            minimum=1,
            maximum=MAX_RUNTIME_LOG_EVENTS,
        ),
        log_page_size=limits_table.integer("log_page_size", 1000, minimum=1, maximum=100_000),
    )
    limits_table.finish()

    evidence_table = top.table("evidence")
    evidence = EvidenceConfig(
        batching=evidence_table.boolean("batching", True),
        max_batch=evidence_table.integer("max_batch", 256, minimum=1, maximum=1 << 16),
        signing_percent=evidence_table.integer("signing_percent", 60, minimum=1, maximum=100),
    )
    evidence_table.finish()
    pipeline_table = top.table("pipeline")
    pipeline = PipelineConfig(
        allowed_uids=frozenset(
            pipeline_table.integer_list("allowed_uids", minimum=0, maximum=MAX_ID)
        ),
        allowed_gids=frozenset(
            pipeline_table.integer_list("allowed_gids", minimum=0, maximum=MAX_ID)
        ),
    )
    pipeline_table.finish()
    metrics_table = top.table("metrics")
    metrics = MetricsConfig(address=metrics_table.text("address"))
    metrics_table.finish()
    if metrics.address is not None:
        try:
            parse_metrics_address(metrics.address)
        except MetricsAddressError as err:
            raise ConfigError(f"config.metrics.address: {err.message}") from err
    push: PushConfig | None = None
    if top.has("push"):
        push_table = top.table("push")
        verifier = push_table.require_str("verifier")
        host, sep, port = verifier.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"config.push.verifier {verifier!r} is not HOST:PORT")
        name = push_table.require_str("name")
        if not _PUSH_NAME.fullmatch(name):
            raise ConfigError("config.push.name must be 1 to 200 characters of [A-Za-z0-9._-]")
        push = PushConfig(
            verifier=verifier,
            name=name,
            cert=path_of(push_table.require_str("cert")),
            key=path_of(push_table.require_str("key")),
            ca=path_of(push_table.require_str("ca")),
            server_name=push_table.text("server_name") or None,
            interval_s=push_table.integer("interval_s", 60, minimum=1, maximum=86400),
        )
        push_table.finish()
    if (pipeline.allowed_uids or pipeline.allowed_gids) and not socket_text:
        # A security setting that can have no effect is a mistake, not a default.
        raise ConfigError(
            "config.pipeline.allowed_uids and allowed_gids apply to the Unix socket, "
            "and config.listen.unix_socket is empty"
        )
    top.finish()

    return AgentConfig(
        state_dir=state_dir,
        log_level=log_level,
        tee=TeeConfig(
            backend=backend,
            simulated=SimulatedMeasurementsConfig(simulated),
            vmpl=vmpl,
            quote_latency_ms=quote_latency_ms,
        ),
        listen=ListenConfig(
            unix_socket=path_of(socket_text) if socket_text else None,
            unix_socket_mode=socket_mode,
            tcp_address=tcp_address,
            tls=tls,
        ),
        artifact_roots=roots,
        limits=limits,
        evidence=evidence,
        pipeline=pipeline,
        metrics=metrics,
        push=push,
    )


def _check_address(address: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"config.listen.tcp_address {address!r} is not HOST:PORT")
