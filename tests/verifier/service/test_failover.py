"""Two replicas on one PostgreSQL: one is SIGKILLed, the other takes its agents within a lease.

No agent is ever appraised by two replicas at once: every stored result's
pull (started_at .. appraised_at) is disjoint from every other of its agent.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from attestd.verifier.service.store import Store
from tests.harness import AgentProcess
from tests.verifier.service.fleet import VerifierProcess, service_pki, spec_for
from tests.verifier.service.postgres import PostgresCluster, fresh_database

pytestmark = pytest.mark.slow

LEASE_S = 3
INTERVAL_S = 1.0
SLACK_S = 3.0  # two loaded CI cores: process scheduling, not the protocol
AGENTS = 3


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[list[AgentProcess]]:
    started = [AgentProcess(tmp_path / f"agent{i}") for i in range(AGENTS)]
    for agent in started:
        agent.start()
    yield started
    for agent in started:
        agent.stop()


def test_a_killed_replicas_agents_are_appraised_again_within_one_lease(
    tmp_path: Path, postgres: PostgresCluster, agents: list[AgentProcess]
) -> None:
    url = fresh_database(postgres)
    pki = service_pki(tmp_path / "pki")
    replicas = [
        VerifierProcess(tmp_path / "v", url, pki, replica_id=name, lease_s=LEASE_S)
        for name in ("replica-a", "replica-b")
    ]
    store = Store.open(url, now=time.time())
    try:
        for i, agent in enumerate(agents):
            store.add_agent(spec_for(agent, f"gpu-{i}", interval_s=INTERVAL_S), now=time.time())
        for replica in replicas:
            replica.start()
        # Both replicas at work: wait until each has appraised something.
        deadline = time.monotonic() + 30
        while {r.replica for r in store.all_results()} != {"replica-a", "replica-b"}:
            assert time.monotonic() < deadline, "both replicas should share the fleet"
            time.sleep(0.2)
        replicas[0].kill()
        killed_at = time.time()
        bound = max(LEASE_S, INTERVAL_S) + SLACK_S
        time.sleep(bound)
        survivors_results = [r for r in store.all_results() if r.started_at > killed_at]
        appraised_again = {r.agent_name for r in survivors_results}
        assert appraised_again == {f"gpu-{i}" for i in range(AGENTS)}, (
            f"within {bound} s of the kill, only {sorted(appraised_again)} were appraised again"
        )
        assert {r.replica for r in survivors_results} == {"replica-b"}
        assert all(r.status == "warning" for r in survivors_results)
        # Never two pulls of one agent at once, by either replica, before or after the kill.
        for i in range(AGENTS):
            pulls = sorted((r.started_at, r.appraised_at) for r in store.history(f"gpu-{i}"))
            for (_, end), (start, _) in itertools.pairwise(pulls):
                assert end <= start, f"gpu-{i}: overlapping pulls {pulls}"
        assert replicas[1].stop() == 0
    finally:
        for replica in replicas:
            if replica.process is not None:
                replica.kill()
        store.close()
