"""Long fuzzing of every parser of outside bytes, outside CI (targets: fuzz/targets.py).

    python fuzz/fuzz_parsers.py --seconds 600                  # every target, 10 minutes each
    python fuzz/fuzz_parsers.py --target policy --seconds 60   # one target (repeatable)
    python fuzz/fuzz_parsers.py --replay policy FILE           # rerun one input

Each target runs in its own process under atheris (libFuzzer, coverage-guided,
with attestd, tomllib and PyJWT instrumented), from the seeds fuzz/seeds.py
writes. An exception that is not the parser's documented error is a finding
(an "untyped exception"): its input and traceback go to build/fuzz/<target>/
and fuzzing goes on; a libFuzzer crash, timeout or out-of-memory is one too.
Without atheris (or with --no-atheris) a seeded random mutator runs instead,
and no edges are reported. The run ends with a table (inputs, coverage edges,
findings per target) and one JSON line; the exit status is 1 if anything was found.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import random
import re
import shutil
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

if TYPE_CHECKING:
    from fuzz.targets import Target

SEEDS = REPO_ROOT / "fuzz" / "corpus" / "seeds"
WORK = REPO_ROOT / "fuzz" / "corpus" / "work"
FINDINGS = REPO_ROOT / "build" / "fuzz"
INSTRUMENTED = ["attestd", "tomllib", "jwt"]
# libFuzzer's own findings, by artifact prefix (slow-unit and the like are not findings).
_LIBFUZZER_FINDINGS = ("crash-", "timeout-", "oom-", "leak-")
_STATS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+)", re.MULTILINE)
_UNITS = re.compile(r"^stat::number_of_executed_units: (\d+)", re.MULTILINE)


@dataclass(frozen=True)
class Outcome:
    """What one target's run reached."""

    target: str
    inputs: int
    edges: int | None  # None: not coverage-guided
    findings: int
    seconds: float


def _quiet_warnings() -> None:
    # Mutated certificates may carry serial number 0, which cryptography warns about
    # on every load; that is the input being hostile, not attestd misbehaving.
    warnings.filterwarnings("ignore", message="Parsed a serial number")


def _targets() -> dict[str, Target]:
    from fuzz.targets import make_targets

    return make_targets(SEEDS / "files")


class _Recorder:
    """Saves each distinct untyped exception (type and raising line) once, with its input."""

    def __init__(self, target: Target, out: Path) -> None:
        self.target, self.out, self.seen = target, out, set[tuple[str, str]]()

    def one_input(self, data: bytes) -> None:
        try:
            self.target.check(data)
        except self.target.allowed:
            pass
        except Exception as err:  # the property under test: nothing else gets out
            self.record(data, err)

    def record(self, data: bytes, err: Exception) -> None:
        frames = traceback.extract_tb(err.__traceback__)
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        if (type(err).__name__, where) in self.seen:
            return
        self.seen.add((type(err).__name__, where))
        self.out.mkdir(parents=True, exist_ok=True)
        name = f"untyped-{hashlib.sha256(data).hexdigest()[:16]}"
        (self.out / name).write_bytes(data)
        text = "".join(traceback.format_exception(err))
        (self.out / f"{name}.txt").write_text(text)
        print(f"FINDING {self.target.name}: {type(err).__name__} at {where}", file=sys.stderr)

    @property
    def findings(self) -> int:
        return len(self.seen)


# --- the child: one target under atheris ---


def _child(name: str, libfuzzer_args: list[str]) -> int:
    import atheris  # type: ignore[import-untyped, import-not-found, unused-ignore]

    _quiet_warnings()
    # Instrument the parsers (and the TOML and JWT readers) before anything imports them.
    with atheris.instrument_imports(include=INSTRUMENTED):
        from fuzz.targets import make_targets
    target = make_targets(SEEDS / "files")[name]
    recorder = _Recorder(target, FINDINGS / name)
    atheris.Setup([sys.argv[0], *libfuzzer_args], recorder.one_input)
    atheris.Fuzz()  # exits the process when -max_total_time is up
    return 0


def _run_atheris(name: str, seconds: float) -> Outcome:
    out = FINDINGS / name
    work = WORK / name
    work.mkdir(parents=True, exist_ok=True)
    args = [
        f"-max_total_time={max(1, round(seconds))}",
        "-timeout=30",
        "-rss_limit_mb=4096",
        "-max_len=16384",
        "-print_final_stats=1",
        f"-artifact_prefix={out}/",
        str(work),
        str(SEEDS / name),
    ]
    log = out / "libfuzzer.log"
    start = time.monotonic()
    with log.open("w") as sink:
        rc = subprocess.call(
            [sys.executable, __file__, "--child", name, "--", *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
    text = log.read_text(errors="replace")
    stats = _STATS.findall(text)
    units = _UNITS.findall(text)
    inputs = int(units[-1]) if units else int(stats[-1][0]) if stats else 0
    edges = int(stats[-1][1]) if stats else 0
    findings = sum(1 for p in out.iterdir() if p.name.startswith("untyped-") and p.suffix == "")
    crashes = sum(1 for p in out.iterdir() if p.name.startswith(_LIBFUZZER_FINDINGS))
    if rc != 0 and not crashes and not findings:
        crashes = 1  # it died some other way: see the log
        print(f"{name}: libFuzzer exited with {rc}; see {log}", file=sys.stderr)
    return Outcome(name, inputs, edges, findings + crashes, time.monotonic() - start)


# --- without atheris: seeded random mutation of the seeds ---


def _mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.choice((1, 1, 1, 2, 4))):
        n, op = len(data), rng.randrange(6)
        if op == 0 and n:
            data[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            data[rng.randrange(n)] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif op == 2:
            del data[rng.randrange(n + 1) :]
        elif op == 3:
            at = rng.randrange(n + 1)
            data[at:at] = rng.choice((rng.randbytes(rng.randrange(1, 9)), b'"', b"[", b"{", b"0"))
        elif op == 4 and n:
            at = rng.randrange(n)
            del data[at : at + rng.randrange(1, 16)]
        else:
            other = rng.choice(seeds)
            start = rng.randrange(len(other) + 1)
            at = rng.randrange(n + 1)
            data[at:at] = other[start : start + rng.randrange(1, 64)]
    return bytes(data)


def _run_random(name: str, seconds: float, seed: int) -> Outcome:
    _quiet_warnings()
    target = _targets()[name]
    recorder = _Recorder(target, FINDINGS / name)
    seeds = [p.read_bytes() for p in sorted((SEEDS / name).iterdir())]
    rng = random.Random(seed)  # noqa: S311 - reproducible mutation, not secrecy
    start = time.monotonic()
    inputs = 0
    while time.monotonic() - start < seconds:
        for _ in range(100):
            recorder.one_input(_mutate(rng, seeds))
        inputs += 100
    return Outcome(name, inputs, None, recorder.findings, time.monotonic() - start)


# --- the driver ---


def _replay(name: str, path: Path) -> int:
    _quiet_warnings()
    target = _targets()[name]
    try:
        target.check(path.read_bytes())
    except target.allowed as err:
        print(f"refused, as it may be: {type(err).__name__}: {err}")
    else:
        print("accepted")
    return 0  # any other exception has propagated with its traceback


def _ensure_seeds(vectors: Path, regenerate: bool) -> None:
    from fuzz.seeds import generate
    from fuzz.targets import TARGET_NAMES

    if regenerate or not all((SEEDS / name).is_dir() for name in TARGET_NAMES):
        generate(SEEDS, vectors)


def _print_table(outcomes: list[Outcome]) -> None:
    print(f"{'target':20} {'inputs':>11} {'edges':>6} {'findings':>8} {'seconds':>8}")
    for o in outcomes:
        edges = "-" if o.edges is None else str(o.edges)
        print(f"{o.target:20} {o.inputs:>11,} {edges:>6} {o.findings:>8} {o.seconds:>8.0f}")


def _parse_args(argv: list[str]) -> argparse.Namespace:
    from fuzz.targets import TARGET_NAMES

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--target", action="append", choices=TARGET_NAMES, help="default: all")
    p.add_argument("--seconds", type=float, default=60.0, help="per target")
    p.add_argument("--jobs", type=int, default=1, help="targets run at once")
    p.add_argument("--seed", type=int, default=None, help="random mutation mode (default: time)")
    p.add_argument("--vectors", type=Path, default=REPO_ROOT.parent / "shared" / "vectors")
    p.add_argument("--regenerate-seeds", action="store_true")
    p.add_argument("--no-atheris", action="store_true", help="random mutation even with atheris")
    p.add_argument("--replay", nargs=2, metavar=("TARGET", "FILE"))
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:  # before anything imports the parsers uninstrumented
        cut = argv.index("--") if "--" in argv else len(argv)
        return _child(argv[1], argv[cut + 1 :])
    args = _parse_args(argv)
    if args.replay:
        return _replay(args.replay[0], Path(args.replay[1]))
    if not args.vectors.is_dir():
        print(f"vectors not found at {args.vectors}; pass --vectors", file=sys.stderr)
        return 2
    _ensure_seeds(args.vectors, args.regenerate_seeds)
    from fuzz.targets import TARGET_NAMES

    names: list[str] = args.target or list(TARGET_NAMES)
    atheris = not args.no_atheris and importlib.util.find_spec("atheris") is not None
    if not atheris:
        print("atheris is not installed (pip install -e '.[fuzz]'): random mutation, no edges")
    seed = args.seed if args.seed is not None else time.time_ns() & 0xFFFFFFFF
    for name in names:
        shutil.rmtree(FINDINGS / name, ignore_errors=True)
        (FINDINGS / name).mkdir(parents=True)

    def run(name: str) -> Outcome:
        if atheris:
            return _run_atheris(name, args.seconds)
        return _run_random(name, args.seconds, seed)

    runner: Callable[[str], Outcome] = run
    if atheris and args.jobs > 1:
        with ThreadPoolExecutor(args.jobs) as pool:  # each target is its own process
            outcomes = list(pool.map(runner, names))
    else:
        outcomes = []
        for name in names:
            outcomes.append(runner(name))
            with contextlib.suppress(OSError):
                sys.stdout.flush()
    _print_table(outcomes)
    total = sum(o.findings for o in outcomes)
    summary = {
        "seconds_per_target": args.seconds,
        "coverage_guided": atheris,
        "seed": None if atheris else seed,
        "targets": [asdict(o) | {"seconds": round(o.seconds, 1)} for o in outcomes],
        "untyped_exceptions": total,
    }
    print(json.dumps(summary))
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
