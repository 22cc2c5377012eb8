"""What durability costs: RecordEvent through the real agent against a bare fsync'd append.

An agent process on simulated TDX serves gRPC on a Unix socket. Recorders call
RecordEvent, each acknowledged only after its event is appended, fsynced and
extended into RTMR3 (group commit: concurrent calls share one write and one
fsync). The baseline is the least any durable log can do: ``os.write`` of the
same encoded line and ``os.fsync``, in this run, on the same filesystem.

- 1 recorder: the median RecordEvent latency over the median baseline append.
- 64 recorders: events per second over a timed window (median of the repeats).

    make bench-runtime-log      # or: python benchmarks/runtime_log.py --seconds 3 --repeats 3

The last line printed is one JSON object. Set BENCH_DIR to measure another filesystem.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

from attestd.agent.config import parse_config
from attestd.agent.service import Agent as ServiceAgent
from attestd.evidence import RuntimeEvent, canonical_json, event_to_json, now_rfc3339
from attestd.v1 import agent_pb2, agent_pb2_grpc

DOMAIN = "pipeline.bench"
OPERATION = "step"
CONTENT = b'{"loss": 0.125, "epoch": 3}'


class Agent:
    """One attestd process on simulated TDX, serving only its Unix socket."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.socket = workdir / "attestd.sock"
        self.state_dir = workdir / "state"
        config = workdir / "attestd.toml"
        config.write_text(
            f'[agent]\nstate_dir = "{self.state_dir}"\nlog_level = "warning"\n\n'
            f'[tee]\nbackend = "simulated-tdx"\n\n[listen]\nunix_socket = "{self.socket}"\n'
        )
        self._log = open(workdir / "agent.log", "wb")  # noqa: SIM115 - the child's, closed in stop
        self.process = subprocess.Popen(
            [sys.executable, "-m", "attestd.agent.main", "--config", str(config)],
            stdout=self._log,
            stderr=self._log,
        )
        deadline = time.monotonic() + 60
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((workdir / "agent.log").read_text())
            time.sleep(0.05)

    def events(self) -> int:
        """Events in the agent's log file (lines after the header)."""
        return (self.state_dir / "runtime-log.jsonl").read_bytes().count(b"\n") - 1

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)
        self._log.close()


def _request(name: str, i: int) -> agent_pb2.RecordEventRequest:
    return agent_pb2.RecordEventRequest(domain=DOMAIN, operation=OPERATION, content=CONTENT)


async def _single_caller_latencies(socket: Path, calls: int, *, record: bool) -> list[float]:
    """One caller's latencies: RecordEvent, or (``record=False``) GetAgentInfo, gRPC's floor."""
    async with grpc.aio.insecure_channel(f"unix:{socket}") as channel:
        stub = agent_pb2_grpc.AgentStub(channel)  # type: ignore[no-untyped-call]

        async def call(i: int) -> None:
            if record:
                await stub.RecordEvent(_request("single", i))
            else:
                await stub.GetAgentInfo(agent_pb2.GetAgentInfoRequest())

        for i in range(20):  # warm the channel and the agent's threads
            await call(i)
        latencies = []
        for i in range(calls):
            start = time.perf_counter()
            await call(i)
            latencies.append(time.perf_counter() - start)
        return latencies


async def _concurrent_rate(socket: Path, recorders: int, seconds: float) -> float:
    """Events per second acknowledged by ``recorders`` concurrent callers, each on its channel."""
    channels = [grpc.aio.insecure_channel(f"unix:{socket}") for _ in range(recorders)]
    stubs = [agent_pb2_grpc.AgentStub(c) for c in channels]  # type: ignore[no-untyped-call]
    await asyncio.gather(*(s.RecordEvent(_request("warm", 0)) for s in stubs))
    counts = [0] * recorders
    stop_at = time.perf_counter() + seconds

    async def record(n: int) -> None:
        while time.perf_counter() < stop_at:
            await stubs[n].RecordEvent(_request(f"r{n}", counts[n]))
            counts[n] += 1

    start = time.perf_counter()
    await asyncio.gather(*(record(n) for n in range(recorders)))
    elapsed = time.perf_counter() - start
    for channel in channels:
        await channel.close()
    return sum(counts) / elapsed


def _baseline_latencies(directory: Path, calls: int) -> list[float]:
    """A bare durable append: os.write of one encoded event line, then os.fsync."""
    event = RuntimeEvent(0, DOMAIN, OPERATION, CONTENT, now_rfc3339())
    line = canonical_json(event_to_json(event)) + b"\n"
    fd = os.open(directory / "baseline.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    latencies = []
    try:
        for _ in range(calls):
            start = time.perf_counter()
            os.write(fd, line)
            os.fsync(fd)
            latencies.append(time.perf_counter() - start)
    finally:
        os.close(fd)
    return latencies


def _in_process_latencies(directory: Path, calls: int) -> list[float]:
    """Agent.record_event called directly, without gRPC: what the record path itself costs."""
    config = parse_config(
        {"agent": {"state_dir": "state"}, "tee": {"backend": "simulated-tdx"}}, base_dir=directory
    )
    agent = ServiceAgent.open(config)
    latencies = []
    try:
        for _ in range(calls):
            start = time.perf_counter()
            agent.record_event(DOMAIN, OPERATION, CONTENT)
            latencies.append(time.perf_counter() - start)
    finally:
        agent.close()
    return latencies


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="single-recorder calls per repeat")
    parser.add_argument("--recorders", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0, help="concurrent window per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    single: list[float] = []  # per-repeat medians, seconds
    baseline: list[float] = []
    in_process: list[float] = []  # Agent.record_event without gRPC
    floor: list[float] = []  # GetAgentInfo: what any call through gRPC costs
    rates: list[float] = []
    cpu: list[float] = []  # the agent's CPU seconds per event with all recorders at once
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
            workdir = Path(tmp)
            agent = Agent(workdir)
            try:
                # Interleaved, so that load from elsewhere on the machine hits both alike.
                baseline.append(statistics.median(_baseline_latencies(workdir, args.calls)))
                in_process.append(
                    statistics.median(_in_process_latencies(workdir / "direct", args.calls))
                )
                single.append(
                    statistics.median(
                        asyncio.run(_single_caller_latencies(agent.socket, args.calls, record=True))
                    )
                )
                floor.append(
                    statistics.median(
                        asyncio.run(
                            _single_caller_latencies(agent.socket, args.calls, record=False)
                        )
                    )
                )
                cpu_before, logged_before = _cpu_seconds(agent.process.pid), agent.events()
                rates.append(
                    asyncio.run(_concurrent_rate(agent.socket, args.recorders, args.seconds))
                )
                cpu.append(
                    (_cpu_seconds(agent.process.pid) - cpu_before)
                    / (agent.events() - logged_before)
                )
            finally:
                agent.stop()
            events_logged = agent.events()

    single_us = statistics.median(single) * 1e6
    baseline_us = statistics.median(baseline) * 1e6
    rate = statistics.median(rates)
    floor_us = statistics.median(floor) * 1e6
    in_process_us = statistics.median(in_process) * 1e6
    cpu_us = statistics.median(cpu) * 1e6
    print(f"{'path':<46}{'median µs/event':>16}{'events/s':>12}")
    rows = [
        ("baseline: write+fsync, 1 writer", baseline_us, 1e6 / baseline_us),
        ("attestd record path in process, no gRPC", in_process_us, 1e6 / in_process_us),
        ("gRPC floor: GetAgentInfo, 1 caller", floor_us, 1e6 / floor_us),
        ("attestd RecordEvent over gRPC, 1 recorder", single_us, 1e6 / single_us),
        (f"attestd RecordEvent over gRPC, {args.recorders} recorders", 1e6 / rate, rate),
    ]
    for label, us, per_s in rows:
        print(f"{label:<46}{us:>16.1f}{per_s:>12.0f}")
    print(
        json.dumps(
            {
                "benchmark": "runtime_log",
                "recorders": args.recorders,
                "repeats": args.repeats,
                f"events_per_s_{args.recorders}": round(rate),
                "single_recorder_over_fsync_baseline": round(single_us / baseline_us, 2),
                "single_recorder_us": round(single_us, 1),
                "fsync_baseline_us": round(baseline_us, 1),
                "fsync_baseline_events_per_s": round(1e6 / baseline_us),
                "in_process_record_us": round(in_process_us, 1),
                "in_process_over_fsync_baseline": round(in_process_us / baseline_us, 2),
                "grpc_floor_us": round(floor_us, 1),
                "single_recorder_over_grpc_floor": round(single_us / floor_us, 2),
                f"agent_cpu_us_per_event_{args.recorders}": round(cpu_us, 1),
                "events_logged_last_repeat": events_logged,
                "cpus": os.cpu_count(),
                "load_average_1m": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
