"""`make demo-fleet`: continuous attestation of a small fleet, on one machine.

    python demo/fleet_demo.py            # PostgreSQL (Debian's postgresql package)
    python demo/fleet_demo.py --sqlite   # SQLite

Starts a database, two attestd-verifier replicas and four simulated agents (two
TDX, two SEV-SNP), registers them with `attestctl fleet add`, and shows every
agent appraised (a simulated TEE is at best `warning`: its EAR never affirms
hardware it does not have). Then it edits one agent's runtime log in its state
directory: the log no longer replays to the agent's RTMR3, the agent is
contraindicated, and the webhook fires with a signed body. Last it SIGKILLs one
replica and shows the other appraising every agent within one lease period.
The last line is `fleet demo: OK`; any other outcome exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.harness and helpers

import jwt
from cryptography.hazmat.primitives import serialization

from attestd.cli import main as attestctl
from tests.harness import AgentProcess
from tests.verifier.service.fleet import VerifierProcess, policy_for, service_pki
from tests.verifier.service.postgres import fresh_database, throwaway_cluster

LEASE_S = 3
INTERVAL_S = 1
TEES = {"tdx-0": "simulated-tdx", "tdx-1": "simulated-tdx", "snp-0": "simulated-snp",
        "snp-1": "simulated-snp"}  # fmt: skip
TAMPERED = "tdx-0"


class DemoFailed(Exception):
    pass


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def wait_for(what: str, condition: Callable[[], bool], timeout: float = 30) -> float:
    """Seconds until ``condition()`` held (DemoFailed after ``timeout``)."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            raise DemoFailed(f"timed out waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - began


def fleet(verifier: VerifierProcess, *args: str) -> tuple[int, object]:
    """``attestctl fleet ARGS`` as the admin: its exit code and its JSON output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = attestctl(["fleet", *args, *verifier.connection("admin")])
    text = out.getvalue()
    return code, json.loads(text) if text.strip() else None


def status_of(verifier: VerifierProcess, name: str) -> dict[str, object]:
    _, result = fleet(verifier, "status", name)
    assert isinstance(result, dict)
    return result


class Receiver(HTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Hook)
        self.bodies: list[bytes] = []


class Hook(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        self.server.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def database(sqlite: bool, work: Path) -> Iterator[str]:
    if sqlite:
        yield f"sqlite:///{work / 'fleet.db'}"
        return
    with throwaway_cluster() as cluster:
        yield fresh_database(cluster)


def demo(work: Path, sqlite: bool) -> None:
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    agents = {name: AgentProcess(work / name, tee=tee) for name, tee in TEES.items()}
    replicas: list[VerifierProcess] = []
    try:
        with database(sqlite, work) as url:
            step(f"database: {'SQLite' if sqlite else 'PostgreSQL (throwaway cluster)'}")
            pki = service_pki(work / "pki")
            hook = f"http://127.0.0.1:{receiver.server_port}/attestd"
            for replica_id in ("replica-a", "replica-b"):
                replica = VerifierProcess(work / "verifier", url, pki, replica_id=replica_id,
                                          lease_s=LEASE_S, webhook_urls=(hook,))  # fmt: skip
                replica.start()
                replicas.append(replica)
                print(f"  {replica_id}: attestd-verifier on port {replica.port}")
            run_fleet(agents, replicas, receiver)
    finally:
        for replica in replicas:
            if replica.process is not None:
                replica.stop()
        for agent in agents.values():
            if agent.process is not None:
                agent.stop()
        receiver.shutdown()


def run_fleet(
    agents: dict[str, AgentProcess], replicas: list[VerifierProcess], receiver: Receiver
) -> None:
    step("four simulated agents, registered with `attestctl fleet add`")
    admin = replicas[0]
    for name, agent in agents.items():
        agent.start()
        with agent.pipeline() as client:
            client.record("pipeline.train", "started", b"{}")
        code, _ = fleet(
            admin, "add", name, "--address", f"127.0.0.1:{agent.port}",
            "--agent-cert", str(agent.tls / "client.pem"),
            "--agent-key", str(agent.tls / "client.key"),
            "--agent-ca", str(agent.tls / "ca.pem"), "--agent-server-name", "localhost",
            "--policy", str(policy_for(agent)), "--interval", str(INTERVAL_S),
        )  # fmt: skip
        if code != 0:
            raise DemoFailed(f"fleet add {name} exited {code}")
        print(f"  {name:<6} {agent.tee:<14} 127.0.0.1:{agent.port}")

    step("every agent appraised (simulated TEEs: warning is the best an EAR gives them)")
    wait_for(
        "every agent appraised",
        lambda: all(status_of(admin, name)["status"] == "warning" for name in agents),
    )
    for name in agents:
        result = status_of(admin, name)
        print(f"  {name:<6} {result['status']:<9} by {result['replica']}, "
              f"{result['logLength']} events, EAR {str(result['ear'])[:24]}...")  # fmt: skip
    print(f"  summary: {fleet(admin, 'status')[1]}")

    step(f"tamper: {TAMPERED}'s runtime log edited in its state directory")
    agent = agents[TAMPERED]
    with agent.pipeline() as client:
        client.record("pipeline.train", "finished", b"{}")
    agent.stop()
    log = agent.state_dir / "runtime-log.jsonl"
    log.write_bytes(log.read_bytes().replace(b'"finished"', b'"skipped"'))
    agent.start()
    wait_for(f"{TAMPERED} contraindicated",
             lambda: status_of(admin, TAMPERED)["status"] == "contraindicated")  # fmt: skip
    result = status_of(admin, TAMPERED)
    print(f"  {TAMPERED}: {result['status']} ({result['reason']})")
    public = (
        serialization.load_pem_private_key(admin.ear_key.read_bytes(), None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )

    def webhook_fired() -> bool:
        for body in receiver.bodies:
            claims = jwt.decode(body, public, algorithms=["ES256"])
            if claims["agent"] == TAMPERED and claims["new_status"] == "contraindicated":
                print(f"  webhook: signed body for {TAMPERED}: {claims['old_status']} -> "
                      f"{claims['new_status']} ({claims['reason']})")  # fmt: skip
                return True
        return False

    wait_for("the webhook", webhook_fired)

    step("SIGKILL replica-a: replica-b takes the fleet within one lease")
    replicas[0].kill()
    killed_at = time.time()
    survivor = replicas[1]

    def all_reappraised() -> bool:
        results = [status_of(survivor, name) for name in agents]
        return all(
            r["replica"] == "replica-b" and float(str(r["appraisedAt"])) > killed_at
            for r in results
        )

    took = wait_for("replica-b to appraise every agent", all_reappraised, timeout=LEASE_S + 10)
    if took > LEASE_S + 2:
        raise DemoFailed(f"failover took {took:.1f} s, more than the {LEASE_S} s lease + 2 s")
    print(f"  every agent appraised by replica-b {took:.1f} s after the kill (lease {LEASE_S} s)")
    print(f"  summary: {fleet(survivor, 'status')[1]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="attestd-fleet-") as work:
        try:
            demo(Path(work), args.sqlite)
        except DemoFailed as err:
            print(f"fleet demo: FAILED: {err}", file=sys.stderr)
            return 1
    print("fleet demo: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
