"""``attestctl conformance run`` and ``conformance adapter``: the suite of docs/conformance.md.

    attestctl conformance run --suite conformance/ --adapter "attestctl conformance adapter"
    attestctl conformance adapter evidence 2025-02-04T00:00:02Z evidence=... policy=...

``run`` judges every case through an adapter command, prints a pass/fail table
and writes a JSON report; ``adapter`` is attestd's own adapter, answering one
case by the protocol (``accept`` or ``refuse REASON``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from attestd.cli._common import EXIT_NOT_AFFIRMING, EXIT_OK, EXIT_USAGE, Commands


def cmd_run(args: argparse.Namespace) -> int:
    from attestd.conformance import load_suite, run_suite

    suite = load_suite(Path(args.suite), Path(args.vectors) if args.vectors else None)
    report = run_suite(suite, shlex.split(args.adapter), strict=args.strict, timeout=args.timeout)
    print(report.table())
    document = json.dumps(report.to_json(), indent=2) + "\n"
    if args.report == "-":
        sys.stdout.write(document)
    else:
        Path(args.report).write_text(document)
    return EXIT_OK if report.failed == 0 else EXIT_NOT_AFFIRMING


def cmd_adapter(args: argparse.Namespace) -> int:
    from attestd.conformance.adapter import judge_files
    from attestd.evidence import parse_rfc3339

    inputs: dict[str, Path] = {}
    for item in args.inputs:
        role, sep, path = item.partition("=")
        if not sep or not role:
            print(f"attestctl: an input is ROLE=PATH, not {item!r}", file=sys.stderr)
            return EXIT_USAGE
        inputs[role] = Path(path)
    print(judge_files(args.kind, inputs, parse_rfc3339(args.now)).line())
    return EXIT_OK


def add_commands(commands: Commands) -> None:
    group = commands.add_parser("conformance", help="run the conformance suite against a verifier")
    sub_commands = group.add_subparsers(dest="conformance_command", required=True, metavar="CMD")

    sub = sub_commands.add_parser("run", help="judge every case through an adapter command")
    sub.set_defaults(handler=cmd_run)
    sub.add_argument("--suite", default="conformance", help="the suite's directory")
    sub.add_argument("--adapter", required=True, help="the adapter command line (shell words)")
    sub.add_argument("--strict", action="store_true", help="a different reason is a failure")
    sub.add_argument(
        "--vectors", help="the real vendor vectors (default: shared/vectors beside the repository)"
    )
    sub.add_argument("--timeout", type=float, default=30.0, help="seconds per case")
    sub.add_argument("--report", default="conformance-report.json", help="JSON report (or -)")

    sub = sub_commands.add_parser("adapter", help="attestd's adapter: judge one case")
    sub.set_defaults(handler=cmd_adapter)
    sub.add_argument("kind", help="quote, quote-snp, evidence, chain or ear")
    sub.add_argument("now", help="the injected time, RFC 3339")
    sub.add_argument("inputs", nargs="*", help="ROLE=PATH, one per input file")
