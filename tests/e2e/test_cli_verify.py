"""`attestctl verify`: its exit codes and output, over evidence from each simulated TEE.

0 affirming; 1 appraised and not affirming; 2 unreadable input or bad usage.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from attestd.cli import EXIT_NOT_AFFIRMING, EXIT_OK, EXIT_USAGE, main
from attestd.evidence import format_rfc3339
from tests.verifier.simulated_evidence import NONCE, Scenario, make_scenario
from tests.verifier.snp_evidence import SnpScenario, make_snp_scenario


@dataclass(frozen=True)
class Files:
    scenario: Scenario | SnpScenario
    evidence: Path
    policy: Path


@pytest.fixture(scope="module", params=["tdx", "sev-snp"])
def files(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Files:
    state = tmp_path_factory.mktemp("guest")
    scenario = make_scenario(state) if request.param == "tdx" else make_snp_scenario(state)
    directory = tmp_path_factory.mktemp("verify")
    scenario.policy(directory)  # writes policy.toml trusting root.pem, the simulated root
    evidence = directory / "evidence.json"
    evidence.write_bytes(scenario.evidence())
    return Files(scenario, evidence, directory / "policy.toml")


def verify(files: Files, *extra: str, evidence: Path | None = None, nonce: str = "") -> int:
    return main(
        [
            "verify",
            str(evidence or files.evidence),
            "--nonce",
            nonce or NONCE.hex(),
            "--policy",
            str(files.policy),
            *extra,
        ]
    )


def test_affirming_evidence_exits_0_with_the_result_as_json(
    files: Files, capsys: pytest.CaptureFixture[str]
) -> None:
    assert verify(files) == EXIT_OK
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["status"] == "affirming"
    assert report["rootOfTrust"]["policy"] == "simulated"
    assert all(check["status"] in ("pass", "skip") for check in report["checks"])
    assert err == ""


def test_summary_goes_to_stderr_and_stdout_stays_json(
    files: Files, capsys: pytest.CaptureFixture[str]
) -> None:
    assert verify(files, "--summary") == EXIT_OK
    out, err = capsys.readouterr()
    assert json.loads(out)["status"] == "affirming"
    assert "appraisal AFFIRMING" in err


def test_evidence_from_stdin_is_appraised(
    files: Files, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Stdin:
        buffer = io.BytesIO(files.evidence.read_bytes())

    monkeypatch.setattr("sys.stdin", Stdin)
    assert verify(files, evidence=Path("-")) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["status"] == "affirming"


def test_wrong_nonce_exits_1_naming_the_nonce_check(
    files: Files, capsys: pytest.CaptureFixture[str]
) -> None:
    assert verify(files, nonce="00" * 32) == EXIT_NOT_AFFIRMING
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "contraindicated"
    failed = {c["name"]: c["reason"] for c in report["checks"] if c["status"] == "fail"}
    assert failed == {"nonce": "nonce_mismatch"}


def test_expired_evidence_exits_1(files: Files, capsys: pytest.CaptureFixture[str]) -> None:
    later = format_rfc3339(files.scenario.issued_at + timedelta(hours=1))
    assert verify(files, "--now", later) == EXIT_NOT_AFFIRMING
    report = json.loads(capsys.readouterr().out)
    assert "evidence_expired" in {c["reason"] for c in report["checks"]}


@pytest.mark.parametrize("content", [b"", b"not evidence", b'{"payloadType": 1}', b"\xff" * 10])
def test_file_that_is_not_evidence_exits_2(
    files: Files, capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes
) -> None:
    junk = tmp_path / "junk.json"
    junk.write_bytes(content)
    assert verify(files, evidence=junk) == EXIT_USAGE
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "contraindicated"
    failed = {c["name"] for c in report["checks"] if c["status"] == "fail"}
    assert "evidence_format" in failed


def test_missing_evidence_file_exits_2(
    files: Files, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "absent.json"
    assert verify(files, evidence=missing) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == ""
    assert f"cannot read {missing}" in err


@pytest.mark.parametrize(
    "policy",
    [
        "[trust]\nroot = 'simulated'\nsimulated_root = 'root.pem'\n[tdx]\nmrdt = ['00']\n",
        "[freshness]\nmax_age_seconds = 300\n",  # no [trust]
        "[trust\n",
        "[trust]\nroot = 'simulated'\nsimulated_root = 'absent.pem'\n",
    ],
)
def test_bad_policy_file_exits_2(
    files: Files, capsys: pytest.CaptureFixture[str], tmp_path: Path, policy: str
) -> None:
    (tmp_path / "root.pem").write_bytes(files.scenario.backend.trust_root_pem())
    bad = tmp_path / "policy.toml"
    bad.write_text(policy)
    code = main(["verify", str(files.evidence), "--nonce", NONCE.hex(), "--policy", str(bad)])
    assert code == EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("attestctl: ")


def test_missing_policy_file_exits_2(
    files: Files, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(
        ["verify", str(files.evidence), "--nonce", NONCE.hex(), "--policy", str(tmp_path / "x")]
    )
    assert code == EXIT_USAGE
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("nonce", ["not-hex", "abc", "zz" * 32])
def test_nonce_that_is_not_hex_is_a_usage_error(
    files: Files, capsys: pytest.CaptureFixture[str], nonce: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        verify(files, nonce=nonce)
    assert exited.value.code == EXIT_USAGE
    assert "nonce must be hex" in capsys.readouterr().err


@pytest.mark.parametrize("length", [0, 15, 65])
def test_nonce_of_a_length_evidence_cannot_carry_is_a_usage_error(
    files: Files, capsys: pytest.CaptureFixture[str], length: int
) -> None:
    with pytest.raises(SystemExit) as exited:
        verify(files, nonce=("ab" * length) or " ")
    assert exited.value.code == EXIT_USAGE
    assert "it must be 16 to 64" in capsys.readouterr().err


def test_time_without_a_zone_is_a_usage_error(
    files: Files, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        verify(files, "--now", "2026-01-01T00:00:00")
    assert exited.value.code == EXIT_USAGE
    assert "zone" in capsys.readouterr().err


@pytest.mark.parametrize("hostile", ["fifo-root", "fifo-policy", "deep-policy", "fifo-evidence"])
def test_hostile_policy_or_evidence_file_exits_2_without_hanging(
    files: Files, capsys: pytest.CaptureFixture[str], tmp_path: Path, hostile: str
) -> None:
    from tests.test_shared_files import make_fifo, within

    policy = tmp_path / "policy.toml"
    evidence = files.evidence
    reason = "policy_invalid"
    if hostile == "fifo-root":
        make_fifo(tmp_path / "root.pem")
        policy.write_text("[trust]\nroot = 'simulated'\nsimulated_root = 'root.pem'\n")
    elif hostile == "fifo-policy":
        make_fifo(policy)
    elif hostile == "deep-policy":
        policy.write_text("[trust]\nroot = 'intel'\n[tdx]\nmrtd = " + "[" * 3000 + "]" * 3000)
    else:
        policy = files.policy
        evidence = make_fifo(tmp_path / "evidence.json")
        reason = "usage"
    command = ["verify", str(evidence), "--nonce", NONCE.hex(), "--policy", str(policy)]
    assert within(30, lambda: main(command)) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"attestctl: {reason}: ")
