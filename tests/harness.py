"""Start real agent processes for integration and end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
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


def port_open(port: int) -> bool:
    """Whether something listens on loopback ``port``."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


class ChildDaemon:
    """A daemon a test runs as a child process: started until it answers, then stopped or killed.

    Subclasses (dataclasses) declare ``process`` as a field and start through :meth:`_spawn`.
    """

    process: subprocess.Popen[bytes] | None = None

    def _spawn(
        self,
        what: str,
        module: str,
        config: Path,
        log_path: Path,
        ready: Callable[[], bool],
        timeout: float,
    ) -> None:
        """Run ``python -m module --config config`` (the ``what``) until ``ready()``.

        Its output goes to ``log_path``, which an early exit or a timeout shows.
        """
        log = open(log_path, "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, "--config", str(config)], stderr=log, stdout=log
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{what} exited early:\n{log_path.read_text()}")
            if ready():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{what} did not start:\n{log_path.read_text()}")

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


def serving(process: AgentProcess) -> Iterator[AgentProcess]:
    """Start ``process`` for a fixture to yield, then stop it, which must exit 0.

    @pytest.fixture(scope="module")
    def agent(tmp_path_factory):
        yield from serving(AgentProcess(tmp_path_factory.mktemp("agent")))
    """
    process.start()
    yield process
    assert process.stop() == 0


@dataclass
class AgentProcess(ChildDaemon):
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
        self._spawn(
            "agent",
            "attestd.agent.main",
            self.config_path,
            self.log_path,
            lambda: self.socket_path.exists() and port_open(self.port),
            timeout,
        )

    # kill() leaves the agent's socket behind, as after a real crash.

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
