"""Evidence at fleet scale: batched quotes against one quote per request, with a pipeline running.

An agent process on simulated TDX whose quotes take L ms (serialized and
sleeping, like configfs-tsm) serves 200 concurrent mutual-TLS verifiers for
the run's duration while one pipeline records 20 events/s over the Unix
socket. Each L (1000 ms, 50 ms) runs twice on a fresh agent: batched (one
quote per batch, the default) and unbatched (``[evidence] batching = false``,
one quote per request). A sample of the evidence is appraised.

    make bench-evidence                                  # 30 s per run, four runs
    python benchmarks/evidence.py --duration 10 --verifiers 50

The last line is one JSON object with the figures the issue names.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.harness

from attestd.client import AgentClient
from attestd.v1 import agent_pb2, agent_pb2_grpc
from attestd.verifier import appraise, load_policy
from tests.harness import AgentProcess

PIPELINE_RATE = 20.0
"""Events per second the pipeline records, under load and idle."""

SAMPLE_PER_RUN = 10
"""Pieces of evidence appraised per run."""


@dataclass
class BenchAgent(AgentProcess):
    """An agent process with a quote latency and a batching switch."""

    quote_latency_ms: int = 0
    batching: bool = True

    def write_config(self) -> None:
        super().write_config()
        text = self.config_path.read_text()
        text = text.replace(
            "[tee.simulated]\n", f"[tee.simulated]\nquote_latency_ms = {self.quote_latency_ms}\n"
        )
        # The test harness logs at debug; an agent in service logs at the default, info.
        # At debug, gRPC logs a line for every verifier call the window's end cancels.
        text = text.replace('log_level = "debug"', 'log_level = "info"')
        text += f"\n[evidence]\nbatching = {str(self.batching).lower()}\nmax_batch = 1024\n"
        self.config_path.write_text(text)


@dataclass
class RunResult:
    latency_ms: int
    batched: bool
    completed: int
    errors: int
    evidence_ms: list[float]
    record_ms: list[float]
    records_sent: int
    records_acked: int
    records_in_log: int
    verified: int
    sampled: int
    samples: list[tuple[bytes, bytes]] = field(default_factory=list, repr=False)

    def throughput(self, duration: float) -> float:
        return self.completed / duration

    def p(self, values: list[float], q: float) -> float:
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _pipeline(socket_path: str, duration: float, out: multiprocessing.Queue[object]) -> None:
    """Record PIPELINE_RATE events/s for ``duration`` s; put (latencies ms, sent, acked)."""
    client = AgentClient.unix(socket_path, timeout=30)
    # Connect before the clock starts: a pipeline connects once, and the first call's
    # connection set-up (socket, relay, HTTP/2) is no part of recording an event.
    client.info()
    latencies: list[float] = []
    sent = acked = 0
    start = time.monotonic()
    while (now := time.monotonic()) - start < duration:
        due = start + sent / PIPELINE_RATE
        if due > now:
            time.sleep(due - now)
        sent += 1
        t0 = time.perf_counter()
        try:
            client.record("pipeline.bench", "step", b'{"loss": 0.125}')
        except Exception:
            continue
        latencies.append((time.perf_counter() - t0) * 1000)
        acked += 1
    client.close()
    out.put((latencies, sent, acked))


def _start_pipeline(
    agent: AgentProcess, duration: float
) -> tuple[multiprocessing.Process, multiprocessing.Queue[object]]:
    queue: multiprocessing.Queue[object] = multiprocessing.Queue()
    process = multiprocessing.Process(
        target=_pipeline, args=(str(agent.socket_path), duration, queue)
    )
    process.start()
    return process, queue


async def _verifiers(
    agent: AgentProcess, count: int, duration: float
) -> tuple[list[float], int, list[tuple[bytes, bytes]]]:
    """``count`` mTLS verifiers asking for evidence back to back for ``duration`` s."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(agent.tls / "ca.pem").read_bytes(),
        private_key=(agent.tls / "client.key").read_bytes(),
        certificate_chain=(agent.tls / "client.pem").read_bytes(),
    )
    latencies: list[float] = []
    samples: list[tuple[bytes, bytes]] = []
    errors = 0
    deadline = time.monotonic() + duration

    async def verifier(index: int) -> None:
        nonlocal errors
        options = [
            ("grpc.ssl_target_name_override", "localhost"),
            ("grpc.max_receive_message_length", 64 << 20),
            ("attestd.bench.verifier", index),  # a connection of its own, as a real verifier
        ]
        async with grpc.aio.secure_channel(
            f"127.0.0.1:{agent.port}", credentials, options=options
        ) as channel:
            stub = agent_pb2_grpc.AgentStub(channel)  # type: ignore[no-untyped-call]
            while time.monotonic() < deadline:
                nonce = os.urandom(32)
                t0 = time.perf_counter()
                left = deadline - time.monotonic()
                try:
                    # Whatever has not come back when the window closes is not counted.
                    response = await stub.GetEvidence(
                        agent_pb2.GetEvidenceRequest(nonce=nonce), timeout=max(0.01, left)
                    )
                except grpc.aio.AioRpcError as err:
                    if err.code() is not grpc.StatusCode.DEADLINE_EXCEEDED:
                        errors += 1
                    continue
                finished = time.monotonic()
                if finished <= deadline:  # count only what completed inside the window
                    latencies.append((time.perf_counter() - t0) * 1000)
                    if len(samples) < SAMPLE_PER_RUN:
                        samples.append((nonce, response.envelope))

    await asyncio.gather(*(verifier(i) for i in range(count)))
    return latencies, errors, samples


def _record_idle(agent: AgentProcess, duration: float) -> list[float]:
    process, queue = _start_pipeline(agent, duration)
    latencies, _, _ = queue.get()  # type: ignore[misc]
    process.join()
    return list(latencies)  # type: ignore[call-overload]


def _events_in_log(agent: AgentProcess) -> int:
    with agent.pipeline() as client:
        return int(client.info().log_length)


def _appraise(agent: AgentProcess, samples: list[tuple[bytes, bytes]]) -> int:
    policy_path = agent.workdir / "policy.toml"
    root = agent.simulated_root()
    policy_path.write_text(
        f'[trust]\nroot = "simulated"\nsimulated_root = "{root}"\n'
        "[freshness]\nmax_age_seconds = 3600\n"
    )
    policy = load_policy(policy_path)
    ok = 0
    for nonce, envelope in samples:
        result = appraise(envelope, nonce=nonce, policy=policy)
        ok += not result.failures
    return ok


def run(
    workdir: Path, latency_ms: int, batched: bool, verifiers: int, duration: float
) -> tuple[RunResult, list[float]]:
    agent = BenchAgent(workdir, quote_latency_ms=latency_ms, batching=batched)
    agent.start()
    try:
        idle = _record_idle(agent, min(5.0, duration))
        before = _events_in_log(agent)
        process, queue = _start_pipeline(agent, duration)
        latencies, errors, samples = asyncio.run(_verifiers(agent, verifiers, duration))
        record_ms, sent, acked = queue.get()  # type: ignore[misc]
        process.join()
        in_log = _events_in_log(agent) - before
        chosen = samples[:SAMPLE_PER_RUN]
        verified = _appraise(agent, chosen)
    finally:
        agent.stop()
    result = RunResult(
        latency_ms, batched, len(latencies), errors, latencies, list(record_ms),  # type: ignore[call-overload]
        int(sent), int(acked), in_log, verified, len(chosen),  # type: ignore[call-overload]
    )  # fmt: skip
    return result, idle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per run (>= 30)")
    parser.add_argument("--verifiers", type=int, default=200)
    parser.add_argument("--latencies", default="1000,50", help="quote latencies L in ms")
    args = parser.parse_args()
    results: list[RunResult] = []
    idle: list[float] = []
    with tempfile.TemporaryDirectory(prefix="attestd-bench-evidence-") as tmp:
        for latency in (int(x) for x in args.latencies.split(",")):
            for batched in (True, False):
                workdir = Path(tmp) / f"L{latency}-{'batched' if batched else 'unbatched'}"
                workdir.mkdir()
                result, idle_ms = run(workdir, latency, batched, args.verifiers, args.duration)
                results.append(result)
                idle.extend(idle_ms)
                print(
                    f"  L={latency} ms {'batched' if batched else 'unbatched'}: "
                    f"{result.completed} evidence, {result.errors} errors",
                    file=sys.stderr,
                )
    d = args.duration
    print(
        f"{args.verifiers} mTLS verifiers for {d:.0f} s per run; a pipeline recording "
        f"{PIPELINE_RATE:.0f} events/s over the Unix socket; simulated TDX"
    )
    header = (
        f"{'L ms':>6} {'mode':>10} {'evidence/s':>11} {'p50 ms':>9} {'p99 ms':>9} "
        f"{'p99/L':>6} {'rec p50':>8} {'rec p99':>8} {'lost':>5} {'verified':>9}"
    )
    print(header)
    for r in results:
        lost = r.records_sent - r.records_in_log
        print(
            f"{r.latency_ms:>6} {'batched' if r.batched else 'unbatched':>10} "
            f"{r.throughput(d):>11.1f} {statistics.median(r.evidence_ms or [0]):>9.1f} "
            f"{r.p(r.evidence_ms, 0.99):>9.1f} {r.p(r.evidence_ms, 0.99) / r.latency_ms:>6.2f} "
            f"{statistics.median(r.record_ms or [0]):>8.2f} {r.p(r.record_ms, 0.99):>8.2f} "
            f"{lost:>5} {r.verified:>4}/{r.sampled:<4}"
        )
    by = {(r.latency_ms, r.batched): r for r in results}
    idle_run = RunResult(0, True, 0, 0, [], idle, 0, 0, 0, 0, 0)
    record_idle = idle_run.p(idle, 0.99)
    record_load = max(r.p(r.record_ms, 0.99) for r in results)
    summary: dict[str, float | int | None] = {
        "batched_over_unbatched_throughput_L1000": None,
        "p99_over_quote_latency_L1000": None,
        "record_p99_ms_under_load": round(record_load, 2),
        "record_p99_ms_idle": round(record_idle, 2),
        "record_events_lost": sum(r.records_sent - r.records_in_log for r in results),
        "evidence_verified_fraction": round(
            sum(r.verified for r in results) / max(1, sum(r.sampled for r in results)), 4
        ),
        "duration_s_per_run": d,
        "verifiers": args.verifiers,
    }
    if (1000, True) in by and (1000, False) in by:
        batched, unbatched = by[(1000, True)], by[(1000, False)]
        summary["batched_over_unbatched_throughput_L1000"] = round(
            batched.throughput(d) / max(unbatched.throughput(d), 1e-9), 2
        )
        summary["p99_over_quote_latency_L1000"] = round(
            batched.p(batched.evidence_ms, 0.99) / 1000, 3
        )
    for (latency, batched_mode), r in sorted(by.items()):
        mode = "batched" if batched_mode else "unbatched"
        summary[f"evidence_per_s_L{latency}_{mode}"] = round(r.throughput(d), 2)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
