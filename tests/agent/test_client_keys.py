"""Mutual TLS refuses verifiers whose certificate key is below the minimum strength."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from attestd.client import AgentCallError
from tests.agent.pki import write_pki
from tests.harness import AgentProcess, serving

NONCE = bytes(range(32))


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    process = AgentProcess(tmp_path_factory.mktemp("agent"))
    # Written before start, so the harness keeps this PKI instead of making its own.
    write_pki(process.tls, clients={"client": None, "rsa1024": 1024, "rsa2048": 2048})
    yield from serving(process)


@pytest.mark.parametrize("call", ["info", "evidence", "runtime_log"])
def test_an_rsa_1024_client_certificate_is_refused_with_its_reason(
    agent: AgentProcess, call: str
) -> None:
    with agent.verifier("rsa1024") as client, pytest.raises(AgentCallError) as refused:
        if call == "evidence":
            client.evidence(NONCE)
        else:
            getattr(client, call)()
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert refused.value.agent_reason == "client_key_too_weak"
    assert "1024 bits" in refused.value.details


@pytest.mark.parametrize("cert", ["rsa2048", "client"])
def test_rsa_2048_and_p256_client_certificates_are_accepted(agent: AgentProcess, cert: str) -> None:
    with agent.verifier(cert) as client:
        assert client.info().serving
        assert client.evidence(NONCE)


def test_the_refusal_is_logged(agent: AgentProcess) -> None:
    with agent.verifier("rsa1024") as client, pytest.raises(AgentCallError):
        client.info()
    log = Path(agent.log_path).read_text()
    assert '"reason": "client_key_too_weak"' in log
