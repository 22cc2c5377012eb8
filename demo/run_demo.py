"""The end-to-end demo behind `make demo`.

1. Starts `attestd` on the simulated TDX backend with a temporary state directory.
2. A pipeline step (demo/pipeline_step.py) measures a small model directory and
   records events over the agent's Unix socket.
3. `attestctl appraise` fetches evidence over mutual TLS with a fresh nonce and
   appraises it against a policy whose reference values come from elsewhere:
   the MRTD from the TD's configuration, the model digest from the
   `model_signing` library itself.
4. Stops the agent; exits 0 only if every step worked and the result is affirming.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
# The simulated TD's launch and boot measurements, as an operator's image build
# would publish them: the agent's config sets them, the policy expects them.
REFERENCE = {
    "mr_td": "a1" * 48,
    "rtmr0": "b0" * 48,
    "rtmr1": "b1" * 48,
    "rtmr2": "b2" * 48,
}


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def toml_table(values: dict[str, str]) -> str:
    return "\n".join(f'{key} = "{value}"' for key, value in values.items())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def make_model(directory: Path) -> None:
    directory.mkdir(parents=True)
    (directory / "config.json").write_text('{"architectures": ["DemoForCausalLM"], "hidden": 64}\n')
    (directory / "tokenizer.json").write_text('{"version": "1.0", "vocab": {"<s>": 0}}\n')
    weights = directory / "weights"
    weights.mkdir()
    for shard in range(2):
        (weights / f"model-{shard:05d}-of-00002.safetensors").write_bytes(os.urandom(2 << 20))


def reference_digest(model: Path) -> str:
    """The model's digest as the OpenSSF model_signing library computes it, independently."""
    import hashlib

    from model_signing import hashing

    manifest = hashing.Config().use_file_serialization(hashing_algorithm="sha256").hash(model)
    hasher = hashlib.sha256()
    for descriptor in manifest.resource_descriptors():
        hasher.update(descriptor.digest.digest_value)
    return hasher.hexdigest()


def wait_for_socket(path: Path, agent: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if agent.poll() is not None:
            raise SystemExit(f"demo: the agent exited early with status {agent.returncode}")
        if path.exists():
            return
        time.sleep(0.05)
    raise SystemExit("demo: the agent did not open its socket in time")


def run(*args: str | Path) -> None:
    completed = subprocess.run([str(a) for a in args], check=False)
    if completed.returncode != 0:
        raise SystemExit(
            f"demo: {Path(str(args[0])).name} failed with status {completed.returncode}"
        )


def main() -> int:
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="attestd-demo-"))
    agent: subprocess.Popen[bytes] | None = None
    try:
        step("preparing a model, a TLS PKI for the verifier link, and the agent's config")
        model = work / "models" / "demo-model"
        make_model(model)
        run(BIN / "attestctl", "dev-pki", work / "tls")
        port = free_port()
        state = work / "state"
        sock = work / "run" / "attestd.sock"
        config = work / "attestd.toml"
        config.write_text(
            f"""[agent]
state_dir = "{state}"

[tee]
backend = "simulated-tdx"

[tee.simulated]
{toml_table(REFERENCE)}

[listen]
unix_socket = "{sock}"
tcp_address = "127.0.0.1:{port}"

[listen.tls]
cert = "{work / "tls" / "server.pem"}"
key = "{work / "tls" / "server.key"}"
client_ca = "{work / "tls" / "ca.pem"}"

[artifacts]
roots = ["{work / "models"}"]
"""
        )

        step("starting attestd on the SIMULATED TDX backend")
        with open(work / "agent.log", "wb") as agent_log:
            agent = subprocess.Popen(
                [str(BIN / "attestd"), "--config", str(config)], stderr=agent_log
            )
        wait_for_socket(sock, agent)
        run(BIN / "attestctl", "info", "--socket", sock)

        step("pipeline step: measure the model and record events over the Unix socket")
        run(sys.executable, HERE / "pipeline_step.py", "--socket", sock, model)

        step("verifier: export the simulated root and write the policy")
        run(
            BIN / "attestctl", "trust-root", "export", "--state-dir", state, "-o", work / "root.pem"
        )
        digest = reference_digest(model)
        print(f"reference digest from model_signing: {digest}")
        policy = work / "policy.toml"
        policy.write_text(
            f"""[trust]
root = "simulated"
simulated_root = "root.pem"

[freshness]
max_age_seconds = 120

[tdx]
mrtd = ["{REFERENCE["mr_td"]}"]
rtmr0 = ["{REFERENCE["rtmr0"]}"]
rtmr1 = ["{REFERENCE["rtmr1"]}"]
rtmr2 = ["{REFERENCE["rtmr2"]}"]

[[artifacts]]
name = "{model.resolve()}"
sha256 = "{digest}"
required = true
"""
        )

        step("verifier: appraise over mutual TLS with a fresh nonce")
        run(
            BIN / "attestctl", "appraise",
            "--agent", f"127.0.0.1:{port}", "--server-name", "localhost",
            "--cert", work / "tls" / "client.pem", "--key", work / "tls" / "client.key",
            "--ca", work / "tls" / "ca.pem",
            "--policy", policy, "--save-evidence", work / "evidence.json",
        )  # fmt: skip

        step("stopping the agent")
        agent.send_signal(signal.SIGTERM)
        if agent.wait(timeout=20) != 0:
            raise SystemExit(f"demo: the agent exited with status {agent.returncode}")
        agent = None
        print(f"\ndemo: OK in {time.monotonic() - started:.1f} s")
        return 0
    finally:
        if agent is not None:
            agent.kill()
            agent.wait()
            print(f"demo: agent log kept at {work / 'agent.log'}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
