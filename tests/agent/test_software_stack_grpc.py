"""A stage begun over the agent's real Unix socket by a real client process carries its stack.

The agent measures the caller from /proc (attestd.agent.software_stack): the
client process here is a separate interpreter with a distribution planted on
its PYTHONPATH, and sends nothing about its software. The test checks the
measured executable and distribution in the begin event (as the caller got it
and as the log keeps it) and in the stage attestation's provenance, then has
``attestctl chain verify`` enforce layout rules on them. The parsers and the
measurement on their own are tests/agent/test_software_stack.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from attestd.evidence.provenance import StageAttestation, StageProvenance
from attestd.evidence.stack import Distribution
from tests.harness import MRTD, RTMRS, AgentProcess, serving

PIPELINE = "software-e2e"
PLANTED = "attestd-planted-dist"
PLANTED_VERSION = "1.2.3"

# The stage's own process: it opens and closes the stage and reports who it is.
# It says nothing to the agent about its software; the agent reads /proc.
CLIENT = """
import json, os, sys
from attestd.client import AgentClient

socket, source, target, attestation = sys.argv[1:5]
with AgentClient.unix(socket, timeout=30) as agent:
    begun = agent.begin_stage(sys.argv[5], "train", inputs=[source])
    with open(target, "wb") as out:
        out.write(b"weights")
    signed = agent.end_stage([target])
with open(attestation, "wb") as out:
    out.write(signed)
print(json.dumps({
    "pid": os.getpid(),
    "exe": os.path.realpath("/proc/self/exe"),
    "sequence": begun.event.sequence,
    "callerPid": begun.event.caller.pid,
    "content": begun.event.content.decode(),
}))
"""


@dataclass(frozen=True)
class StageRun:
    """What the client process reported, and the attestation it wrote."""

    pid: int
    exe: Path
    sequence: int
    caller_pid: int
    begin_content: dict[str, object]
    attestation: Path
    record_sha256: str
    site: Path


def plant_distribution(site: Path, name: str = PLANTED) -> str:
    """An installed-looking distribution (package, METADATA, RECORD); its RECORD's SHA-256."""
    package = site / name.replace("-", "_")
    dist_info = site / f"{name.replace('-', '_')}-{PLANTED_VERSION}.dist-info"
    package.mkdir(parents=True)
    dist_info.mkdir()
    files = {
        package / "__init__.py": b"",
        dist_info / "METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {PLANTED_VERSION}\n".encode()
        ),
    }
    lines = []
    for path, data in files.items():
        path.write_bytes(data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines.append(f"{path.relative_to(site)},sha256={digest},{len(data)}")
    lines.append(f"{dist_info.name}/RECORD,,")
    record = ("\n".join(lines) + "\n").encode()
    (dist_info / "RECORD").write_bytes(record)
    return hashlib.sha256(record).hexdigest()


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    process = AgentProcess(tmp_path_factory.mktemp("software-grpc"))
    process.write_config()
    yield from serving(process)


@pytest.fixture(scope="module")
def run(agent: AgentProcess, tmp_path_factory: pytest.TempPathFactory) -> StageRun:
    work = tmp_path_factory.mktemp("client")
    record_sha256 = plant_distribution(work / "site")
    source = agent.models / "data.bin"
    source.write_bytes(b"data")
    attestation = work / "train.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            CLIENT,
            str(agent.socket_path),
            str(source),
            str(agent.models / "model.bin"),
            str(attestation),
            PIPELINE,
        ],
        env={**os.environ, "PYTHONPATH": str(work / "site")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    reported = json.loads(completed.stdout)
    return StageRun(
        reported["pid"],
        Path(reported["exe"]),
        reported["sequence"],
        reported["callerPid"],
        json.loads(reported["content"]),
        attestation,
        record_sha256,
        work / "site",
    )


def _provenance(run: StageRun) -> StageProvenance:
    return StageAttestation.from_json(run.attestation.read_bytes()).read_provenance().provenance


def test_the_begin_event_carries_the_callers_measured_executable_and_python(
    agent: AgentProcess, run: StageRun
) -> None:
    assert run.caller_pid == run.pid  # SO_PEERCRED named the client process itself
    stack = run.begin_content["softwareStack"]
    assert isinstance(stack, dict)
    exe_digest = hashlib.sha256(run.exe.read_bytes()).hexdigest()
    assert stack["executable"] == {"path": str(run.exe), "digest": {"sha256": exe_digest}}
    assert stack["cmdline"]["argv"][:2] == [sys.executable, "-c"]
    python = stack["python"]
    assert "unknown" not in python, python
    # PYTHONPATH first, as CPython puts it on sys.path, then the venv's site-packages.
    assert python["sitePackages"][0] == str(run.site)
    # The log keeps the event as the caller got it.
    with agent.pipeline() as client:
        [logged] = client.runtime_log(run.sequence, 1).events
    assert logged.domain == "attestd.stage" and logged.operation == "begin"
    assert json.loads(logged.content) == run.begin_content


def test_the_provenance_repeats_the_stack_and_lists_the_planted_distribution(
    run: StageRun,
) -> None:
    provenance = _provenance(run)
    assert provenance.software_stack is not None
    assert provenance.software_stack.to_json() == run.begin_content["softwareStack"]
    assert provenance.software_stack.executable_sha256 == (
        hashlib.sha256(run.exe.read_bytes()).hexdigest()
    )
    distributions = provenance.distributions()
    assert distributions is not None
    planted = Distribution(PLANTED, PLANTED_VERSION, run.record_sha256)
    assert planted in distributions
    # Whatever else the interpreter starts with is there too: the client library.
    assert any(d.name == "grpcio" for d in distributions)


def _layout(agent: AgentProcess, directory: Path, name: str, software: list[str]) -> Path:
    root = agent.simulated_root()
    reference = [f'mrtd = ["{MRTD}"]'] + [f'rtmr{i} = ["{v}"]' for i, v in enumerate(RTMRS)]
    lines = [
        f'pipeline = "{PIPELINE}"',
        "",
        "[[stages]]",
        'name = "train"',
        'tee = ["tdx"]',
        "[stages.trust.tdx]",
        'root = "simulated"',
        f'simulated_root = "{root}"',
        "[stages.tdx]",
        *reference,
        "[stages.software]",
        *software,
    ]
    layout = directory / f"{name}.toml"
    layout.write_text("\n".join(lines) + "\n")
    return layout


def _verify(layout: Path, run: StageRun) -> tuple[int, dict[str, object]]:
    completed = subprocess.run(
        [
            str(Path(sys.executable).parent / "attestctl"),
            "chain",
            "verify",
            "--json",
            "--layout",
            str(layout),
            str(run.attestation),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.stdout, completed.stderr
    result: dict[str, object] = json.loads(completed.stdout)
    return completed.returncode, result


def _stage(result: dict[str, object]) -> dict[str, object]:
    stages = result["stages"]
    assert isinstance(stages, list)
    [stage] = stages
    assert isinstance(stage, dict)
    return stage


def test_attestctl_chain_verify_accepts_the_measured_stack_its_layout_allows(
    agent: AgentProcess, run: StageRun, tmp_path: Path
) -> None:
    exe = hashlib.sha256(run.exe.read_bytes()).hexdigest()
    layout = _layout(
        agent,
        tmp_path,
        "allowed",
        [
            f'required_packages = ["{PLANTED}=={PLANTED_VERSION}"]',
            f'allowed_executables = ["sha256:{exe}"]',
            "min_slsa_level = 3",
        ],
    )
    code, result = _verify(layout, run)
    assert code == 0, result
    stage = _stage(result)
    assert stage["softwareViolations"] == []
    assert stage["slsaBuildLevel"] == 3


@pytest.mark.parametrize(
    ("rule", "reason", "package"),
    [
        (f'forbidden_packages = ["{PLANTED}=={PLANTED_VERSION}"]', "package_version_not_allowed",
         PLANTED),
        (f'forbidden_packages = ["{PLANTED}"]', "package_forbidden", PLANTED),
        (f'allowed_executables = ["sha256:{"0" * 64}"]', "executable_not_allowed", None),
    ],
)  # fmt: skip
def test_attestctl_chain_verify_refuses_the_measured_stack_its_layout_denies(
    agent: AgentProcess,
    run: StageRun,
    tmp_path: Path,
    rule: str,
    reason: str,
    package: str | None,
) -> None:
    code, result = _verify(_layout(agent, tmp_path, "denied", [rule]), run)
    assert code == 1, result
    stage = _stage(result)
    violations = stage["softwareViolations"]
    assert isinstance(violations, list) and len(violations) == 1, violations
    violation: dict[str, str | None] = violations[0]
    assert violation["reason"] == reason
    assert violation["package"] == package
    if reason == "executable_not_allowed":
        assert str(run.exe) in str(violation["detail"])
    else:
        assert violation["version"] == PLANTED_VERSION


USER_PLANTED = "attestd-user-site-dist"
PTH_PLANTED = "attestd-pth-dist"


def test_distributions_hidden_in_the_user_site_and_a_pth_directory_are_found_and_refused(
    agent: AgentProcess, tmp_path: Path
) -> None:
    # A venv that includes the system site (so site.py enables the user site), whose one
    # .pth file puts the client library on sys.path and adds a directory of its own.
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    base = Path(sys.base_prefix) / "bin" / f"python{version}"
    venv = tmp_path / "venv"
    subprocess.run(
        [str(base), "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
        check=True,
        timeout=120,
    )
    purelib = Path(sysconfig.get_paths()["purelib"])  # this project's venv: attestd, grpcio
    editable = [p.read_text() for p in sorted(purelib.glob("__editable__*.pth"))]
    pth = venv / "lib" / f"python{version}" / "site-packages" / "client.pth"
    pth.write_text("\n".join([str(purelib), *editable, str(tmp_path / "pth-dir")]) + "\n")
    plant_distribution(tmp_path / "pth-dir", PTH_PLANTED)
    plant_distribution(tmp_path / "userbase" / "lib" / f"python{version}" / "site-packages",
                       USER_PLANTED)  # fmt: skip
    source = agent.models / "hidden.bin"
    source.write_bytes(b"data")
    attestation = tmp_path / "train.json"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONNOUSERSITE")}
    completed = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            CLIENT,
            str(agent.socket_path),
            str(source),
            str(agent.models / "hidden-model.bin"),
            str(attestation),
            PIPELINE,
        ],
        env={**env, "PYTHONUSERBASE": str(tmp_path / "userbase")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    reported = json.loads(completed.stdout)
    python = json.loads(reported["content"])["softwareStack"]["python"]
    assert "unknown" not in python, python
    assert str(pth) in [f["path"] for f in python["pthFiles"]]
    assert python["pthImports"] is bool(editable)
    provenance = StageAttestation.from_json(attestation.read_bytes()).read_provenance().provenance
    distributions = provenance.distributions()
    assert distributions is not None
    assert {USER_PLANTED, PTH_PLANTED} <= {d.name for d in distributions}
    run = StageRun(
        reported["pid"], Path(reported["exe"]), reported["sequence"], reported["callerPid"],
        {}, attestation, "", tmp_path,
    )  # fmt: skip
    rule = f'forbidden_packages = ["{USER_PLANTED}", "{PTH_PLANTED}"]'
    code, result = _verify(_layout(agent, tmp_path, "hidden", [rule]), run)
    assert code == 1, result
    violations = _stage(result)["softwareViolations"]
    assert isinstance(violations, list)
    assert sorted((v["reason"], v["package"]) for v in violations) == [
        ("package_forbidden", PTH_PLANTED),
        ("package_forbidden", USER_PLANTED),
    ]
