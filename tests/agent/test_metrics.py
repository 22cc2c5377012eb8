"""The agent's Prometheus metrics: a real agent, a known workload, a scrape over HTTP."""

from __future__ import annotations

import os
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from attestd.agent.config import parse_config
from attestd.agent.errors import ConfigError
from attestd.agent.measurement_events import ARTIFACT_DOMAIN
from attestd.agent.metrics import EVENT_KINDS, AgentMetrics, event_kind
from attestd.agent.stages import STAGE_DOMAIN
from attestd.client import AgentCallError
from attestd.evidence import LogCheckpoint
from tests.agent.test_startup import start_refused
from tests.harness import AgentProcess, free_port

RECORDS = 5
EVIDENCE = 3
MODEL_BYTES = 100_003  # not a multiple of any read or shard size


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics`` as {(name, sorted labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[AgentProcess, int]]:
    port = free_port()
    process = AgentProcess(tmp_path, extra_config=f'\n[metrics]\naddress = "127.0.0.1:{port}"\n')
    process.start()
    yield process, port
    if process.process is not None:
        assert process.stop() == 0


def test_a_known_workload_reads_back_exactly(agent: tuple[AgentProcess, int]) -> None:
    process, port = agent
    before = scrape(port)
    # Every bounded series exists at 0 before anything happened.
    for kind in EVENT_KINDS:
        assert before[("attestd_agent_events_recorded_total", (("kind", kind),))] == 0
    assert before[("attestd_agent_hashed_bytes_total", (("hasher", "cpu"),))] == 0
    assert before[("attestd_agent_quote_seconds_count", ())] == 0

    model = process.models / "model.bin"
    model.write_bytes(os.urandom(MODEL_BYTES))
    with process.pipeline() as pipeline:
        for i in range(RECORDS):
            pipeline.record("training", "step", str(i).encode())
        [artifact] = pipeline.measure([str(model)])
        with pytest.raises(AgentCallError) as refused:
            pipeline.record("attestd.stage", "forged", b"")
        assert refused.value.agent_reason == "request_invalid"
    with process.verifier() as verifier:
        for i in range(EVIDENCE):  # one at a time: each is a batch of one
            verifier.evidence(bytes([i]) * 32)
        with pytest.raises(AgentCallError) as unknown:
            verifier.evidence(b"\x09" * 32, checkpoint=LogCheckpoint(10_000, bytes(48)))
        assert unknown.value.agent_reason == "checkpoint_unknown"

    after = scrape(port)
    assert after[("attestd_agent_events_recorded_total", (("kind", "pipeline"),))] == RECORDS
    assert after[("attestd_agent_events_recorded_total", (("kind", "artifact"),))] == 1
    assert after[("attestd_agent_events_recorded_total", (("kind", "stage"),))] == 0
    assert artifact.size_bytes == MODEL_BYTES
    assert after[("attestd_agent_hashed_bytes_total", (("hasher", "cpu"),))] == MODEL_BYTES
    assert after[("attestd_agent_hashed_bytes_total", (("hasher", "gpu"),))] == 0
    refusals = {
        labels: value
        for (name, labels), value in after.items()
        if name == "attestd_agent_refusals_total"
    }
    assert refusals == {
        (("reason", "request_invalid"), ("rpc", "RecordEvent")): 1,
        (("reason", "checkpoint_unknown"), ("rpc", "GetEvidence")): 1,
    }
    # The refused GetEvidence never reached a batch: three quotes, three batches of one.
    assert after[("attestd_agent_quote_seconds_count", ())] == EVIDENCE
    assert after[("attestd_agent_quote_seconds_sum", ())] > 0
    assert after[("attestd_agent_evidence_batch_size_count", ())] == EVIDENCE
    assert after[("attestd_agent_evidence_batch_size_sum", ())] == EVIDENCE
    assert after[("attestd_agent_evidence_batch_size_bucket", (("le", "1.0"),))] == EVIDENCE
    assert after[("attestd_agent_evidence_seconds_count", ())] == EVIDENCE
    # Evidence waits for its quote, so it takes at least as long in total.
    assert (
        after[("attestd_agent_evidence_seconds_sum", ())]
        >= after[("attestd_agent_quote_seconds_sum", ())]
    )
    assert after[("attestd_agent_evidence_seconds_bucket", (("le", "+Inf"),))] == EVIDENCE


def test_a_metrics_address_in_use_stops_the_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = AgentProcess(tmp_path, extra_config=f'[metrics]\naddress = "127.0.0.1:{port}"\n')
        refusal = start_refused(process)
    assert refusal["reason"] == "listen_failed"
    assert f"127.0.0.1:{port}" in str(refusal["error"])
    assert not process.socket_path.exists()  # the gRPC listener bound first was released


BASE = {"tee": {"backend": "simulated-tdx"}}


def test_metrics_is_off_unless_configured(tmp_path: Path) -> None:
    assert parse_config(BASE, base_dir=tmp_path).metrics.address is None
    config = parse_config({**BASE, "metrics": {"address": "[::1]:9464"}}, base_dir=tmp_path)
    assert config.metrics.address == "[::1]:9464"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"address": "localhost:9464"}, "config.metrics.address: metrics host"),
        ({"address": ""}, "config.metrics.address: metrics address"),
        ({"address": "127.0.0.1:70000"}, "config.metrics.address: metrics port"),
        ({"address": 9464}, "config.metrics.address"),
        ({"adress": "127.0.0.1:9464"}, "adress"),
    ],
)
def test_bad_metrics_config_is_refused_naming_the_key(
    table: dict[str, object], message: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({**BASE, "metrics": table}, base_dir=tmp_path)
    assert info.value.reason == "config_invalid"
    assert message in info.value.message


def test_event_kinds_are_bounded_whatever_the_domain() -> None:
    assert event_kind(ARTIFACT_DOMAIN) == "artifact"
    assert event_kind(STAGE_DOMAIN) == "stage"
    assert {event_kind(f"pipeline-{i}") for i in range(100)} == {"pipeline"}


def test_failed_evidence_is_not_latency() -> None:
    from concurrent.futures import Future

    metrics = AgentMetrics()
    ok: Future[bytes] = Future()
    failed: Future[bytes] = Future()
    metrics.time_evidence(ok).set_result(b"{}")
    metrics.time_evidence(failed).set_exception(RuntimeError("no quote"))
    count = metrics.registry.get_sample_value("attestd_agent_evidence_seconds_count")
    assert count == 1
