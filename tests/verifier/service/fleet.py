"""Helpers for the verifier service's tests: simulated agents, their policy, an EAR key."""

from __future__ import annotations

import shutil
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attestd.verifier.service.store import AgentSpec
from tests.harness import MRTD, AgentProcess


def policy_for(agent: AgentProcess) -> Path:
    """A policy that affirms ``agent`` up to what a simulated TEE allows (a warning)."""
    root = agent.simulated_root()
    path = agent.workdir / "policy.toml"
    path.write_text(
        f'[trust]\nroot = "simulated"\nsimulated_root = "{root}"\ntee = "tdx"\n'
        f'[freshness]\nmax_age_seconds = 300\n[tdx]\nmrtd = ["{MRTD}"]\n'
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
