"""Helpers for the verifier service's tests: simulated agents, their policy, an EAR key."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attestd.verifier.service.roles import certificate_pin
from attestd.verifier.service.store import AgentSpec
from tests.agent.pki import write_pki
from tests.harness import MRTD, SNP_MEASUREMENT, AgentProcess, ChildDaemon, free_port, port_open


def policy_for(agent: AgentProcess) -> Path:
    """A policy that affirms ``agent`` up to what a simulated TEE allows (a warning)."""
    root = agent.simulated_root()
    if agent.tee == "simulated-snp":
        reference = f'tee = "sev-snp"\n[snp]\nmeasurement = ["{SNP_MEASUREMENT}"]\n'
    else:
        reference = f'tee = "tdx"\n[tdx]\nmrtd = ["{MRTD}"]\n'
    path = agent.workdir / "policy.toml"
    path.write_text(
        f'[freshness]\nmax_age_seconds = 300\n[trust]\nroot = "simulated"\n'
        f'simulated_root = "{root}"\n{reference}'
    )
    return path


def spec_for(agent: AgentProcess, name: str, interval_s: float = 0.05) -> AgentSpec:
    return AgentSpec(
        name=name,
        address=f"127.0.0.1:{agent.port}",
        cert_path=str(agent.tls / "client.pem"),
        key_path=str(agent.tls / "client.key"),
        ca_path=str(agent.tls / "ca.pem"),
        server_name="localhost",
        policy_path=str(policy_for(agent)),
        interval_s=interval_s,
    )


def ear_key_pem(path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def snapshot_state(agent: AgentProcess, into: Path) -> None:
    """Copy the agent's state directory (its log and simulated registers), as a backup would."""
    # Sockets are not state (and cannot be copied).
    shutil.copytree(agent.state_dir, into, ignore=shutil.ignore_patterns("*.sock"))


def restore_state(agent: AgentProcess, snapshot: Path) -> None:
    """Roll the (stopped) agent's state back to ``snapshot``."""
    shutil.rmtree(agent.state_dir)
    shutil.copytree(snapshot, agent.state_dir)


@dataclass
class VerifierProcess(ChildDaemon):
    """One ``attestd-verifier`` process; the service PKI and EAR key are shared by replicas."""

    workdir: Path
    database: str
    pki: Path
    replica_id: str = "replica-a"
    lease_s: int = 5
    default_interval_s: int = 1
    webhook_urls: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def ear_key(self) -> Path:
        return self.pki / "ear.key"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.replica_id}.log"

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        admin_pin = certificate_pin((self.pki / "admin.pem").read_bytes())
        urls = ", ".join(f'"{url}"' for url in self.webhook_urls)
        path = self.workdir / f"{self.replica_id}.toml"
        path.write_text(
            f"""[service]
database = "{self.database}"
replica_id = "{self.replica_id}"
lease_s = {self.lease_s}
default_interval_s = {self.default_interval_s}
ear_signing_key = "{self.ear_key}"

[api]
address = "127.0.0.1:{self.port}"
cert = "{self.pki / "server.pem"}"
key = "{self.pki / "server.key"}"
client_ca = "{self.pki / "ca.pem"}"
admin_pins = ["{admin_pin}"]

[metrics]
address = "127.0.0.1:{self.metrics_port}"

[webhooks]
urls = [{urls}]
"""
        )
        return path

    def start(self, timeout: float = 30) -> None:
        config = self.write_config()
        self._spawn(
            "verifier",
            "attestd.verifier.service.main",
            config,
            self.log_path,
            lambda: port_open(self.port),
            timeout,
        )

    def connection(self, who: str = "admin") -> list[str]:
        """``attestctl fleet`` options reaching this service as ``who`` (admin or reader)."""
        pki = self.pki
        return [
            "--verifier", f"127.0.0.1:{self.port}", "--server-name", "localhost",
            "--cert", str(pki / f"{who}.pem"), "--key", str(pki / f"{who}.key"),
            "--ca", str(pki / "ca.pem"),
        ]  # fmt: skip


def service_pki(directory: Path) -> Path:
    """The service's PKI: ca.pem, server.pem, and two clients, ``admin`` (pinned) and
    ``reader`` (a relying party: a client the service accepts, but not an admin)."""
    write_pki(directory, clients={"admin": None, "reader": None})
    ear_key_pem(directory / "ear.key")
    return directory
