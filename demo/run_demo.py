"""The end-to-end demo behind `make demo`, once on each simulated TEE (TDX, then SEV-SNP).

1. Starts `attestd` on the simulated backend with a temporary state directory.
2. A pipeline step (demo/pipeline_step.py) measures a small model directory and
   records events over the agent's Unix socket.
3. `attestctl appraise` fetches evidence over mutual TLS with a fresh nonce and
   appraises it against a policy whose reference values come from elsewhere:
   the launch measurements from the guest's configuration, the model digest
   from the `model_signing` library itself.
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
# The simulated guests' launch and boot measurements, as an operator's image
# build would publish them: the agent's config sets them, the policy expects them.
REFERENCE = {
    "simulated-tdx": {
        "mr_td": "a1" * 48,
        "rtmr0": "b0" * 48,
        "rtmr1": "b1" * 48,
        "rtmr2": "b2" * 48,
    },
    "simulated-snp": {
        "measurement": "c1" * 48,
        "host_data": "d1" * 32,
    },
}
NAMES = {"simulated-tdx": "SIMULATED TDX", "simulated-snp": "SIMULATED SEV-SNP"}


def policy_reference(tee: str) -> str:
    """The policy's reference values for ``tee``: the same numbers, in the verifier's words."""
    values = REFERENCE[tee]
    if tee == "simulated-tdx":
        keys = {"mr_td": "mrtd", "rtmr0": "rtmr0", "rtmr1": "rtmr1", "rtmr2": "rtmr2"}
        table = "tdx"
    else:
        keys = {"measurement": "measurement", "host_data": "host_data"}
        table = "snp"
    lines = [f'{policy_key} = ["{values[key]}"]' for key, policy_key in keys.items()]
    return f"[{table}]\n" + "\n".join(lines)


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


def run_on(tee: str, work: Path, model: Path) -> None:
    """One agent on ``tee``: pipeline step, appraisal over mTLS, graceful stop."""
    port = free_port()
    state = work / tee / "state"
    sock = work / tee / "run" / "attestd.sock"
    config = work / tee / "attestd.toml"
    config.parent.mkdir()
    config.write_text(
        f"""[agent]
state_dir = "{state}"

[tee]
backend = "{tee}"

[tee.simulated]
{toml_table(REFERENCE[tee])}

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

    step(f"starting attestd on the {NAMES[tee]} backend")
    log_path = work / tee / "agent.log"
    with open(log_path, "wb") as agent_log:
        agent = subprocess.Popen([str(BIN / "attestd"), "--config", str(config)], stderr=agent_log)
    try:
        wait_for_socket(sock, agent)
        run(BIN / "attestctl", "info", "--socket", sock)

        step("pipeline step: measure the model and record events over the Unix socket")
        run(sys.executable, HERE / "pipeline_step.py", "--socket", sock, model)

        step("verifier: export the simulated root and write the policy")
        root = work / tee / "root.pem"
        run(BIN / "attestctl", "trust-root", "export", "--state-dir", state, "-o", root)
        digest = reference_digest(model)
        print(f"reference digest from model_signing: {digest}")
        policy = work / tee / "policy.toml"
        policy.write_text(
            f"""[trust]
root = "simulated"
simulated_root = "root.pem"

[freshness]
max_age_seconds = 120

{policy_reference(tee)}

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
            "--policy", policy, "--save-evidence", work / tee / "evidence.json",
        )  # fmt: skip

        step("stopping the agent")
        agent.send_signal(signal.SIGTERM)
        if agent.wait(timeout=20) != 0:
            raise SystemExit(f"demo: the agent exited with status {agent.returncode}")
    except BaseException:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        print(f"demo: agent log kept at {log_path}", file=sys.stderr)
        raise


def main() -> int:
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="attestd-demo-"))
    ok = False
    try:
        step("preparing a model and a TLS PKI for the verifier link")
        model = work / "models" / "demo-model"
        make_model(model)
        run(BIN / "attestctl", "dev-pki", work / "tls")
        for tee in REFERENCE:
            run_on(tee, work, model)
        ok = True
        print(f"\ndemo: OK on {' and '.join(NAMES.values())} in {time.monotonic() - started:.1f} s")
        return 0
    finally:
        if ok:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
