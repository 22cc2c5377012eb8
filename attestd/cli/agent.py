"""``attestctl measure``, ``record``, ``evidence``, ``info`` and ``log``: asking the agent.

Each prints the agent's answer as JSON on stdout; ``measure --local`` hashes
in this process with the agent's own library instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from attestd.cli._common import (
    EXIT_OK,
    Commands,
    UsageError,
    add_command,
    add_connection,
    connect,
    evidence_nonce,
    log_checkpoint,
    print_json,
    write_output,
)

if TYPE_CHECKING:
    from attestd.agent.artifacts import Progress
    from attestd.v1.agent_pb2 import RuntimeEvent as RuntimeEventMessage


def cmd_measure(args: argparse.Namespace) -> int:
    """Measure through the agent, or in this process with ``--local``.

    The agent hashes where the artifact roots and the runtime log are, and
    returns only each artifact's digest, so ``-o`` then writes those digests.
    ``--local`` hashes here with the same library: a progress bar on a
    terminal, and ``-o`` writes model_signing's full manifest.
    """
    if args.local:
        if args.gpu:
            raise UsageError("--gpu asks the agent's GPU; it does not go with --local")
        return _measure_local(args)
    if args.algorithm or args.serialization:
        raise UsageError(
            "--algorithm and --serialization need --local (the agent uses sha256 files)"
        )
    with connect(args) as agent:
        artifacts = agent.measure(args.paths, use_gpu=args.gpu)
    summary = [
        {
            "name": a.name,
            "kind": a.kind,
            "digest": dict(a.digest),
            "sizeBytes": a.size_bytes,
            "fileCount": a.file_count,
            "logSequence": a.log_sequence,
        }
        for a in artifacts
    ]
    print_json(summary)
    if args.output:
        write_output(args.output, json.dumps(summary, indent=2).encode())
    return EXIT_OK


def _measure_local(args: argparse.Namespace) -> int:
    from attestd.agent.artifacts import HashingConfig, measure

    config = HashingConfig(
        algorithm=args.algorithm or "sha256", serialization=args.serialization or "files"
    )
    bar = ProgressBar(sys.stderr) if sys.stderr.isatty() else None
    results = []
    for path in args.paths:
        try:
            results.append(measure(Path(path), config=config, progress=bar))
        finally:
            if bar is not None:
                bar.close()
    print_json(
        [
            {
                "name": m.name,
                "kind": m.kind,
                "digest": dict(m.digest),
                "sizeBytes": m.size_bytes,
                "fileCount": m.file_count,
            }
            for m in results
        ]
    )
    if args.output:
        statements = [m.manifest.statement() for m in results if m.manifest is not None]
        document = statements[0] if len(statements) == 1 else statements
        write_output(args.output, json.dumps(document, indent=2, ensure_ascii=False).encode())
    return EXIT_OK


class ProgressBar:
    """One line on a terminal: a bar, files, bytes and rate, redrawn in place."""

    WIDTH = 24

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._drawn = False

    def __call__(self, progress: Progress) -> None:
        if progress.elapsed_s < 0.5 and not self._drawn:
            return  # quick runs stay silent
        total = progress.bytes_total or 1
        fraction = min(1.0, progress.bytes_done / total) if progress.listing_done else 0.0
        filled = int(fraction * self.WIDTH)
        rate = progress.bytes_done / progress.elapsed_s if progress.elapsed_s else 0.0
        more = "" if progress.listing_done else "+"
        line = (
            f"\r[{'#' * filled}{'.' * (self.WIDTH - filled)}] "
            f"{progress.files_done}/{progress.files_total}{more} files  "
            f"{_size(progress.bytes_done)}/{_size(progress.bytes_total)}{more}  "
            f"{_size(rate)}/s "
        )
        self._stream.write(line)
        self._stream.flush()
        self._drawn = True

    def close(self) -> None:
        """End the line, if one was drawn, so the next output starts on its own."""
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


def cmd_record(args: argparse.Namespace) -> int:
    """Record one runtime event; prints where it landed in the log."""
    with connect(args) as agent:
        response = agent.record(args.domain, args.operation, args.content.encode())
    print_json(
        {
            "sequence": response.event.sequence,
            "recordedAt": response.event.recorded_at,
            "digest": response.event.digest.hex(),
            "logHead": response.log_head.hex(),
        }
    )
    return EXIT_OK


def cmd_evidence(args: argparse.Namespace) -> int:
    """Fetch evidence for the given nonce and write the envelope."""
    with connect(args) as agent:
        envelope = agent.evidence(args.nonce, args.artifact, checkpoint=args.checkpoint)
    write_output(args.output, envelope)
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    """Which TEE, root of trust, backend and key the agent uses, and whether it serves."""
    with connect(args) as agent:
        info = agent.info()
    print_json(
        {
            "version": info.version,
            "tee": info.tee,
            "simulated": info.simulated,
            "rootOfTrust": info.root_of_trust,
            "backend": info.backend,
            "agentKeyId": info.agent_key_id,
            "logLength": info.log_length,
            "logHead": info.log_head.hex(),
            "serving": info.serving,
            "servingProblem": info.serving_problem,
        }
    )
    return EXIT_OK


def cmd_log(args: argparse.Namespace) -> int:
    """A page of the agent's runtime log."""
    with connect(args) as agent:
        page = agent.runtime_log(args.start, args.limit)
    print_json(
        {
            "length": page.length,
            "head": page.head.hex(),
            "events": [_log_event_json(e) for e in page.events],
        }
    )
    return EXIT_OK


def _log_event_json(event: RuntimeEventMessage) -> dict[str, object]:
    """One event of ``attestctl log``; ``caller`` only where the agent recorded one."""
    shown: dict[str, object] = {
        "sequence": event.sequence,
        "domain": event.domain,
        "operation": event.operation,
        "content": event.content.decode("utf-8", "backslashreplace"),
        "recordedAt": event.recorded_at,
        "digest": event.digest.hex(),
    }
    if event.HasField("caller"):
        caller = event.caller
        shown["caller"] = {"pid": caller.pid, "uid": caller.uid, "gid": caller.gid}
    return shown


# -- parsers -------------------------------------------------------------------------


def add_measure(commands: Commands) -> None:
    sub = add_command(
        commands,
        "measure",
        cmd_measure,
        "measure files or directories through the agent, or --local",
    )
    sub.add_argument("paths", nargs="+", metavar="PATH")
    sub.add_argument(
        "--local",
        action="store_true",
        help="hash in this process (progress bar on a terminal; -o writes the full manifest)",
    )
    sub.add_argument(
        "--gpu",
        action="store_true",
        help="BLAKE3 on the agent's GPU (files only; refused where the agent has no GPU)",
    )
    sub.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="also write JSON: with --local model_signing's statement (resources and all), "
        "else the agent's digests",
    )
    sub.add_argument("--algorithm", choices=["sha256", "blake2", "blake3"], help="with --local")
    sub.add_argument("--serialization", choices=["files", "shards"], help="with --local")
    add_connection(sub, local_default=True)


def add_record(commands: Commands) -> None:
    sub = add_command(commands, "record", cmd_record, "record a runtime event through the agent")
    sub.add_argument("--domain", required=True)
    sub.add_argument("--operation", required=True)
    sub.add_argument("--content", default="", help="event content (UTF-8 text)")
    add_connection(sub, local_default=True)


def add_evidence(commands: Commands) -> None:
    sub = add_command(
        commands, "evidence", cmd_evidence, "fetch evidence for a nonce and write it to a file"
    )
    sub.add_argument("--nonce", required=True, type=evidence_nonce, help="16 to 64 bytes, hex")
    sub.add_argument("--artifact", action="append", default=[], help="subject name (repeatable)")
    sub.add_argument("-o", "--output", required=True, help="output file, or - for stdout")
    sub.add_argument(
        "--checkpoint",
        type=log_checkpoint,
        metavar="LENGTH:HEXHEAD|FILE",
        help="carry only the log events after this checkpoint (verify with the same one)",
    )
    add_connection(sub, local_default=False)


def add_info(commands: Commands) -> None:
    sub = add_command(
        commands, "info", cmd_info, "show which TEE, root of trust and key the agent uses"
    )
    add_connection(sub, local_default=True)


def add_log(commands: Commands) -> None:
    sub = add_command(commands, "log", cmd_log, "show the agent's runtime log")
    sub.add_argument("--start", type=int, default=0)
    sub.add_argument("--limit", type=int, default=0)
    add_connection(sub, local_default=True)
