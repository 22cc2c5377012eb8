"""``attestctl``: the operator's and verifier's command line, a thin layer over the library.

One module per command group, each with its handlers (``cmd_*``) and the
function that adds its parsers:

* ``agent``       -- ``measure``, ``record``, ``evidence``, ``info``, ``log``
* ``appraise``    -- ``verify``, ``appraise``, ``trust-root export``
* ``quote``       -- ``quote inspect``, ``quote verify``
* ``stage``       -- ``stage begin``, ``end``, ``abort``
* ``chain``       -- ``chain verify``
* ``layout``      -- ``layout from-kfp``
* ``attestation`` -- ``attestation export-bundle``, ``sign-keyless``
* ``result``      -- ``result verify``, and the ``--result-*`` signing options
* ``devpki``      -- ``dev-pki``
* ``fleet``       -- ``fleet add``, ``remove``, ``list``, ``status``, ``pin``

Exit codes: 0 success (for verify/appraise: affirming), 1 the evidence is not
affirming or the agent refused, 2 bad usage or unreadable input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import attestd
from attestd.cli import (
    agent,
    appraise,
    attestation,
    chain,
    conformance,
    devpki,
    fleet,
    layout,
    quote,
    result,
    stage,
)
from attestd.cli._common import (
    DEFAULT_SOCKET,
    EXIT_NOT_AFFIRMING,
    EXIT_OK,
    EXIT_USAGE,
    Commands,
    UsageError,
)
from attestd.client import AgentCallError
from attestd.errors import AttestdError

__all__ = [
    "DEFAULT_SOCKET",
    "EXIT_NOT_AFFIRMING",
    "EXIT_OK",
    "EXIT_USAGE",
    "UsageError",
    "build_parser",
    "main",
]

_COMMANDS: tuple[Callable[[Commands], None], ...] = (
    agent.add_measure,
    agent.add_record,
    agent.add_evidence,
    appraise.add_verify,
    appraise.add_appraise,
    agent.add_info,
    agent.add_log,
    appraise.add_trust_root,
    quote.add_commands,
    stage.add_commands,
    chain.add_commands,
    layout.add_commands,
    attestation.add_commands,
    result.add_commands,
    devpki.add_dev_pki,
    fleet.add_commands,
    conformance.add_commands,
)
"""Each adds its commands to ``attestctl``, in the order ``--help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    """The ``attestctl`` parser: every command, its handler set as ``handler``."""
    parser = argparse.ArgumentParser(
        prog="attestctl",
        description="attestctl: the operator's and verifier's command line for attestd.",
    )
    parser.add_argument("--version", action="version", version=f"attestctl {attestd.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit code, with library errors as messages rather than tracebacks."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
        return code
    except AgentCallError as err:
        print(f"attestctl: the agent refused: {err}", file=sys.stderr)
        return EXIT_NOT_AFFIRMING
    except AttestdError as err:
        print(f"attestctl: {err.diagnostics()}", file=sys.stderr)
        return EXIT_USAGE
