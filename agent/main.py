"""``attestd``: the agent daemon's entry point.

    attestd --config /etc/attestd/attestd.toml [--tee simulated-tdx]

Runs until SIGTERM or SIGINT, then stops accepting calls, lets running ones
finish (a few seconds) and exits 0. Exit 1 means it could not start; the
reason is the last JSON log line.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

import attestd
from attestd.agent.config import load_config
from attestd.agent.core import Agent
from attestd.agent.logs import configure_logging
from attestd.agent.server import AgentServer
from attestd.errors import AttestdError

log = logging.getLogger("attestd")


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


async def _serve(agent: Agent, server: AgentServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging("info")
    try:
        config = load_config(args.config, tee_override=args.tee)
        configure_logging(config.log_level)
        agent = Agent.open(config)
    except AttestdError as err:
        log.error("cannot start", extra={"reason": err.reason, "error": str(err)})
        return 1
    server = AgentServer(agent, config)
    try:
        asyncio.run(_serve(agent, server))
    except AttestdError as err:
        log.error("stopped on error", extra={"reason": err.reason, "error": str(err)})
        return 1
    finally:
        agent.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
