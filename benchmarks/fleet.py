"""The verifier service at saturation: appraisals per second per verifier core, and failover.

N simulated agents (half TDX, half SEV-SNP) are registered with an interval of
1 ms, so every agent is always due and the replicas pull as fast as they can.
For each backend (SQLite, PostgreSQL), one replica and then two replicas run for
the window; the appraisals stored in it are counted, and the replicas' CPU
time (user + system, from /proc) is read around it. The baseline, in the same
run, is ``attestd.verifier.appraise`` in this process on evidence fetched from
the same agents: what one core does with no network, database or scheduling,
per second of this thread's CPU time (as the replicas' rate is per CPU second,
so that a machine busy with other work slows neither side more than the other).
Last, one of the two replicas is SIGKILLed and the time until the other has
appraised every agent again is the failover time.

    make bench-fleet
    python benchmarks/fleet.py --agents 8 --duration 10 --backends sqlite

Each figure is the median of ``--repeats`` windows. The last line is one JSON
object: ``appraisals_per_s_per_core`` (the best backend, one replica),
``in_process_appraisals_per_s``, ``per_core_over_in_process``,
``two_replica_scaling`` (two replicas' throughput over one's, per backend and the
best), ``lease_failover_s`` (the worst backend) and ``lease_s``. The simulated
agents run on the same machine, so their CPU is measured too:
``verifier_cpu_ms_per_appraisal`` and ``agents_cpu_ms_per_appraisal`` (one
replica, the best backend) and, from them, ``two_replica_scaling_cpu_bound``, the
most two replicas could scale on this machine's cores with those costs: a
yardstick for ``two_replica_scaling``, not a replacement for it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.harness and helpers

from attestd.verifier import appraise, load_policy
from attestd.verifier.service.store import Store
from tests.harness import AgentProcess
from tests.verifier.service.fleet import VerifierProcess, policy_for, service_pki, spec_for
from tests.verifier.service.postgres import fresh_database, throwaway_cluster

LEASE_S = 3
WARM_UP_S = 2.0
#: Pieces of evidence per repeat of the in-process baseline: about a CPU second's worth,
#: so that one moment of the machine does not decide it (60 read anywhere from 600 to
#: 900 per CPU second from run to run).
IN_PROCESS_COUNT = 400


@dataclass(frozen=True)
class Window:
    appraisals: int
    wall_s: float
    cpu_s: float
    #: The simulated agents' CPU in the window: they share this machine's cores.
    agents_cpu_s: float

    @property
    def per_s(self) -> float:
        return self.appraisals / self.wall_s

    @property
    def per_cpu_s(self) -> float:
        return self.appraisals / self.cpu_s if self.cpu_s else 0.0


def _cpu(processes: list[VerifierProcess] | list[AgentProcess]) -> float:
    total = 0.0
    for process in processes:
        assert process.process is not None
        times = psutil.Process(process.process.pid).cpu_times()
        total += times.user + times.system
    return total


def _window(
    store: Store, replicas: list[VerifierProcess], agents: list[AgentProcess], duration: float
) -> Window:
    began, cpu_before, agents_before = time.time(), _cpu(replicas), _cpu(agents)
    time.sleep(duration)
    ended, cpu_after, agents_after = time.time(), _cpu(replicas), _cpu(agents)
    done = [r for r in store.all_results() if r.started_at >= began and r.appraised_at <= ended]
    assert all(r.status == "warning" for r in done), {r.reason for r in done}
    return Window(len(done), ended - began, cpu_after - cpu_before, agents_after - agents_before)


@contextlib.contextmanager
def _database(backend: str, work: Path) -> Iterator[Iterator[str]]:
    """Fresh database URLs on ``backend``, one per run."""
    if backend == "sqlite":

        def files() -> Iterator[str]:
            for i in range(1000):
                yield f"sqlite:///{work / f'fleet{i}.db'}"

        yield files()
        return
    with throwaway_cluster() as cluster:

        def databases() -> Iterator[str]:
            while True:
                yield fresh_database(cluster)

        yield databases()


def _run(
    url: str,
    work: Path,
    pki: Path,
    agents: list[AgentProcess],
    replicas_n: int,
    args: argparse.Namespace,
) -> tuple[list[Window], float | None]:
    store = Store.open(url, now=time.time())
    for i, agent in enumerate(agents):
        store.add_agent(spec_for(agent, f"agent-{i}", interval_s=0.001), now=time.time())
    replicas = [
        VerifierProcess(work / "v", url, pki, replica_id=f"replica-{i}", lease_s=LEASE_S)
        for i in range(replicas_n)
    ]
    failover: float | None = None
    try:
        for replica in replicas:
            replica.start()
        time.sleep(WARM_UP_S)
        windows = [_window(store, replicas, agents, args.duration) for _ in range(args.repeats)]
        if replicas_n == 2:
            replicas[0].kill()
            killed = time.time()
            names = {f"agent-{i}" for i in range(len(agents))}
            while True:
                again = {
                    r.agent_name
                    for r in store.all_results()
                    if r.started_at > killed and r.replica == "replica-1"
                }
                if again == names:
                    failover = time.time() - killed
                    break
                if time.time() - killed > 10 * LEASE_S:
                    raise RuntimeError("the surviving replica did not take over")
                time.sleep(0.05)
    finally:
        for replica in replicas:
            if replica.process is not None:
                replica.stop()
        store.close()
    return windows, failover


def _in_process_rate(agents: list[AgentProcess], count: int, repeats: int) -> float:
    """Appraisals per second of ``appraise()`` here, on fresh evidence from the same agents.

    Each repeat appraises pieces of evidence it has not seen, as the service does:
    appraising the same bytes again would measure the verifier's caches instead.
    Timed in this thread's CPU seconds, like the replicas': on a loaded machine wall
    time would count other processes' turns on the core too, and flatter the service.
    """
    policies = [load_policy(policy_for(agent)) for agent in agents]
    rates = []
    for _ in range(repeats):
        items = []
        for i in range(count):
            nonce = os.urandom(32)
            with agents[i % len(agents)].verifier() as client:
                items.append((client.evidence(nonce), nonce, policies[i % len(agents)]))
        began = time.thread_time()
        for evidence, nonce, policy in items:
            appraise(evidence, nonce=nonce, policy=policy)
        rates.append(len(items) / (time.thread_time() - began))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per window")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    rows: list[tuple[str, int, Window]] = []
    scaling: dict[str, float] = {}
    failovers: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="attestd-bench-fleet-") as tmp:
        work = Path(tmp)
        pki = service_pki(work / "pki")
        agents = [
            AgentProcess(
                work / f"agent{i}",
                tee=("simulated-tdx", "simulated-snp")[i % 2],
                log_level="info",
            )
            for i in range(args.agents)
        ]
        try:
            for agent in agents:
                agent.start()
            baseline = _in_process_rate(agents, IN_PROCESS_COUNT, 3)
            for backend in args.backends.split(","):
                with _database(backend, work) as urls:
                    medians = {}
                    for replicas_n in (1, 2):
                        windows, failover = _run(next(urls), work, pki, agents, replicas_n, args)
                        best = sorted(windows, key=lambda w: w.per_s)[len(windows) // 2]
                        rows.append((backend, replicas_n, best))
                        medians[replicas_n] = statistics.median(w.per_s for w in windows)
                        if failover is not None:
                            failovers[backend] = failover
                    scaling[backend] = medians[2] / medians[1]
        finally:
            for agent in agents:
                if agent.process is not None:
                    agent.stop()

    print(f"{'backend':<11} {'replicas':>8} {'appraisals':>10} {'per s':>8} {'CPU s':>7} "
          f"{'per CPU s':>9} {'agents CPU s':>12}")  # fmt: skip
    for backend, replicas_n, window in rows:
        print(f"{backend:<11} {replicas_n:>8} {window.appraisals:>10} {window.per_s:>8.1f} "
              f"{window.cpu_s:>7.2f} {window.per_cpu_s:>9.1f} "
              f"{window.agents_cpu_s:>12.2f}")  # fmt: skip
    print(f"{'in-process appraise() (baseline), one core':<44} {baseline:>8.1f} per CPU s")
    for backend, seconds in failovers.items():
        print(f"failover ({backend}): {seconds:.2f} s (lease {LEASE_S} s)")
    per_core = max(w.per_cpu_s for _, n, w in rows if n == 1)
    # Not a result, a yardstick for two_replica_scaling: the agents run on the same cores
    # as the replicas. With r and a the replicas' and the agents' CPU seconds per
    # appraisal (one replica, best backend), one replica can do at most min(1/r, C/(r+a))
    # per second and two at most min(2/r, C/(r+a)) on C cores, however good the service.
    one = max((w for _, n, w in rows if n == 1), key=lambda w: w.per_cpu_s)
    r, a, cores = one.cpu_s / one.appraisals, one.agents_cpu_s / one.appraisals, os.cpu_count() or 1
    bound = min(2 / r, cores / (r + a)) / min(1 / r, cores / (r + a))
    print(f"CPU per appraisal (1 replica): verifier {1e3 * r:.2f} ms, agents {1e3 * a:.2f} ms; "
          f"on {cores} shared cores two replicas can scale at most {bound:.2f}x")  # fmt: skip
    print(
        json.dumps(
            {
                "appraisals_per_s_per_core": round(per_core, 1),
                "in_process_appraisals_per_s": round(baseline, 1),
                "per_core_over_in_process": round(per_core / baseline, 3),
                "two_replica_scaling": round(max(scaling.values()), 3),
                "two_replica_scaling_by_backend": {k: round(v, 3) for k, v in scaling.items()},
                "lease_failover_s": round(max(failovers.values()), 2),
                "lease_s": LEASE_S,
                "verifier_cpu_ms_per_appraisal": round(1e3 * r, 2),
                "agents_cpu_ms_per_appraisal": round(1e3 * a, 2),
                "two_replica_scaling_cpu_bound": round(bound, 3),
                "agents": args.agents,
                "cores": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
