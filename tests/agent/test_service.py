"""The agent's logic over a fake TEE: the log/register ordering rule, and evidence."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from attestd.agent.config import AgentConfig, parse_config
from attestd.agent.errors import (
    ArtifactNotMeasuredError,
    NotServingError,
    RequestInvalidError,
    RuntimeLogCorruptError,
)
from attestd.agent.runtime_log_store import RuntimeLogStore
from attestd.agent.service import Agent
from attestd.evidence import (
    INITIAL_LOG_HEAD,
    CcelBlob,
    RuntimeEvent,
    TeeClaims,
    event_digest,
    now_rfc3339,
    open_evidence,
    replay,
    report_data_for,
)
from attestd.tee.backend import Ccel, TeeBackend
from tests.fakes.tee import FakeRegister, FakeTeeBackend, FakeTeeError

NONCE = bytes(range(32))


@dataclass
class Setup:
    """One agent's state: config, log path and register, which outlive any one Agent."""

    config: AgentConfig
    register: FakeRegister = field(default_factory=FakeRegister)
    agents: list[Agent] = field(default_factory=list)

    @property
    def log_path(self) -> Path:
        return self.config.state_dir / "runtime-log.jsonl"

    @property
    def models(self) -> Path:
        return self.config.artifact_roots[0]

    def start(self, backend: FakeTeeBackend | None = None) -> Agent:
        """An agent process starting over the state as it is now."""
        if backend is None:
            backend = FakeTeeBackend(self.register)
        store = RuntimeLogStore.open(self.log_path)
        agent = Agent(self.config, backend, store, ec.generate_private_key(ec.SECP256R1()))
        self.agents.append(agent)
        return agent

    def stop(self, agent: Agent) -> None:
        agent.close()
        self.agents.remove(agent)


class _closing:
    """Open a store for a look, and close it again."""

    def __init__(self, path: Path) -> None:
        self._store = RuntimeLogStore.open(path)

    def __enter__(self) -> RuntimeLogStore:
        return self._store

    def __exit__(self, *exc: object) -> None:
        self._store.close()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    (tmp_path / "state").mkdir()
    (tmp_path / "models").mkdir()
    raw = {
        "agent": {"state_dir": "state"},
        "tee": {"backend": "simulated-tdx"},
        "artifacts": {"roots": ["models"]},
    }
    state = Setup(parse_config(raw, base_dir=tmp_path))
    yield state
    for agent in state.agents:
        agent.close()


def test_fake_backend_implements_the_backend_protocol() -> None:
    assert isinstance(FakeTeeBackend(), TeeBackend)


# -- record_event ---------------------------------------------------------------------


def test_record_event_appends_to_the_log_and_extends_the_register(setup: Setup) -> None:
    agent = setup.start()
    first, head1 = agent.record_event("pipeline", "stage.start", b"train")
    second, head2 = agent.record_event("pipeline", "stage.end", b"")

    assert (first.sequence, first.domain, first.operation, first.content) == (
        0,
        "pipeline",
        "stage.start",
        b"train",
    )
    assert second.sequence == 1
    assert head1 == replay([first])
    assert head2 == replay([first, second]) == setup.register.value
    assert setup.register.extensions == [event_digest(first), event_digest(second)]
    info = agent.info()
    assert (info.log_length, info.log_head, info.serving) == (2, head2, True)

    setup.stop(agent)
    with _closing(setup.log_path) as store:
        assert list(store.events()) == [first, second]


@pytest.mark.parametrize(
    "domain", ["attestd.artifact", "attestd.x", "attestd.", "ATTESTD.stage", "AttestD.artifact"]
)
def test_reserved_domain_is_refused_and_nothing_is_logged(setup: Setup, domain: str) -> None:
    agent = setup.start()
    with pytest.raises(RequestInvalidError, match="reserved"):
        agent.record_event(domain, "measured", b"{}")
    assert agent.info().log_length == 0
    assert setup.register.value == INITIAL_LOG_HEAD


def test_event_content_over_the_limit_is_refused(setup: Setup) -> None:
    agent = setup.start()
    limit = setup.config.limits.max_event_content_bytes
    with pytest.raises(RequestInvalidError, match="limit"):
        agent.record_event("pipeline", "big", bytes(limit + 1))
    assert agent.info().log_length == 0


# -- crash between append and extend ---------------------------------------------------


def test_failed_extension_stops_serving_until_a_restart_rolls_it_forward(setup: Setup) -> None:
    backend = FakeTeeBackend(setup.register)
    agent = setup.start(backend)
    first, _ = agent.record_event("pipeline", "one", b"1")
    backend.fail_next_extend = True
    with pytest.raises(FakeTeeError):
        agent.record_event("pipeline", "two", b"2")

    # The event is durable but the register is one extension behind.
    assert agent.info().log_length == 2
    assert setup.register.value == replay([first])
    assert not agent.serving
    assert "restart" in agent.serving_problem
    with pytest.raises(NotServingError):
        agent.record_event("pipeline", "three", b"3")
    with pytest.raises(NotServingError):
        agent.evidence(NONCE, [])
    assert agent.info().log_length == 2

    setup.stop(agent)
    restarted = setup.start(backend.reopen())
    assert restarted.serving, restarted.serving_problem
    assert restarted.serving_problem == ""
    with _closing(setup.log_path) as store:
        events = list(store.events())
    assert [e.operation for e in events] == ["one", "two"]
    assert setup.register.value == replay(events)

    third, head = restarted.record_event("pipeline", "three", b"3")
    assert third.sequence == 2
    assert head == setup.register.value
    restarted.evidence(NONCE, [])


# -- a register that disagrees ---------------------------------------------------------


def _assert_refuses_naming_both_heads(agent: Agent, log_head: bytes, register: bytes) -> None:
    assert not agent.serving
    assert log_head.hex() in agent.serving_problem
    assert register.hex() in agent.serving_problem
    assert not agent.info().serving
    with pytest.raises(NotServingError):
        agent.evidence(NONCE, [])
    with pytest.raises(NotServingError):
        agent.record_event("pipeline", "more", b"")


def test_register_extended_by_something_else_stops_serving(setup: Setup) -> None:
    agent = setup.start()
    agent.record_event("pipeline", "one", b"1")
    log_head = agent.info().log_head
    setup.stop(agent)

    setup.register.extend(hashlib.sha384(b"a foreign extension").digest())
    restarted = setup.start()
    _assert_refuses_naming_both_heads(restarted, log_head, setup.register.value)


def test_register_two_extensions_behind_the_log_is_not_rolled_forward(setup: Setup) -> None:
    agent = setup.start()
    agent.record_event("pipeline", "one", b"1")
    agent.record_event("pipeline", "two", b"2")
    log_head = agent.info().log_head
    setup.stop(agent)

    setup.register.value = INITIAL_LOG_HEAD  # e.g. the TD rebooted but the log was kept
    restarted = setup.start()
    _assert_refuses_naming_both_heads(restarted, log_head, INITIAL_LOG_HEAD)
    assert setup.register.value == INITIAL_LOG_HEAD  # nothing was "repaired"


def test_empty_log_against_an_extended_register_stops_serving(setup: Setup) -> None:
    setup.register.extend(hashlib.sha384(b"before the agent").digest())
    agent = setup.start()
    _assert_refuses_naming_both_heads(agent, INITIAL_LOG_HEAD, setup.register.value)


def test_backend_without_a_runtime_register_always_serves(setup: Setup) -> None:
    backend = FakeTeeBackend(setup.register, has_register=False)
    setup.register.extend(hashlib.sha384(b"irrelevant").digest())
    agent = setup.start(backend)
    assert agent.serving
    _, head = agent.record_event("pipeline", "one", b"1")
    agent.evidence(NONCE, [])
    # The head lives only in the log and the binding: no extension was attempted.
    assert head != setup.register.value


# -- artifacts and evidence ------------------------------------------------------------


def _write_model(models: Path) -> tuple[str, str]:
    model = models / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"w" * 1000)
    (model / "config.json").write_bytes(b"{}")
    single = models / "tokenizer.bin"
    single.write_bytes(b"tokens")
    return str(model.resolve()), str(single.resolve())


def test_measured_artifacts_become_the_evidence_subjects(setup: Setup) -> None:
    model, single = _write_model(setup.models)
    agent = setup.start()
    measured = agent.measure([model, single])
    assert [m.measurement.name for m in measured] == [model, single]
    assert [m.log_sequence for m in measured] == [0, 1]
    assert measured[1].measurement.digest["sha256"] == hashlib.sha256(b"tokens").hexdigest()

    _, statement = open_evidence(agent.evidence(NONCE, []))
    assert {s.name: dict(s.digest) for s in statement.subjects} == {
        m.measurement.name: dict(m.measurement.digest) for m in measured
    }

    _, only = open_evidence(agent.evidence(NONCE, [single, single]))
    assert [s.name for s in only.subjects] == [single]


def test_measured_artifacts_are_remembered_across_a_restart(setup: Setup) -> None:
    model, single = _write_model(setup.models)
    agent = setup.start()
    agent.record_event("pipeline", "stage.start", b"train")
    before = {m.measurement.name: m for m in agent.measure([model, single])}
    setup.stop(agent)

    restarted = setup.start()
    _, statement = open_evidence(restarted.evidence(NONCE, [model]))
    assert [(s.name, dict(s.digest)) for s in statement.subjects] == [
        (model, dict(before[model].measurement.digest))
    ]
    _, everything = open_evidence(restarted.evidence(NONCE, []))
    assert sorted(s.name for s in everything.subjects) == sorted([model, single])


def test_evidence_binds_nonce_log_and_register_through_the_quote(setup: Setup) -> None:
    backend = FakeTeeBackend(setup.register)
    agent = setup.start(backend)
    agent.record_event("pipeline", "one", b"1")
    _, statement = open_evidence(agent.evidence(NONCE, []))
    predicate = statement.predicate
    assert predicate.binding.nonce == NONCE
    assert predicate.binding.log_head == replay(predicate.runtime_log) == setup.register.value
    assert backend.report_data == [report_data_for(predicate.binding)]
    assert predicate.tee == TeeClaims("tdx", True, "fake-root", "fake-tdx")
    assert predicate.tee == TeeClaims.of(backend.describe())


def test_evidence_carries_what_the_backend_attests_beside_the_quote(setup: Setup) -> None:
    backend = FakeTeeBackend(setup.register)
    backend.certificates = (b"signer", b"ask", b"ark")
    backend.collateral = {"tcb_info": "{}"}
    backend.ccel = Ccel(table=b"table", log=b"log")
    agent = setup.start(backend)
    predicate = open_evidence(agent.evidence(NONCE, []))[1].predicate
    assert predicate.certificates == (b"signer", b"ask", b"ark")
    assert predicate.collateral == {"tcb_info": "{}"}
    assert predicate.ccel == CcelBlob(table=b"table", log=b"log")


def test_evidence_for_an_unmeasured_name_is_refused(setup: Setup) -> None:
    model, single = _write_model(setup.models)
    agent = setup.start()
    agent.measure([model])
    with pytest.raises(ArtifactNotMeasuredError, match=r"tokenizer\.bin"):
        agent.evidence(NONCE, [model, single])


def test_a_pipeline_event_cannot_pose_as_a_measurement(setup: Setup) -> None:
    agent = setup.start()
    agent.record_event("pipeline", "measured", b'{"name":"/srv/fake"}')
    with pytest.raises(ArtifactNotMeasuredError):
        agent.evidence(NONCE, ["/srv/fake"])


def test_an_unreadable_measurement_event_is_log_corruption(setup: Setup) -> None:
    damaged = RuntimeEvent(0, "attestd.artifact", "measured", b'{"name": "/m"}', now_rfc3339())
    with _closing(setup.log_path) as store:
        store.append(damaged)
    setup.register.extend(event_digest(damaged))
    with pytest.raises(RuntimeLogCorruptError, match="unreadable artifact measurement"):
        setup.start()
