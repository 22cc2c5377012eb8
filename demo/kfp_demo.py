"""The Kubeflow Pipelines demo behind `make demo-kfp`: a real KFP pipeline that attests itself.

1. Starts one `attestd` agent on simulated TDX, with its own state, socket and
   artifact root (where the pipeline's outputs are written).
2. Compiles `prepare -> {train, evaluate} -> package` with `kfp.compiler` and
   derives its layout with `attestctl layout from-kfp` (docs/kfp.md); a stage
   template gives every stage the agent's simulated root and launch values.
3. Runs the pipeline with the KFP SDK's local runner (`kfp.local`,
   SubprocessRunner, no cluster): each component's body is an attested stage
   (`attestd.integrations.kfp.kfp_stage`), and each stage's attestation
   travels to the next step as a KFP artifact. `attestctl chain verify`
   checks the four attestations against the derived layout: VERIFIED.
4. Runs it again with an unattested step that overwrites train's model before
   package reads it: `attestctl chain verify` refuses it (`artifact_substituted`).

Exits 0 only if both verdicts are the expected ones; its last line is then
`kfp demo: OK`. Keeps its temporary directory only on failure.

No `from __future__ import annotations`: KFP reads the components' artifact
types from their annotations as objects.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from kfp import compiler, dsl, local
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

BIN = Path(sys.executable).parent
PIPELINE = "kfp-demo"
STAGES = ("prepare", "train", "evaluate", "package")
#: The simulated confidential VM's launch values, as its image build would fix them.
LAUNCH = {"mr_td": "a1" * 48, "rtmr0": "b0" * 48, "rtmr1": "b1" * 48, "rtmr2": "b2" * 48}


# -- the pipeline: each component body is one attested stage --------------------------


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def prepare(dataset: Output[Dataset], attestation: Output[Artifact]) -> None:
    from pathlib import Path

    from attestd.integrations.kfp import kfp_stage

    with kfp_stage("prepare", outputs=[dataset], attestation=attestation, licence="Apache-2.0"):
        Path(dataset.path).write_text("".join(f"{i},{i * i}\n" for i in range(100)))


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def train(
    dataset: Input[Dataset],
    previous: Input[Artifact],
    model: Output[Model],
    attestation: Output[Artifact],
) -> None:
    from pathlib import Path

    from attestd.integrations.kfp import kfp_stage

    with kfp_stage(
        "train",
        inputs=[dataset],
        outputs=[model],
        previous=previous,
        attestation=attestation,
        licence="Apache-2.0",
    ):
        rows = [line.split(",") for line in Path(dataset.path).read_text().split()]
        slope = sum(int(y) for _, y in rows) / max(1, sum(int(x) for x, _ in rows))
        Path(model.path).write_text(f"slope={slope:.6f}\n")


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def evaluate(
    dataset: Input[Dataset],
    previous: Input[Artifact],
    metrics: Output[Metrics],
    attestation: Output[Artifact],
) -> None:
    from pathlib import Path

    from attestd.integrations.kfp import kfp_stage

    with kfp_stage(
        "evaluate",
        inputs=[dataset],
        outputs=[metrics],
        previous=previous,
        attestation=attestation,
        licence="Apache-2.0",
    ):
        rows = len(Path(dataset.path).read_text().split())
        Path(metrics.path).write_text(f'{{"rows": {rows}}}\n')


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def package(
    model: Input[Model],
    metrics: Input[Metrics],
    previous: Input[Artifact],
    release: Output[Artifact],
    attestation: Output[Artifact],
) -> None:
    from pathlib import Path

    from attestd.integrations.kfp import kfp_stage

    with kfp_stage(
        "package",
        inputs=[model, metrics],
        outputs=[release],
        previous=previous,
        attestation=attestation,
        licence="Apache-2.0",
    ):
        text = Path(model.path).read_text() + Path(metrics.path).read_text()
        Path(release.path).write_text(text)


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def tamper(model: Input[Model]) -> None:
    """An unattested step that overwrites train's model in place before package reads it."""
    from pathlib import Path

    Path(model.path).write_text("slope=0.000000 (planted)\n")
    print(f"  !! model overwritten between train and package: {model.path}")


@dsl.pipeline(name=PIPELINE)
def demo_pipeline() -> None:
    """prepare -> {train, evaluate} -> package: train and evaluate may run in either order."""
    prep = prepare()
    fit = train(dataset=prep.outputs["dataset"], previous=prep.outputs["attestation"])
    check = evaluate(dataset=prep.outputs["dataset"], previous=prep.outputs["attestation"])
    package(
        model=fit.outputs["model"],
        metrics=check.outputs["metrics"],
        previous=fit.outputs["attestation"],
    )


@dsl.pipeline(name=PIPELINE)
def tampered_pipeline() -> None:
    """The same pipeline, with train's model replaced between train and package."""
    prep = prepare()
    fit = train(dataset=prep.outputs["dataset"], previous=prep.outputs["attestation"])
    check = evaluate(dataset=prep.outputs["dataset"], previous=prep.outputs["attestation"])
    swap = tamper(model=fit.outputs["model"])
    package(
        model=fit.outputs["model"],
        metrics=check.outputs["metrics"],
        previous=fit.outputs["attestation"],
    ).after(swap)


# -- the demo -----------------------------------------------------------------------------


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def attestctl(*args: str | Path, expect: int = 0) -> str:
    """Run `attestctl ARGS`, print its output, and insist on the exit status ``expect``."""
    completed = subprocess.run(
        [str(BIN / "attestctl"), *map(str, args)], capture_output=True, text=True, check=False
    )
    sys.stdout.write(completed.stdout)
    sys.stderr.write(completed.stderr)
    if completed.returncode != expect:
        raise SystemExit(
            f"demo: attestctl {args[0]} {args[1]} exited {completed.returncode}, not {expect}"
        )
    return completed.stdout


class Agent:
    """One `attestd` process on simulated TDX: own config, state, socket and artifact root."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.state = home / "state"
        self.socket = home / "run" / "attestd.sock"
        self.artifacts = home / "artifacts"
        self.log = home / "agent.log"
        self.artifacts.mkdir(parents=True)
        launch = "\n".join(f'{key} = "{value}"' for key, value in LAUNCH.items())
        config = home / "attestd.toml"
        config.write_text(
            f'[agent]\nstate_dir = "{self.state}"\n\n[tee]\nbackend = "simulated-tdx"\n\n'
            f'[tee.simulated]\n{launch}\n\n[listen]\nunix_socket = "{self.socket}"\n\n'
            f'[artifacts]\nroots = ["{self.artifacts}"]\n'
        )
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [str(BIN / "attestd"), "--config", str(config)], stderr=log
            )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"demo: the agent exited {self.process.returncode} ({self.log})")
            if self.socket.exists():
                return
            time.sleep(0.05)
        raise SystemExit(f"demo: the agent did not open its socket ({self.log})")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def write_template(agent: Agent, verifier: Path) -> Path:
    """What the pipeline spec does not say: licences, the TEE, its root and launch values."""
    root = verifier / "simulated-tdx.pem"
    attestctl(
        "trust-root", "export", "--state-dir", agent.state, "--tee", "simulated-tdx", "-o", root
    )
    reference = {"mrtd": "mr_td", "rtmr0": "rtmr0", "rtmr1": "rtmr1", "rtmr2": "rtmr2"}
    template = verifier / "stage.toml"
    template.write_text(
        'allowed_licenses = ["Apache-2.0"]\n\n[freshness]\nmax_age_seconds = 3600\n\n'
        '[stage]\ntee = ["tdx"]\n[stage.trust.tdx]\nroot = "simulated"\n'
        f'simulated_root = "{root.name}"\n[stage.tdx]\n'
        + "".join(f'{name} = ["{LAUNCH[key]}"]\n' for name, key in reference.items())
    )
    return template


def run_pipeline(agent: Agent, name: str, pipeline: Callable[[], object], out: Path) -> list[Path]:
    """Run ``pipeline`` with kfp.local into the agent's artifact root; the attestations."""
    root = agent.artifacts / name
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    pipeline()
    out.mkdir(parents=True)
    files = []
    for stage in STAGES:
        found = list(root.glob(f"*/{stage}/attestation"))
        if len(found) != 1:
            raise SystemExit(f"demo: {len(found)} attestations of {stage} under {root}")
        files.append(out / f"{stage}.json")
        shutil.copyfile(found[0], files[-1])
    print(f"{len(files)} stage attestations: {', '.join(f.name for f in files)}")
    return files


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="attestd-kfp-demo-"))
    # A Unix socket path is at most ~107 bytes: keep the agent's home short.
    agent = Agent(work / "agent")
    ok = False
    try:
        agent.wait_ready()
        print(f"agent on simulated TDX at {agent.socket}")
        # The steps inherit this environment: the agent's socket, and this interpreter
        # first on PATH (KFP's SubprocessRunner starts `python3 -m kfp.dsl.executor_main`).
        os.environ["ATTESTD_SOCKET"] = str(agent.socket)
        os.environ["ATTESTD_PIPELINE"] = PIPELINE
        os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"

        step("compile the pipeline and derive its layout (attestctl layout from-kfp)")
        verifier = work / "verifier"
        verifier.mkdir()
        spec = verifier / "pipeline.yaml"
        compiler.Compiler().compile(demo_pipeline, str(spec))
        layout = verifier / "layout.toml"
        template = write_template(agent, verifier)
        attestctl("layout", "from-kfp", spec, "--stage-template", template, "-o", layout)
        print(layout.read_text())

        step("run prepare -> {train, evaluate} -> package with kfp.local")
        files = run_pipeline(agent, "run-1", demo_pipeline, work / "run-1")
        step("verify the run against the derived layout (attestctl chain verify)")
        attestctl("chain", "verify", "--layout", layout, *files, expect=0)
        print("-> run 1: verified, as expected")

        step("run it again with train's model overwritten before package")
        files = run_pipeline(agent, "run-2", tampered_pipeline, work / "run-2")
        table = attestctl("chain", "verify", "--layout", layout, *files, expect=1)
        if "artifact_substituted" not in table:
            raise SystemExit("demo: the tampered run was refused, but not artifact_substituted")
        print("-> run 2: refused (artifact_substituted), as expected")
        ok = True
    finally:
        status = agent.stop()
        ok = ok and status == 0
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"files kept in {work} (agent exit {status})", file=sys.stderr)
    if not ok:
        return 1
    print("kfp demo: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
