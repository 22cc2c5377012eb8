"""Every in-toto Statement attestd emits passes the in-toto reference validator.

The validator is ``in_toto_attestation.v1.statement.Statement.validate()`` (a dev
dependency): evidence with and without artifacts, stage provenance and stage
evidence with and without outputs, and ``attestctl measure --local -o``.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import json_format
from in_toto_attestation.v1 import statement as ita
from in_toto_attestation.v1 import statement_pb2

from attestd import cli
from attestd.evidence.provenance import StageAttestation
from attestd.evidence.subjects import AGENT_SUBJECT_PREFIX
from tests.harness import SIMULATED_TEES, AgentProcess, serving

NONCE = bytes(range(32))


def validate(statement: object) -> None:
    """Parse ``statement`` (JSON) strictly into the reference proto and validate it."""
    proto = json_format.ParseDict(statement, statement_pb2.Statement())  # type: ignore[attr-defined]
    ita.Statement.copy_from_pb(proto).validate()


def payload_of(envelope: bytes) -> dict[str, object]:
    statement: dict[str, object] = json.loads(base64.b64decode(json.loads(envelope)["payload"]))
    return statement


def subject_names(statement: dict[str, object]) -> list[str]:
    subjects = statement["subject"]
    assert isinstance(subjects, list)
    return [s["name"] for s in subjects]


def test_the_validator_refuses_an_empty_subject_list() -> None:
    # What attestd emitted before: the check below would pass vacuously without this.
    with pytest.raises(ValueError, match="subject"):
        validate({"_type": ita.STATEMENT_TYPE_URI, "subject": [], "predicateType": "x",
                  "predicate": {"a": 1}})  # fmt: skip


@pytest.fixture(scope="module", params=SIMULATED_TEES)
def agent(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentProcess]:
    process = AgentProcess(tmp_path_factory.mktemp("in-toto"), tee=request.param)
    process.write_config()
    (process.models / "base.bin").write_bytes(os.urandom(4096))
    (process.models / "tuned.bin").write_bytes(os.urandom(4096))
    yield from serving(process)


def test_every_statement_the_agent_emits_validates(agent: AgentProcess) -> None:
    with agent.verifier() as verifier:
        before = payload_of(verifier.evidence(NONCE))  # nothing measured yet
    validate(before)
    assert [n.startswith(AGENT_SUBJECT_PREFIX) for n in subject_names(before)] == [True]
    with agent.pipeline() as client:
        client.begin_stage("llm", "empty", inputs=[])
        empty = StageAttestation.from_json(client.end_stage())
        client.begin_stage("llm", "tune", inputs=[str(agent.models / "base.bin")])
        tuned = StageAttestation.from_json(client.end_stage([str(agent.models / "tuned.bin")]))
    with agent.verifier() as verifier:
        after = payload_of(verifier.evidence(NONCE))
    validate(after)
    assert not any(n.startswith(AGENT_SUBJECT_PREFIX) for n in subject_names(after))
    for attestation, outputs in ((empty, 0), (tuned, 1)):
        provenance = payload_of(attestation.provenance)
        evidence = payload_of(attestation.evidence)
        validate(provenance)
        validate(evidence)
        # The stage's provenance and its evidence name the same subjects.
        assert subject_names(provenance) == subject_names(evidence)
        agent_named = [n.startswith(AGENT_SUBJECT_PREFIX) for n in subject_names(provenance)]
        assert agent_named == ([True] if outputs == 0 else [False])


def test_measure_local_statements_validate(tmp_path: Path) -> None:
    tree = tmp_path / "model"
    tree.mkdir()
    (tree / "w.bin").write_bytes(os.urandom(1024))
    (tmp_path / "one.bin").write_bytes(b"1")
    out = tmp_path / "manifest.json"
    assert cli.main(["measure", "--local", str(tree), "-o", str(out)]) == 0
    validate(json.loads(out.read_text()))
    both = tmp_path / "both.json"
    assert (
        cli.main(["measure", "--local", str(tree), str(tmp_path / "one.bin"), "-o", str(both)]) == 0
    )
    statements = json.loads(both.read_text())
    assert len(statements) == 2
    for statement in statements:
        validate(statement)
