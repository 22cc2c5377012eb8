"""The chain-of-stages demo behind `make demo-pipeline`: four stages, four agents, one verifier.

1. Starts four `attestd` agents, one per stage, each with its own state
   directory, socket and simulated TEE: prepare and quantize on simulated TDX,
   train and package on simulated SEV-SNP. Each agent's launch values come from
   its configuration, as an image build would fix them; every agent's artifact
   roots hold the shared work directory the stages pass files through.
2. Runs prepare -> train -> quantize -> package, each stage a separate process
   (demo/stage_step.py) that opens the stage on its own agent with the previous
   stage's outputs as inputs and the previous attestation as `--previous`.
3. The verifier exports each agent's simulated root, writes a layout
   (docs/layout.md) pinning stages, TEEs, roots, launch values, licences and a
   tag, and runs `attestctl chain verify`: the chain must verify.
   The layout also holds software rules (docs/layout.md): every stage must
   run from this interpreter (`allowed_executables`, its SHA-256), and train
   must not run with torch 2.5.0 (`forbidden_packages`). The agent measures
   each stage's caller from /proc when the stage opens; the client sends
   nothing about its software.
4. Four tampered runs must be refused: one that skips quantize
   (`stage_missing`), one whose model is swapped between train and quantize
   (`artifact_substituted`), one whose train stage runs with a real (if tiny)
   `torch` 2.5.0 distribution on its PYTHONPATH (`package_version_not_allowed`),
   and one whose package stage runs from a patched copy of the interpreter in
   a virtual environment of its own (`executable_not_allowed`).

Exits 0 only if all five verdicts are the expected ones; keeps its temporary
directory only on failure.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
PIPELINE = "llm-demo"
STAGES = ("prepare", "train", "quantize", "package")
#: What each stage writes, under its run's directory.
OUTPUTS = {
    "prepare": "dataset",
    "train": "model",
    "quantize": "model-int8",
    "package": "release.tar",
}
LICENSES = ("Apache-2.0", "CC-BY-4.0")
REQUIRED_TAG = "pii:none"  # prepare's dataset must be declared free of personal data
#: The version of torch the layout denies to the train stage, and the rule saying so.
DENIED_TORCH = "2.5.0"
DENY_RULE = f"torch=={DENIED_TORCH}"
#: The interpreter every stage must run from: what the kernel executes for sys.executable.
INTERPRETER = Path(os.path.realpath(sys.executable))


@dataclass(frozen=True)
class StageVm:
    """The confidential VM a stage runs on: its simulated TEE and launch values."""

    tee: str
    launch: dict[str, str]

    @property
    def layout_tee(self) -> str:
        return "tdx" if self.tee == "simulated-tdx" else "sev-snp"

    def layout_reference(self) -> list[str]:
        """The same launch values in the layout's words (a policy [tdx] or [snp] table)."""
        if self.tee == "simulated-tdx":
            keys = {"mr_td": "mrtd", "rtmr0": "rtmr0", "rtmr1": "rtmr1", "rtmr2": "rtmr2"}
            table = "[stages.tdx]"
        else:
            keys = {"measurement": "measurement", "host_data": "host_data"}
            table = "[stages.snp]"
        return [table] + [f'{name} = ["{self.launch[key]}"]' for key, name in keys.items()]


def _tdx(image: str) -> StageVm:
    return StageVm(
        "simulated-tdx",
        {"mr_td": image * 48, "rtmr0": "b0" * 48, "rtmr1": "b1" * 48, "rtmr2": "b2" * 48},
    )


def _snp(image: str) -> StageVm:
    return StageVm("simulated-snp", {"measurement": image * 48, "host_data": "d1" * 32})


#: One VM image per stage, so the layout can tell a train VM from a package VM.
VMS = {"prepare": _tdx("a1"), "train": _snp("c1"), "quantize": _tdx("a2"), "package": _snp("c2")}
NAMES = {"simulated-tdx": "simulated TDX", "simulated-snp": "simulated SEV-SNP"}


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def run(*args: str | Path) -> None:
    completed = subprocess.run([str(a) for a in args], check=False)
    if completed.returncode != 0:
        name = Path(str(args[1] if args[0] == sys.executable else args[0])).name
        raise SystemExit(f"demo: {name} failed with status {completed.returncode}")


class Agent:
    """One `attestd` process for one stage: own config, state, socket and simulated TEE."""

    def __init__(self, stage: str, work: Path) -> None:
        self.stage = stage
        self.vm = VMS[stage]
        self.home = work / "agents" / stage
        self.state = self.home / "state"
        self.socket = self.home / "run" / "attestd.sock"
        self.log = self.home / "agent.log"
        self.home.mkdir(parents=True)
        config = self.home / "attestd.toml"
        launch = "\n".join(f'{key} = "{value}"' for key, value in self.vm.launch.items())
        config.write_text(
            f"""[agent]
state_dir = "{self.state}"

[tee]
backend = "{self.vm.tee}"

[tee.simulated]
{launch}

[listen]
unix_socket = "{self.socket}"

[artifacts]
roots = ["{work / "artifacts"}"]
"""
        )
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [str(BIN / "attestd"), "--config", str(config)], stderr=log
            )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(
                    f"demo: the {self.stage} agent exited with status {self.process.returncode}"
                    f" (log: {self.log})"
                )
            if self.socket.exists():
                return
            time.sleep(0.05)
        raise SystemExit(f"demo: the {self.stage} agent did not open its socket (log: {self.log})")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@dataclass(frozen=True)
class Launch:
    """How a stage's process is started: which interpreter, with which environment."""

    python: Path = Path(sys.executable)
    environment: dict[str, str] | None = None


def run_stage(
    agent: Agent,
    source: Path,
    target: Path,
    attestation: Path,
    previous: Path | None,
    launch: Launch | None = None,
) -> None:
    """One stage as its own process, talking to its own agent."""
    launch = launch or Launch()
    args: list[str] = [
        str(launch.python), str(HERE / "stage_step.py"), "--socket", str(agent.socket),
        "--pipeline", PIPELINE, "--stage", agent.stage,
        "--input", str(source), "--output", str(target), "-o", str(attestation),
    ]  # fmt: skip
    if previous is not None:
        args += ["--previous", str(previous)]
    env = None if launch.environment is None else {**os.environ, **launch.environment}
    completed = subprocess.run(args, env=env, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"demo: stage {agent.stage} failed with status {completed.returncode}")


def run_pipeline(
    agents: dict[str, Agent],
    source: Path,
    outputs: Path,
    attestations: Path,
    *,
    between: dict[str, str] | None = None,
    launch: dict[str, Launch] | None = None,
    reuse: list[Path] | None = None,
) -> list[Path]:
    """prepare -> train -> quantize -> package; ``between`` tampers before a stage opens.

    ``reuse`` holds attestations of the first stages, already run: the run goes on from
    the next stage, reading ``source`` (the last reused stage's output).
    """
    outputs.mkdir(parents=True)
    attestations.mkdir(parents=True)
    files: list[Path] = list(reuse or ())
    previous: Path | None = files[-1] if files else None
    for stage in STAGES[len(files) :]:
        if between and stage in between:
            swap_weights(source, between[stage])
        target = outputs / OUTPUTS[stage]
        attestation = attestations / f"{stage}.json"
        run_stage(agents[stage], source, target, attestation, previous, (launch or {}).get(stage))
        files.append(attestation)
        source, previous = target, attestation
    return files


def plant_torch(site_dir: Path, version: str) -> None:
    """A real, installed-looking ``torch`` distribution: a package, METADATA and RECORD.

    The agent finds it as CPython would, on the caller's PYTHONPATH, and records
    its name, version and RECORD digest; it is not a torch build, but the layout's
    rule reads only what the distribution declares, as it would for the real one.
    """
    package = site_dir / "torch"
    dist_info = site_dir / f"torch-{version}.dist-info"
    package.mkdir(parents=True)
    dist_info.mkdir()
    files = {
        package / "__init__.py": f'__version__ = "{version}"\n'.encode(),
        dist_info
        / "METADATA": f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n".encode(),
        dist_info / "INSTALLER": b"demo\n",
    }
    record = []
    for path, data in files.items():
        path.write_bytes(data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path.relative_to(site_dir)},sha256={digest},{len(data)}")
    record.append(f"{dist_info.name}/RECORD,,")
    (dist_info / "RECORD").write_text("\n".join(record) + "\n")


def patched_interpreter(venv: Path) -> Path:
    """A virtual environment whose python is a patched copy of this interpreter.

    A copy, not a symlink: the kernel executes its bytes, so /proc/PID/exe names
    it. The appended marker changes its SHA-256 as any patch would (a byte-equal
    copy would be allowed: the rule pins content, not a path). Its site-packages
    adds this interpreter's own, so the stage's imports still resolve.
    """
    python = venv / "bin" / "python3"
    python.parent.mkdir(parents=True)
    python.write_bytes(INTERPRETER.read_bytes() + b"\0attestd demo: a patched interpreter\n")
    python.chmod(0o755)
    major, minor, micro = sys.version_info[:3]
    (venv / "pyvenv.cfg").write_text(
        f"home = {INTERPRETER.parent}\ninclude-system-site-packages = false\n"
        f"version = {major}.{minor}.{micro}\n"
    )
    site_packages = venv / "lib" / f"python{major}.{minor}" / "site-packages"
    site_packages.mkdir(parents=True)
    parents = "; ".join(f"site.addsitedir({d!r})" for d in site.getsitepackages())
    (site_packages / "demo-parent-site.pth").write_text(f"import site; {parents}\n")
    return python


def swap_weights(model: Path, why: str) -> None:
    weights = model / "weights.bin"
    size = weights.stat().st_size
    weights.write_bytes(b"\x66" * size)
    print(f"  !! {why}: {weights.relative_to(model.parent.parent)} overwritten ({size} bytes)")


def write_layout(verifier: Path, agents: dict[str, Agent]) -> Path:
    """The verifier's layout: stages in order, each on its TEE under its root and launch values."""
    roots = verifier / "roots"
    roots.mkdir(parents=True)
    quoted = ", ".join(f'"{x}"' for x in LICENSES)
    interpreter = hashlib.sha256(INTERPRETER.read_bytes()).hexdigest()
    lines = [
        f'pipeline = "{PIPELINE}"',
        f"allowed_licenses = [{quoted}]",
        "",
        "[freshness]",
        "max_age_seconds = 3600",
        "",
        "# Every stage runs from this interpreter, measured by its agent (SLSA Build L3).",
        "[software]",
        f'allowed_executables = ["sha256:{interpreter}"]',
        "min_slsa_level = 3",
    ]
    for stage in STAGES:
        agent = agents[stage]
        root = roots / f"{stage}.pem"
        run(
            BIN / "attestctl", "trust-root", "export",
            "--state-dir", agent.state, "--tee", agent.vm.tee, "-o", root,
        )  # fmt: skip
        lines += ["", "[[stages]]", f'name = "{stage}"', f'tee = ["{agent.vm.layout_tee}"]']
        if stage == "prepare":
            lines.append(f'required_tags = ["{REQUIRED_TAG}"]')
        lines += [
            f"[stages.trust.{agent.vm.layout_tee}]",
            'root = "simulated"',
            f'simulated_root = "roots/{root.name}"',
            *agent.vm.layout_reference(),
        ]
        if stage == "train":
            lines += ["[stages.software]", f'forbidden_packages = ["{DENY_RULE}"]']
    layout = verifier / "layout.toml"
    layout.write_text("\n".join(lines) + "\n")
    print(f"wrote {layout.name}: {len(STAGES)} stages, licences {', '.join(LICENSES)}, ", end="")
    print(f"tag {REQUIRED_TAG} on prepare's outputs, each stage's root and launch values,")
    print(f"  every stage from {INTERPRETER} (sha256:{interpreter[:16]}…), no {DENY_RULE} in train")
    return layout


def chain_verify(layout: Path, files: list[Path]) -> tuple[int, str]:
    """`attestctl chain verify`, its table printed; returns the exit status and the output."""
    completed = subprocess.run(
        [str(BIN / "attestctl"), "chain", "verify", "--layout", str(layout)]
        + [str(f) for f in files],
        capture_output=True,
        text=True,
        check=False,
    )
    sys.stdout.write(completed.stdout)
    sys.stderr.write(completed.stderr)
    return completed.returncode, completed.stdout


def expect(
    name: str,
    code: int,
    output: str,
    status: int,
    reasons: tuple[str, ...],
    offending: str | None = None,
) -> None:
    """Stop the demo unless ``attestctl chain verify`` gave ``status`` for ``reasons``.

    ``offending`` is the start of the line naming the offending stage and reason
    (``stage train: package_version_not_allowed:``), which must be printed too.
    """
    lines = output.strip().splitlines()
    verdict = lines[-1] if lines else ""
    word = ": VERIFIED" if status == 0 else ": NOT VERIFIED"
    missing = [r for r in reasons if r not in verdict]
    if code != status or missing or word not in verdict:
        raise SystemExit(
            f"demo: {name}: expected exit {status} with {', '.join(reasons) or 'VERIFIED'}, "
            f"got exit {code}: {verdict!r}"
        )
    outcome = "verified" if status == 0 else f"refused ({', '.join(reasons)})"
    if offending is not None:
        named = [line for line in lines if line.startswith(offending)]
        if not named:
            raise SystemExit(f"demo: {name}: no line {offending!r} names the offender")
        outcome += f"; {named[0]}"
    print(f"-> {name}: {outcome}, as expected", flush=True)


def make_corpus(path: Path) -> None:
    path.parent.mkdir(parents=True)
    rows = [f"Example sentence number {i} about confidential computing." for i in range(200)]
    path.write_text("\n".join(rows) + "\n")


def demo(work: Path) -> None:
    artifacts = work / "artifacts"
    corpus = artifacts / "raw" / "corpus.txt"
    make_corpus(corpus)

    step("starting four agents, one per stage, each on its own simulated TEE")
    agents = {stage: Agent(stage, work) for stage in STAGES}
    try:
        for agent in agents.values():
            agent.wait_ready()
            print(f"  {agent.stage:<9} {NAMES[agent.vm.tee]:<18} socket {agent.socket}")
        verify_runs(work, agents, corpus)
    finally:
        codes = {stage: agent.stop() for stage, agent in agents.items()}
    if any(codes.values()):
        raise SystemExit(f"demo: agents exited with {codes}")


def verify_runs(work: Path, agents: dict[str, Agent], corpus: Path) -> None:
    artifacts = work / "artifacts"
    attestations = work / "attestations"

    step("run 1: prepare -> train -> quantize -> package, each stage its own process")
    good = run_pipeline(agents, corpus, artifacts / "good", attestations / "good")

    step("verifier: export each agent's root and write the pipeline layout")
    layout = write_layout(work / "verifier", agents)

    step("verifier: attestctl chain verify on run 1's four attestations")
    code, verdict = chain_verify(layout, good)
    expect("run 1", code, verdict, 0, ())

    step("run 2: quantize skipped, package consumes train's model directly")
    skipped = attestations / "skipped"
    skipped.mkdir(parents=True)
    package = skipped / "package.json"
    train_model = artifacts / "good" / OUTPUTS["train"]
    release = artifacts / "skipped" / OUTPUTS["package"]
    run_stage(agents["package"], train_model, release, package, good[1])
    code, verdict = chain_verify(layout, [good[0], good[1], package])
    expect("run 2 (stage skipped)", code, verdict, 1, ("stage_missing",))

    step("run 3: the model is swapped between train and quantize")
    swapped = run_pipeline(
        agents,
        corpus,
        artifacts / "swapped",
        attestations / "swapped",
        between={"quantize": "after train, before quantize"},
    )
    code, verdict = chain_verify(layout, swapped)
    expect("run 3 (model swapped)", code, verdict, 1, ("artifact_substituted",))

    step(f"run 4: train runs with torch {DENIED_TORCH} on its PYTHONPATH (prepare reused)")
    torch_site = work / "envs" / f"torch-{DENIED_TORCH}"
    plant_torch(torch_site, DENIED_TORCH)
    print(f"  planted torch-{DENIED_TORCH}.dist-info (METADATA, RECORD) in {torch_site}")
    denied = run_pipeline(
        agents,
        artifacts / "good" / OUTPUTS["prepare"],
        artifacts / "denied",
        attestations / "denied",
        launch={"train": Launch(environment={"PYTHONPATH": str(torch_site)})},
        reuse=good[:1],
    )
    code, verdict = chain_verify(layout, denied)
    expect(
        "run 4 (denied torch)",
        code,
        verdict,
        1,
        ("package_version_not_allowed",),
        "stage train: package_version_not_allowed: torch",
    )

    step("run 5: package runs from a patched copy of the interpreter (the rest reused)")
    python = patched_interpreter(work / "envs" / "patched")
    print(f"  {python}: a copy of {INTERPRETER} with bytes appended, in its own venv")
    patched = run_pipeline(
        agents,
        artifacts / "good" / OUTPUTS["quantize"],
        artifacts / "patched",
        attestations / "patched",
        launch={"package": Launch(python=python)},
        reuse=good[:3],
    )
    code, verdict = chain_verify(layout, patched)
    expect(
        "run 5 (patched interpreter)",
        code,
        verdict,
        1,
        ("executable_not_allowed",),
        "stage package: executable_not_allowed:",
    )


def main() -> int:
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="attestd-pipeline-"))
    ok = False
    try:
        demo(work)
        ok = True
        print(
            f"\ndemo-pipeline: OK: the good chain verified; the skipped, swapped, denied-torch "
            f"and patched-interpreter runs were refused ({time.monotonic() - started:.1f} s)"
        )
        return 0
    finally:
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"demo-pipeline: files kept in {work}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
