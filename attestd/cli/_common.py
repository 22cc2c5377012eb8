"""What every ``attestctl`` command shares: exit codes, usage errors, inputs and outputs.

Exit codes: 0 success (for verify/appraise: affirming), 1 the evidence is not
affirming or the agent refused, 2 bad usage or unreadable input.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from attestd._files import FileRefusedError, read_regular_file
from attestd.client import AgentClient
from attestd.errors import AttestdError
from attestd.evidence.provenance import MAX_ATTESTATION_BYTES

if TYPE_CHECKING:
    from attestd.evidence import LogCheckpoint

EXIT_OK = 0
EXIT_NOT_AFFIRMING = 1
EXIT_USAGE = 2
#: The largest file attestctl reads: a stage attestation (evidence, keys and tokens are smaller).
MAX_INPUT_BYTES = MAX_ATTESTATION_BYTES
DEFAULT_SOCKET = "/run/attestd/attestd.sock"

# A string: argparse._SubParsersAction is generic for type checkers only.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""The ``attestctl COMMAND`` sub-parsers each command module adds its commands to."""
Handler = Callable[[argparse.Namespace], int]
"""A command: the parsed arguments in, the exit code out."""


class UsageError(AttestdError):
    """The command line asks for something that cannot be done (exit 2)."""

    reason = "usage"


def add_command(
    commands: Commands, name: str, handler: Handler, help: str
) -> argparse.ArgumentParser:
    """A top-level command whose help is also its description."""
    sub = commands.add_parser(name, help=help, description=help)
    sub.set_defaults(handler=handler)
    return sub


# -- argument types ------------------------------------------------------------------


def hex_nonce(text: str) -> bytes:
    """A nonce given in hex."""
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError("nonce must be hex") from None


def evidence_nonce(text: str) -> bytes:
    """A hex nonce of the length evidence may carry: any other can never match, so it is usage."""
    from attestd.evidence import MAX_NONCE_BYTES, MIN_NONCE_BYTES

    nonce = hex_nonce(text)
    if not MIN_NONCE_BYTES <= len(nonce) <= MAX_NONCE_BYTES:
        raise argparse.ArgumentTypeError(
            f"nonce is {len(nonce)} bytes; it must be {MIN_NONCE_BYTES} to {MAX_NONCE_BYTES}"
        )
    return nonce


def log_checkpoint(text: str) -> LogCheckpoint:
    """A runtime-log checkpoint: ``LENGTH:HEXHEAD``, or a file holding one (as JSON or so)."""
    from attestd.evidence import EvidenceFormatError, parse_checkpoint

    spec = text
    if not re.fullmatch(r"[0-9]+:[0-9a-fA-F]*", text):
        try:  # a checkpoint file, as --write-checkpoint wrote it
            spec = read_regular_file(text, 4096, "checkpoint file").decode("utf-8", "replace")
        except FileRefusedError as err:
            raise argparse.ArgumentTypeError(err.message) from None
    try:
        return parse_checkpoint(spec)
    except EvidenceFormatError as err:
        raise argparse.ArgumentTypeError(f"checkpoint {text!r}: {err.message}") from None


def write_checkpoint(path: str, checkpoint: LogCheckpoint) -> None:
    """Write ``checkpoint`` as JSON, the form :func:`log_checkpoint` reads back."""
    write_output(path, json.dumps(checkpoint.to_json(), sort_keys=True).encode())


def rfc3339(text: str) -> datetime:
    """An RFC 3339 time with a zone (``Z`` or an offset)."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError("the time needs a zone, e.g. 2026-01-01T00:00:00Z")
    return value


# -- the agent connection ------------------------------------------------------------


def add_connection(parser: argparse.ArgumentParser, *, local_default: bool) -> None:
    """The options that reach an agent: a Unix socket, or mutual TLS."""
    group = parser.add_argument_group("connection (a local Unix socket, or mutual TLS)")
    group.add_argument(
        "--socket", default=DEFAULT_SOCKET if local_default else None, help="agent's Unix socket"
    )
    group.add_argument("--agent", metavar="HOST:PORT", help="agent's mutual-TLS address")
    group.add_argument("--cert", type=Path, help="client certificate (PEM)")
    group.add_argument("--key", type=Path, help="client private key (PEM)")
    group.add_argument("--ca", type=Path, help="CA that issued the agent's server certificate")
    group.add_argument("--server-name", help="expected name in the agent's certificate")


def connect(args: argparse.Namespace) -> AgentClient:
    """A client for the agent the connection options name; UsageError if they name none."""
    if args.agent:
        if not (args.cert and args.key and args.ca):
            raise UsageError("--agent needs --cert, --key and --ca")
        try:
            return AgentClient.mtls(
                args.agent, cert=args.cert, key=args.key, ca=args.ca, server_name=args.server_name
            )
        except OSError as err:
            raise UsageError(f"cannot read {err.filename}: {err.strerror}") from err
    if args.socket:
        return AgentClient.unix(args.socket)
    raise UsageError("give --socket PATH or --agent HOST:PORT with --cert, --key and --ca")


# -- input and output ----------------------------------------------------------------


def print_json(value: object) -> None:
    """``value`` as indented JSON on stdout, keys in the order given."""
    json.dump(value, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def write_output(path: str, data: bytes) -> None:
    """``data`` into the file ``path``; ``-`` writes it, and a newline, to stdout."""
    if path == "-":
        sys.stdout.buffer.write(data + b"\n")
    else:
        Path(path).write_bytes(data)


def read_file(name: str, what: str = "input file", max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of the file ``name`` (``-``: stdin), a regular file of at most ``max_bytes``.

    A FIFO, device or directory is refused rather than read: it could block or never end.
    """
    if name == "-":
        data = sys.stdin.buffer.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise UsageError(f"{what} on stdin is larger than {max_bytes} bytes")
        return data
    try:
        return read_regular_file(name, max_bytes, what)
    except FileRefusedError as err:
        raise UsageError(err.message) from err
