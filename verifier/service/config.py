"""The verifier service's configuration: one strict TOML file.

    config = load_config(Path("/etc/attestd/verifier.toml"))
    config.database          # "sqlite:////var/lib/attestd-verifier/fleet.db"

Example (relative paths are taken from the file's directory)::

    [service]
    database = "postgresql://verifier@db.internal/fleet"   # default: SQLite beside this file
    database_password_file = "/run/secrets/db-password"   # read at start; never in the URL
    replica_id = "verifier-0"           # default: HOSTNAME-PID; unique per replica
    lease_s = 30                        # a dead replica's agents move on within this
    default_interval_s = 60             # for agents registered without one
    workers = 8                         # concurrent pulls per replica
    ear_signing_key = "ear.key"         # PEM, ECDSA P-256; every replica the same key
    ear_lifetime_s = 3600

    [api]
    address = "0.0.0.0:7543"
    cert = "tls/verifier.pem"
    key = "tls/verifier.key"
    client_ca = "tls/clients-ca.pem"
    admin_pins = ["sha256:3f1c..."]     # attestctl fleet pin --cert admin.pem

    [retention]
    results_per_agent = 1000
    max_age_days = 30

    [metrics]
    address = "127.0.0.1:9465"          # "" turns metrics off

    [webhooks]
    urls = ["https://alerts.internal/attestd"]
    max_queued = 1000
    max_attempts = 8

Every key is checked; a misspelt one is refused (``service_config_invalid``).
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from attestd._toml import TomlReader, load_toml
from attestd.verifier.service.errors import ServiceConfigError
from attestd.verifier.service.store import Retention

__all__ = ["ServiceConfig", "WebhookConfig", "load_config", "parse_config"]

_PIN = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class WebhookConfig:
    urls: tuple[str, ...] = ()
    max_queued: int = 1000
    max_attempts: int = 8


@dataclass(frozen=True)
class ServiceConfig:
    database: str
    #: A file holding the database password alone (one line), read at start; None: the
    #: URL's own, or libpq's PGPASSWORD / ~/.pgpass.
    database_password_file: Path | None
    replica_id: str
    lease_s: float
    default_interval_s: float
    workers: int
    ear_signing_key: Path
    ear_lifetime: timedelta
    api_address: str
    api_cert: Path
    api_key: Path
    api_client_ca: Path
    admin_pins: frozenset[str]
    retention: Retention
    metrics_address: str
    webhooks: WebhookConfig


def load_config(path: Path) -> ServiceConfig:
    """The configuration at ``path`` (ServiceConfigError naming the file and key)."""

    def error(message: str) -> ServiceConfigError:
        return ServiceConfigError(f"{path}: {message}")

    return parse_config(load_toml(path, "verifier service config", error), source=path)


def parse_config(document: dict[str, object], *, source: Path) -> ServiceConfig:
    reader = TomlReader(lambda message: ServiceConfigError(f"{source}: {message}"), source=source)
    top = reader.view(document, "")
    service = top.table("service")
    api = top.table("api")
    retention = top.table("retention")
    metrics = top.table("metrics")
    webhooks = top.table("webhooks")
    top.finish()

    database = service.text("database") or f"sqlite:///{reader.relative('fleet.db').resolve()}"
    password_file = service.text("database_password_file")
    replica_id = service.text("replica_id") or f"{socket.gethostname()}-{os.getpid()}"
    lease_s = service.integer("lease_s", 30, minimum=1, maximum=3600)
    interval = service.integer("default_interval_s", 60, minimum=1, maximum=86400)
    workers = service.integer("workers", 8, minimum=1, maximum=256)
    ear_key = reader.relative(service.require_str("ear_signing_key"))
    lifetime = service.integer("ear_lifetime_s", 3600, minimum=1, maximum=30 * 86400)
    service.finish()

    address = api.require_str("address")
    cert = reader.relative(api.require_str("cert"))
    key = reader.relative(api.require_str("key"))
    client_ca = reader.relative(api.require_str("client_ca"))
    pins = api.list_of_str("admin_pins")
    for pin in pins:
        if not _PIN.fullmatch(pin):
            reader.fail(f"api.admin_pins: {pin!r} is not sha256: and 64 lowercase hex digits")
    api.finish()

    per_agent = retention.integer("results_per_agent", 1000, minimum=1, maximum=10_000_000)
    max_age_days = retention.integer("max_age_days", 30, minimum=0, maximum=36500)
    retention.finish()

    metrics_address = metrics.text("address", "") or ""
    metrics.finish()

    urls = webhooks.list_of_str("urls")
    for url in urls:
        if not url.startswith(("https://", "http://")):
            reader.fail(f"webhooks.urls: {url!r} is not an http(s) URL")
    max_queued = webhooks.integer("max_queued", 1000, minimum=1, maximum=1_000_000)
    max_attempts = webhooks.integer("max_attempts", 8, minimum=1, maximum=100)
    webhooks.finish()

    return ServiceConfig(
        database=database,
        database_password_file=reader.relative(password_file) if password_file else None,
        replica_id=replica_id,
        lease_s=float(lease_s),
        default_interval_s=float(interval),
        workers=workers,
        ear_signing_key=ear_key,
        ear_lifetime=timedelta(seconds=lifetime),
        api_address=address,
        api_cert=cert,
        api_key=key,
        api_client_ca=client_ca,
        admin_pins=frozenset(pins),
        # 0 days: keep results by count only.
        retention=Retention(per_agent, max_age_days * 86400.0 if max_age_days else None),
        metrics_address=metrics_address,
        webhooks=WebhookConfig(tuple(urls), max_queued, max_attempts),
    )
