"""Start real agent processes for integration and end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from attestd.cli.devpki import create_dev_pki
from attestd.client import AgentClient

MRTD = "5a" * 48
RTMRS = ("a0" * 48, "a1" * 48, "a2" * 48)
SNP_MEASUREMENT = "6b" * 48
#: Both simulated TEEs; end-to-end tests run on each.
SIMULATED_TEES = ("simulated-tdx", "simulated-snp")


def simulated_values(tee: str) -> str:
    """The [tee.simulated] table fixing the launch measurement of ``tee``."""
    if tee == "simulated-snp":
        return f'[tee.simulated]\nmeasurement = "{SNP_MEASUREMENT}"\n'
    rtmrs = "".join(f'rtmr{i} = "{value}"\n' for i, value in enumerate(RTMRS))
    return f'[tee.simulated]\nmr_td = "{MRTD}"\n{rtmrs}'


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class AgentProcess:
    """One `attestd` process with its own state, socket, TLS PKI and artifact root."""

    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    extra_config: str = ""
    tee: str = "simulated-tdx"
    #: Tests read the agent's debug log when one fails; benchmarks pass "info", since
    #: a debug line per request is a few per cent of a busy agent's CPU.
    log_level: str = "debug"

    @property
    def state_dir(self) -> Path:
        return self.workdir / "state"

    @property
    def socket_path(self) -> Path:
        return self.workdir / "run" / "attestd.sock"

    @property
    def models(self) -> Path:
        return self.workdir / "models"

    @property
    def tls(self) -> Path:
        return self.workdir / "tls"

    @property
    def config_path(self) -> Path:
        return self.workdir / "attestd.toml"

    @property
    def log_path(self) -> Path:
        return self.workdir / "agent.log"

    def write_config(self) -> None:
        self.models.mkdir(parents=True, exist_ok=True)
        if not (self.tls / "ca.pem").exists():
            create_dev_pki(self.tls)
        self.config_path.write_text(
            f"""[agent]
state_dir = "{self.state_dir}"
log_level = "{self.log_level}"

[tee]
backend = "{self.tee}"

{simulated_values(self.tee)}
[listen]
unix_socket = "{self.socket_path}"
tcp_address = "127.0.0.1:{self.port}"

[listen.tls]
cert = "{self.tls / "server.pem"}"
key = "{self.tls / "server.key"}"
client_ca = "{self.tls / "ca.pem"}"

[artifacts]
roots = ["{self.models}"]
{self.extra_config}
"""
        )

    def start(self, timeout: float = 30) -> None:
        self.write_config()
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            [sys.executable, "-m", "attestd.agent.main", "--config", str(self.config_path)],
            stderr=log,
            stdout=log,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"agent exited early:\n{self.log_path.read_text()}")
            if self.socket_path.exists() and self._tcp_open():
                return
            time.sleep(0.05)
        raise RuntimeError(f"agent did not start:\n{self.log_path.read_text()}")

    def _tcp_open(self) -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self.process = None
        return code

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None
        # A killed agent leaves its socket behind, as after a real crash.

    def pipeline(self) -> AgentClient:
        return AgentClient.unix(self.socket_path, timeout=30)

    def verifier(self, cert: str = "client") -> AgentClient:
        return AgentClient.mtls(
            f"127.0.0.1:{self.port}",
            cert=self.tls / f"{cert}.pem",
            key=self.tls / f"{cert}.key",
            ca=self.tls / "ca.pem",
            server_name="localhost",
            timeout=30,
        )

    def simulated_root(self) -> Path:
        """The simulated root of trust, exported as an operator would."""
        out = self.workdir / "root.pem"
        from attestd.cli import main

        assert (
            main(["trust-root", "export", "--state-dir", str(self.state_dir), "-o", str(out)]) == 0
        )
        return out
