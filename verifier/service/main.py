"""``attestd-verifier``: the verifier service daemon.

    attestd-verifier --config /etc/attestd/verifier.toml

Opens (and migrates) the database, serves ``attestd.verifier.v1`` over mutual
TLS, optionally ``/metrics``, and appraises every due agent until SIGTERM or
SIGINT; then it stops claiming, lets the pulls in flight store their results,
and exits 0. Exit 2: the configuration, the database or the extra is missing.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from attestd._files import read_regular_file
from attestd._metrics import serve_metrics
from attestd.errors import AttestdError
from attestd.verifier.service.errors import FleetExtraMissingError, ServiceConfigError

__all__ = ["main"]

_log = logging.getLogger("attestd.verifier.service")
_MAX_PEM_BYTES = 1 << 20
_MAX_PASSWORD_BYTES = 4096


def _require_fleet_extra() -> None:
    try:
        importlib.import_module("sqlalchemy")
    except ImportError:
        raise FleetExtraMissingError("sqlalchemy") from None


def _inline_client_io() -> None:
    """Have gRPC do a pull's socket and TLS work on the pulling thread itself.

    gRPC's EventEngine client (the default since 1.6x) reads and writes on its own
    threads and hands each response to the caller's: two thread switches more per
    pull, which on a busy replica cost about a fifth of the client's CPU per call.
    The poller's workers block on their calls anyway, so the older in-thread
    polling loses nothing. gRPC reads it when it is imported, so it is set only
    before that (a process that embeds the service keeps its own choice), and an
    operator's own ``GRPC_EXPERIMENTS`` wins.
    """
    if "grpc" not in sys.modules:
        os.environ.setdefault("GRPC_EXPERIMENTS", "-event_engine_client")


def run(config_path: Path, stop: threading.Event) -> None:
    """Serve until ``stop`` is set (AttestdError if the service cannot start)."""
    _require_fleet_extra()
    from attestd.verifier.ear import load_signing_key
    from attestd.verifier.metrics import VerifierMetrics
    from attestd.verifier.service.api import ApiServer, ApiSettings, TlsFiles
    from attestd.verifier.service.config import load_config
    from attestd.verifier.service.poller import Poller, PollerSettings
    from attestd.verifier.service.store import Store
    from attestd.verifier.service.webhooks import WebhookSender

    config = load_config(config_path)
    key = load_signing_key(read_regular_file(config.ear_signing_key, _MAX_PEM_BYTES, "EAR key"))
    tls = TlsFiles(
        cert=read_regular_file(config.api_cert, _MAX_PEM_BYTES, "API certificate"),
        key=read_regular_file(config.api_key, _MAX_PEM_BYTES, "API key"),
        client_ca=read_regular_file(config.api_client_ca, _MAX_PEM_BYTES, "API client CA"),
    )
    password = None
    if config.database_password_file is not None:
        raw = read_regular_file(config.database_password_file, _MAX_PASSWORD_BYTES, "DB password")
        try:
            # The file's one line; `echo` and some Secret tools add a trailing newline.
            password = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            # The bytes are not echoed: they are the secret.
            raise ServiceConfigError(
                f"{config.database_password_file}: the database password is not UTF-8"
            ) from None
    store = Store.open(config.database, now=time.time(), password=password)
    metrics = VerifierMetrics()
    metrics_server = (
        serve_metrics(config.metrics_address, metrics.registry) if config.metrics_address else None
    )
    webhooks = WebhookSender(store, config.webhooks, key, metrics)
    settings = PollerSettings(
        replica_id=config.replica_id,
        lease_s=config.lease_s,
        workers=config.workers,
        retention=config.retention,
        ear_lifetime=config.ear_lifetime,
    )
    poller = Poller(store, settings, key, metrics, on_change=webhooks.status_changed)
    api = ApiServer.start(
        store,
        ApiSettings(
            address=config.api_address,
            tls=tls,
            admin_pins=config.admin_pins,
            default_interval_s=config.default_interval_s,
        ),
        push=poller,
    )
    _log.info(
        "attestd-verifier %s: API on port %d, %s database",
        config.replica_id,
        api.port,
        store.backend.value,
    )
    poller.start()
    webhooks.start()
    try:
        stop.wait()
    finally:
        api.stop()
        poller.stop()
        webhooks.stop()
        if metrics_server is not None:
            metrics_server.close()
        store.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="attestd-verifier", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, type=Path, help="the service's TOML file")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        _log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    _inline_client_io()
    try:
        run(args.config, stop)
    except AttestdError as err:
        print(f"attestd-verifier: {err.diagnostics()}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
