"""``attestctl stage begin``, ``end`` and ``abort``: a pipeline stage's lifecycle.

docs/lifecycle.md describes the lifecycle.

``begin`` measures the inputs and prints the run id; ``end`` measures the
outputs and writes the stage attestation the agent returns; ``abort`` closes
the stage without one.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence

from attestd.cli._common import (
    EXIT_OK,
    Commands,
    UsageError,
    add_connection,
    connect,
    print_json,
    read_file,
    write_output,
)
from attestd.client import ArtifactSpec


def stage_artifacts(
    declared: Sequence[str], tagged: Sequence[str], flag: str
) -> list[ArtifactSpec]:
    """``PATH[=SPDX]`` arguments and ``PATH=TAG`` arguments as specs with absolute paths.

    The licence follows the last ``=`` (SPDX expressions have none), so a path
    that itself contains ``=`` is written with a trailing ``=``. A tag names its
    path exactly as it was given to ``--{flag}``; tags may contain ``=``.
    """
    specs: dict[str, tuple[str | None, list[str]]] = {}
    for text in declared:
        path, sep, licence = text.rpartition("=")
        if not sep:
            path, licence = text, ""
        if not path:
            raise UsageError(f"--{flag} {text!r}: no path")
        if path in specs:
            raise UsageError(f"--{flag} {path!r} is given twice")
        specs[path] = (licence or None, [])
    for text in tagged:
        owners = [p for p in specs if text.startswith(p + "=") and len(text) > len(p) + 1]
        if not owners:
            raise UsageError(f"--{flag}-tag {text!r}: expected PATH=TAG for a --{flag} PATH")
        owner = max(owners, key=len)
        specs[owner][1].append(text[len(owner) + 1 :])
    return [
        ArtifactSpec(path=os.path.abspath(path), license=licence or "", tags=tags)
        for path, (licence, tags) in specs.items()
    ]


def cmd_stage_begin(args: argparse.Namespace) -> int:
    """Open a stage with its inputs; prints the run id."""
    previous = b""
    if args.previous:
        previous = read_file(args.previous, "previous attestation")
    inputs = stage_artifacts(args.input, args.input_tag, "input")
    with connect(args) as agent:
        begun = agent.begin_stage(
            args.pipeline,
            args.stage,
            inputs=inputs,
            run_id=args.run_id,
            previous_attestation=previous,
        )
    print(begun.run_id)
    return EXIT_OK


def cmd_stage_end(args: argparse.Namespace) -> int:
    """Close the stage with its outputs; write the attestation and, to a file, summarise it."""
    from attestd.evidence.provenance import StageAttestation

    outputs = stage_artifacts(args.output, args.output_tag, "output")
    with connect(args) as agent:
        attestation = agent.end_stage(outputs)
    write_output(args.attestation, attestation)
    if args.attestation != "-":
        parsed = StageAttestation.from_json(attestation).read_provenance()
        provenance = parsed.provenance
        print_json(
            {
                "pipeline": provenance.pipeline,
                "runId": provenance.run_id,
                "stage": provenance.stage,
                "provenanceDigest": parsed.digest,
                "subjects": parsed.subjects_json(),
                "attestation": args.attestation,
            }
        )
    return EXIT_OK


def cmd_stage_abort(args: argparse.Namespace) -> int:
    """Close the stage without an attestation; prints the abort event the log keeps."""
    with connect(args) as agent:
        event = agent.abort_stage(args.reason)
    print_json({"sequence": event.sequence, **json.loads(event.content)})
    return EXIT_OK


def add_commands(commands: Commands) -> None:
    stage = commands.add_parser(
        "stage",
        help="open, close or abort a pipeline stage (docs/lifecycle.md)",
        description="Open a pipeline stage with its inputs, close it with its outputs, and "
        "keep the stage attestation the agent returns; or abort it without one.",
    )
    stage_commands = stage.add_subparsers(dest="stage_command", required=True, metavar="COMMAND")

    sub = stage_commands.add_parser(
        "begin", help="open a stage: measure its inputs; prints the run id"
    )
    sub.set_defaults(handler=cmd_stage_begin)
    sub.add_argument("--pipeline", required=True)
    sub.add_argument("--stage", required=True)
    sub.add_argument("--run-id", default="", help="default: the previous stage's, or a new one")
    sub.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="PATH[=SPDX]",
        help="an input and its licence, e.g. /srv/models/base=Apache-2.0 (repeatable)",
    )
    sub.add_argument(
        "--input-tag",
        action="append",
        default=[],
        metavar="PATH=TAG",
        help="a policy tag of an --input PATH, e.g. /srv/data=pii=none (repeatable)",
    )
    sub.add_argument("--previous", metavar="FILE", help="the previous stage's attestation")
    add_connection(sub, local_default=True)

    sub = stage_commands.add_parser(
        "end", help="close the open stage: measure its outputs; write its attestation"
    )
    sub.set_defaults(handler=cmd_stage_end)
    sub.add_argument(
        "--output",
        action="append",
        default=[],
        metavar="PATH[=SPDX]",
        help="an output and its licence (repeatable)",
    )
    sub.add_argument(
        "--output-tag",
        action="append",
        default=[],
        metavar="PATH=TAG",
        help="a policy tag of an --output PATH (repeatable)",
    )
    sub.add_argument(
        "-o", dest="attestation", required=True, metavar="FILE", help="attestation file, or -"
    )
    add_connection(sub, local_default=True)

    sub = stage_commands.add_parser(
        "abort", help="close the open stage without an attestation; prints the abort event"
    )
    sub.set_defaults(handler=cmd_stage_abort)
    sub.add_argument(
        "--reason", default="", metavar="TEXT", help="why, for the log (at most 1024 bytes)"
    )
    add_connection(sub, local_default=True)
