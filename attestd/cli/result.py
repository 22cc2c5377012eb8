"""Signed attestation results (EAR JWTs, docs/attestation-results.md).

``attestctl result verify`` checks a token; the ``--result-*`` options let
``verify``, ``appraise`` and ``chain verify`` sign the result they reach.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from attestd.cli._common import (
    EXIT_NOT_AFFIRMING,
    EXIT_OK,
    Commands,
    UsageError,
    hex_nonce,
    print_json,
    read_file,
    rfc3339,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import (
        EllipticCurvePrivateKey as ResultSigner,
    )


def add_result_options(parser: argparse.ArgumentParser) -> None:
    """``--result-key``, ``--result-out`` and ``--result-lifetime`` for a command that appraises."""
    group = parser.add_argument_group("signed attestation result (EAR JWT, ES256)")
    group.add_argument(
        "--result-key", metavar="PEM", type=Path, help="the verifier's P-256 private key"
    )
    group.add_argument("--result-out", metavar="FILE", help="write the signed result here (or -)")
    group.add_argument(
        "--result-lifetime",
        metavar="SECONDS",
        type=_positive_seconds,
        help="how long the result is valid: exp = iat + SECONDS (default: 3600)",
    )


def _positive_seconds(text: str) -> int:
    try:
        seconds = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of seconds: {text!r}") from None
    if seconds < 1:
        raise argparse.ArgumentTypeError("the lifetime must be at least one second")
    return seconds


def result_signer(args: argparse.Namespace) -> ResultSigner | None:
    """The verifier's key, loaded before any work so a bad key stops the command early."""
    from attestd.verifier import load_signing_key

    if (args.result_key is None) != (args.result_out is None):
        raise UsageError("--result-key and --result-out go together")
    if args.result_key is None:
        if args.result_lifetime is not None:
            raise UsageError("--result-lifetime needs --result-key and --result-out")
        return None
    return load_signing_key(read_file(str(args.result_key)))


def result_lifetime(args: argparse.Namespace) -> timedelta:
    """How long a signed result is valid: ``--result-lifetime``, else the library's default."""
    from attestd.verifier import DEFAULT_RESULT_LIFETIME

    if args.result_lifetime is None:
        return DEFAULT_RESULT_LIFETIME
    return timedelta(seconds=args.result_lifetime)


def write_result_token(token: str, args: argparse.Namespace) -> None:
    """The signed result into ``--result-out``; ``-`` is stderr, as stdout carries the report."""
    if args.result_out == "-":
        sys.stderr.write(token + "\n")
        return
    try:
        Path(args.result_out).write_text(token + "\n", encoding="ascii")
    except OSError as err:
        raise UsageError(f"cannot write {args.result_out}: {err.strerror}") from err


def cmd_result_verify(args: argparse.Namespace) -> int:
    """Verify a result's signature and claims; print the claims and each submod's status."""
    from attestd.verifier import (
        ResultError,
        ResultFormatError,
        ResultKeyError,
        load_verification_key,
        result_statuses,
        verify_result,
    )

    key = load_verification_key(read_file(str(args.key)))
    token = read_file(args.token)
    try:
        claims = verify_result(token, key, nonce=args.nonce, now=args.now)
    except (ResultFormatError, ResultKeyError):
        raise  # unreadable input: exit 2
    except ResultError as err:
        print(f"attestctl: result REJECTED: {err.diagnostics()}", file=sys.stderr)
        return EXIT_NOT_AFFIRMING
    print_json(claims)
    statuses = ", ".join(f"{k}={v}" for k, v in result_statuses(claims).items())
    print(f"attestctl: result signature valid; {statuses}", file=sys.stderr)
    return EXIT_OK


def add_commands(commands: Commands) -> None:
    group = commands.add_parser(
        "result", help="signed attestation results (EAR JWTs, docs/attestation-results.md)"
    )
    group_commands = group.add_subparsers(dest="result_command", required=True, metavar="COMMAND")
    sub = group_commands.add_parser(
        "verify",
        help="verify an attestation result's signature and claims",
        description="Verify an EAR attestation result (ES256 JWT) under the verifier's public "
        "key and print its claims. Exit 0 genuine, 1 rejected (signature, algorithm, claims, "
        "nonce, expired), 2 unreadable input or bad usage. The verdict inside is in each "
        "submod's ear_status. Tokens of the 2023 Veraison EAR profile are accepted too.",
    )
    sub.set_defaults(handler=cmd_result_verify)
    sub.add_argument("token", metavar="JWT", help="result file, or - for stdin")
    sub.add_argument("--key", required=True, type=Path, help="the verifier's public key (PEM)")
    sub.add_argument("--nonce", type=hex_nonce, help="the nonce the result must carry (hex)")
    sub.add_argument("--now", type=rfc3339, help="check exp as of this time (RFC 3339)")
