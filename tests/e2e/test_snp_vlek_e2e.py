"""End to end on a simulated SEV-SNP host that signs with a VLEK, as cloud hosts do.

The agent runs with ``[tee.simulated] signing_key = "vlek"``; its evidence
carries the VLEK chain, and `attestctl appraise` affirms it and says a VLEK
signed, or refuses it when the policy accepts VCEKs only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from attestd.cli import main
from tests.harness import SNP_MEASUREMENT, AgentProcess, serving


class VlekAgent(AgentProcess):
    """An agent on the simulated SEV-SNP backend whose host signs with a VLEK."""

    def write_config(self) -> None:
        super().write_config()
        text = self.config_path.read_text()
        self.config_path.write_text(
            text.replace("[tee.simulated]\n", '[tee.simulated]\nsigning_key = "vlek"\n', 1)
        )


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    process = VlekAgent(tmp_path, tee="simulated-snp")
    process.write_config()
    (process.models / "weights.bin").write_bytes(os.urandom(1 << 12))
    yield from serving(process)


def _appraise(
    agent: AgentProcess, signing_keys: str, artifact: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict[str, object]]:
    policy = agent.workdir / "policy.toml"
    policy.write_text(
        f'[trust]\nroot = "simulated"\nsimulated_root = "{agent.simulated_root()}"\n'
        f'[snp]\nmeasurement = ["{SNP_MEASUREMENT}"]\nsigning_keys = [{signing_keys}]\n'
        f'[[artifacts]]\nsha256 = "{artifact}"\n'
    )
    code = main(
        [
            "appraise", "--quiet", "--policy", str(policy),
            "--agent", f"127.0.0.1:{agent.port}", "--server-name", "localhost",
            "--cert", str(agent.tls / "client.pem"), "--key", str(agent.tls / "client.key"),
            "--ca", str(agent.tls / "ca.pem"),
        ]
    )  # fmt: skip
    report: dict[str, object] = json.loads(capsys.readouterr().out)
    return code, report


def _check(report: dict[str, object], name: str) -> dict[str, object]:
    checks = report["checks"]
    assert isinstance(checks, list)
    found: dict[str, object] = next(c for c in checks if c["name"] == name)
    return found


def test_vlek_signed_evidence_is_affirmed_end_to_end(
    agent: AgentProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    with agent.pipeline() as client:
        client.record("pipeline.train", "started", b"{}")
        (artifact,) = client.measure([str(agent.models / "weights.bin")])
    digest = artifact.digest["sha256"]
    code, report = _appraise(agent, '"vlek"', digest, capsys)
    assert code == 0, report
    assert report["status"] == "affirming"
    assert "VLEK" in str(_check(report, "quote_signature")["detail"])
    assert "VLEK" in str(_check(report, "signing_key")["detail"])

    code, report = _appraise(agent, '"vcek"', digest, capsys)
    assert code != 0, report
    assert _check(report, "signing_key")["reason"] == "signing_key_not_allowed"
