"""Long fuzzing of the TDX parsers (quote, CCEL event log, CCEL table), outside CI.

    python fuzz/fuzz_parsers.py --target ccel_log --seconds 600        # random mutation
    python fuzz/fuzz_parsers.py --target quote -- -max_total_time=600  # atheris, if installed
    python fuzz/fuzz_parsers.py --target quote --replay crash-1234     # rerun one input

With atheris importable, the target runs under libFuzzer with coverage
guidance, seeded with the same real vectors as tests/fuzz/test_fuzz_tdx.py
(arguments after ``--`` go to libFuzzer). Without it, or with ``--no-atheris``,
the same seeded mutator as the CI test runs for ``--seconds`` per target.
Either way, an exception other than the parser's own format error is a
finding: the input is written to ``--crash-dir`` and the exit status is 1.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.fuzz.test_fuzz_tdx import Target

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
TARGET_NAMES = ("ccel_log", "ccel_table", "quote")


def _parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Our options, and what follows ``--`` for libFuzzer."""
    cut = argv.index("--") if "--" in argv else len(argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--target", choices=(*TARGET_NAMES, "all"), default="all")
    p.add_argument("--seconds", type=float, default=60.0, help="per target, random mutation mode")
    p.add_argument("--seed", type=int, default=None, help="random mutation mode (default: time)")
    p.add_argument("--vectors", type=Path, default=REPO_ROOT.parent / "shared" / "vectors")
    p.add_argument("--crash-dir", type=Path, default=REPO_ROOT / "build" / "fuzz")
    p.add_argument("--no-atheris", action="store_true", help="random mutation even with atheris")
    p.add_argument("--replay", type=Path, help="run one input file through --target and exit")
    return p.parse_args(argv[:cut]), argv[cut + 1 :]


def main(argv: list[str]) -> int:
    args, libfuzzer_args = _parse_args(argv)
    if not args.vectors.is_dir():
        print(f"vectors not found at {args.vectors}; pass --vectors", file=sys.stderr)
        return 2
    names = list(TARGET_NAMES) if args.target == "all" else [args.target]
    if (args.replay is not None or _use_atheris(args)) and len(names) != 1:
        print("--replay and atheris take one --target", file=sys.stderr)
        return 2
    if _use_atheris(args):
        import atheris  # type: ignore[import-untyped, import-not-found, unused-ignore]

        # Instrument the parsers before anything else imports them.
        with atheris.instrument_imports():
            import attestd.tee.tdx.abi
            import attestd.tee.tdx.ccel  # noqa: F401
    from tests.fuzz.test_fuzz_tdx import TARGETS

    targets = [TARGETS[name](args.vectors) for name in names]
    if args.replay is not None:
        return _replay(targets[0], args.replay)
    if _use_atheris(args):
        return _run_atheris(targets[0], args.crash_dir, libfuzzer_args)
    seed = args.seed if args.seed is not None else time.time_ns() & 0xFFFFFFFF
    findings = sum(_run_random(t, args.seconds, seed, args.crash_dir) for t in targets)
    return 1 if findings else 0


def _use_atheris(args: argparse.Namespace) -> bool:
    wanted = not args.no_atheris and args.replay is None
    return wanted and importlib.util.find_spec("atheris") is not None


def _replay(target: Target, path: Path) -> int:
    try:
        target.check(path.read_bytes())
    except target.allowed as e:
        print(f"refused, as it may be: {e}")
    else:
        print("accepted")
    return 0  # any other exception has propagated with its traceback


def _run_random(target: Target, seconds: float, seed: int, crash_dir: Path) -> int:
    """Batches of the CI loop until the time is up, one seed per batch; returns findings."""
    from tests.fuzz.test_fuzz_tdx import run

    deadline = time.monotonic() + seconds
    inputs = findings = batch = 0
    while time.monotonic() < deadline:
        outcome = run(target, 10_000, seed + batch, keep=10)
        inputs += outcome.inputs
        for data, tb in outcome.failures:
            findings += 1
            print(f"{tb}saved {_save(crash_dir, target.name, data)}", file=sys.stderr)
        batch += 1
    print(f"{target.name}: {inputs} inputs, seeds {seed}..{seed + batch - 1}, {findings} findings")
    return findings


def _run_atheris(target: Target, crash_dir: Path, libfuzzer_args: list[str]) -> int:
    import atheris  # type: ignore[import-untyped, import-not-found, unused-ignore]

    seeds = crash_dir / f"seeds-{target.name}"
    seeds.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(target.corpus):
        (seeds / f"seed-{i}").write_bytes(data)
    check, allowed = target.check, target.allowed

    def one_input(data: bytes) -> None:
        with contextlib.suppress(allowed):  # anything else propagates; libFuzzer saves the input
            check(data)

    prefix = f"-artifact_prefix={crash_dir}/{target.name}-"
    atheris.Setup([sys.argv[0], prefix, *libfuzzer_args, str(seeds)], one_input)
    atheris.Fuzz()
    return 0


def _save(crash_dir: Path, name: str, data: bytes) -> Path:
    crash_dir.mkdir(parents=True, exist_ok=True)
    path = crash_dir / f"{name}-{hashlib.sha256(data).hexdigest()[:16]}"
    path.write_bytes(data)
    return path


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
