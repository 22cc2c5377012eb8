"""``attestd``: the agent daemon's entry point.

    attestd --config /etc/attestd/attestd.toml [--tee simulated-tdx]

Runs until SIGTERM or SIGINT, then stops accepting calls, lets running ones
finish (a few seconds) and exits 0. Exit 1 means it could not start; the
reason is the last JSON log line, a ``cannot start`` record.

Start-up order: configuration, then the state directory's lock (before anything
touches the state), then the TLS files, then the backend and the runtime log,
then every listener is bound, and only then does any listener serve.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from pathlib import Path

import attestd
from attestd._metrics import MetricsServer, serve_metrics
from attestd.agent.config import AgentConfig, load_config
from attestd.agent.errors import ListenError, StateDirError, StateDirLockedError
from attestd.agent.logs import configure_logging
from attestd.agent.push import Pusher
from attestd.agent.server import AgentServer
from attestd.agent.service import Agent
from attestd.agent.state_lock import StateLock
from attestd.agent.tls import ServerTls, load_server_tls
from attestd.errors import AttestdError

log = logging.getLogger("attestd")

SWITCH_INTERVAL_S = 0.0005
#: Allocations between young-generation collections (CPython's default is 700). Every
#: recorded event allocates a few dozen short-lived objects (protobuf messages, futures,
#: the event and its JSON), so at thousands of events per second the default collects
#: every few events; the objects that survive are freed by reference counting anyway.
GC_YOUNG_THRESHOLD = 10_000
"""How long a thread waiting for the GIL waits before it asks the holder for it.

The agent's threads share one GIL: the event loops (pipeline, verifiers), the
group committer, the quote and signing threads. Most of them hold it briefly
between system calls, but the signing thread holds it for as long as it may.
At Python's default of 5 ms, each time the pipeline's loop or the group
committer comes back from a system call while the signer runs, it waits up to
5 ms, and a recorded event takes several such steps. 0.5 ms bounds that wait
at a tenth, for the price of more frequent switches between busy threads.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attestd", description="attestd: the attestation agent daemon."
    )
    parser.add_argument("--config", required=True, type=Path, help="TOML configuration file")
    parser.add_argument(
        "--tee",
        help="TEE backend, overriding [tee].backend (e.g. simulated-tdx; never chosen implicitly)",
    )
    parser.add_argument("--version", action="version", version=f"attestd {attestd.__version__}")
    return parser


class _StartFailed(Exception):
    """The agent stopped before serving; the ``cannot start`` record is logged already."""


def _cannot_start(err: AttestdError) -> None:
    """The one JSON line that says why the agent did not start."""
    extra: dict[str, object] = {"reason": err.reason, "error": str(err)}
    if isinstance(err, StateDirLockedError):
        extra["holder_pid"] = err.holder_pid
    log.error("cannot start", extra=extra)


def _serve_metrics(agent: Agent, config: AgentConfig) -> MetricsServer | None:
    """The /metrics endpoint of ``[metrics] address``, if configured."""
    address = config.metrics.address
    if address is None:
        return None
    try:
        server = serve_metrics(address, agent.metrics.registry)
    except OSError as err:
        raise ListenError(f"cannot serve metrics on {address}: {err.strerror}") from err
    log.info("serving metrics", extra={"address": address, "port": server.port})
    return server


async def _serve(agent: Agent, config: AgentConfig, tls: ServerTls | None) -> None:
    server = AgentServer(agent, config, tls)
    metrics: MetricsServer | None = None
    pusher: Pusher | None = None
    try:
        # The gRPC listeners are bound first and serve last: a metrics address in
        # use stops the start before any call is answered.
        await server.bind()
        metrics = _serve_metrics(agent, config)
        await server.start()
        if config.push is not None:  # [push]: the agent calls the verifier service too
            pusher = Pusher.start(agent, config.push)
            log.info("pushing evidence", extra={"verifier": config.push.verifier})
    except AttestdError as err:
        if metrics is not None:
            metrics.close()
        await server.stop(0)
        _cannot_start(err)
        raise _StartFailed from err
    try:
        await _run_until_stopped(agent, server)
    finally:
        if pusher is not None:
            pusher.stop()
        if metrics is not None:
            metrics.close()


async def _run_until_stopped(agent: Agent, server: AgentServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    info = agent.info()
    log.info(
        "agent started",
        extra={
            "tee": str(info.tee.tee),
            "simulated": info.tee.simulated,
            "root_of_trust": info.tee.root_of_trust,
            "agent_key_id": info.key_id,
            "log_length": info.log_length,
            "serving": info.serving,
        },
    )
    if info.tee.simulated:
        log.warning("SIMULATED TEE: evidence from this agent rests on a simulated root of trust")
    if info.tee.backend.endswith("legacy-ioctl") and str(info.tee.tee) == "tdx":
        log.warning(
            "TDX without configfs-tsm: the legacy /dev/tdx_guest device gives TD reports, "
            "not quotes, so GetEvidence will fail; use Linux 6.7+ with configfs-tsm and a QGS"
        )
    await stop.wait()
    log.info("stopping")
    await server.stop()


def _open(config: AgentConfig) -> tuple[StateLock, ServerTls | None, Agent]:
    """Everything that must succeed before a listener is bound, in order."""
    lock = StateLock.acquire(config.state_dir)
    try:
        listen = config.listen
        tls = load_server_tls(listen.tls) if listen.tls and listen.tcp_address else None
        try:
            agent = Agent.open(config)
        except OSError as err:
            # Agent.open does its I/O in the state directory (backend state, runtime log).
            where = f" {err.filename}" if err.filename else ""
            raise StateDirError(f"cannot use the state directory:{where} {err.strerror}") from err
    except BaseException:
        lock.release()
        raise
    return lock, tls, agent


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    configure_logging("info")
    try:
        config = load_config(args.config, tee_override=args.tee)
        configure_logging(config.log_level)
        lock, tls, agent = _open(config)
    except AttestdError as err:
        _cannot_start(err)
        return 1
    # What startup made (modules, config, the loaded runtime log: one object per event and
    # more) lives until exit: frozen, the collector never walks it again, so a full
    # collection costs what the agent allocates while serving, not the log's length.
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    try:
        asyncio.run(_serve(agent, config, tls))
    except _StartFailed:
        return 1
    except AttestdError as err:
        log.error("stopped on error", extra={"reason": err.reason, "error": str(err)})
        return 1
    finally:
        agent.close()
        lock.release()  # last: the log is closed, another agent may have the directory
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
