"""``attestctl chain verify``: a pipeline's stage attestations against its layout (docs/layout.md).

Prints the library's table (``ChainResult.render_table``) or, with ``--json``,
its JSON; exit 0 verified, 1 not, 2 unreadable input or bad usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from attestd.cli._common import (
    EXIT_NOT_AFFIRMING,
    EXIT_OK,
    EXIT_USAGE,
    Commands,
    UsageError,
    print_json,
    read_file,
    rfc3339,
)
from attestd.cli.result import (
    add_result_options,
    result_lifetime,
    result_signer,
    write_result_token,
)

if TYPE_CHECKING:
    from attestd.verifier.layout import Layout


def cmd_chain_verify(args: argparse.Namespace) -> int:
    """Verify the attestations as one chain, optionally closed by an OMS model signature."""
    from attestd.verifier import OmsClosing, load_layout, verify_chain

    signer = result_signer(args)
    layout_bytes: bytes | None = None  # a --layout file is read again only to sign a result
    if args.layout is not None:
        if args.layout_key is not None:
            raise UsageError("--layout-key goes with --layout-attestation, not --layout")
        layout = load_layout(args.layout)
    else:
        layout_bytes, layout = _signed_layout(args)
    attestations = [read_file(name, "attestation") for name in args.attestations]
    closing = None
    if args.oms_bundle is not None:
        if (args.oms_key is None) == (not args.oms_certificate):
            raise UsageError("--oms-bundle needs --oms-key PEM or --oms-certificate PEM ...")
        closing = OmsClosing(
            args.oms_bundle, args.oms_key, tuple(args.oms_certificate), args.oms_artifact
        )
    elif args.oms_key or args.oms_certificate or args.oms_artifact:
        raise UsageError("--oms-key, --oms-certificate and --oms-artifact need --oms-bundle")
    result = verify_chain(attestations, layout, labels=args.attestations, now=args.now, oms=closing)
    if signer is not None:
        from attestd.verifier import policy_digest, sign_chain_result

        # The result names the layout it was checked against: the file, or the signed text.
        if layout_bytes is None:
            layout_bytes = read_file(str(args.layout))
        digest = policy_digest(layout_bytes)
        token = sign_chain_result(
            result, signer, policy_digest=digest, now=args.now, lifetime=result_lifetime(args)
        )
        write_result_token(token, args)
    if args.json:
        print_json(result.to_json())
    else:
        sys.stdout.write(result.render_table())
    if result.affirming:
        return EXIT_OK
    # Files that are not stage attestations at all are unreadable input, not a verdict.
    return EXIT_USAGE if "attestation_malformed" in result.reasons else EXIT_NOT_AFFIRMING


def _signed_layout(args: argparse.Namespace) -> tuple[bytes, Layout]:
    """The layout inside ``--layout-attestation``, once it verifies under ``--layout-key``."""
    from attestd.verifier.ear import load_verification_key
    from attestd.verifier.layout_attestation import open_layout_attestation

    if args.layout_key is None:
        raise UsageError("--layout-attestation needs --layout-key PEM (the layout's signer)")
    key = load_verification_key(read_file(str(args.layout_key), "layout key"))
    data = read_file(str(args.layout_attestation), "layout attestation")
    signed = open_layout_attestation(data, key, source=args.layout_attestation)
    return signed.text.encode("utf-8"), signed.layout


def add_commands(commands: Commands) -> None:
    chain = commands.add_parser(
        "chain", help="verify a pipeline's chain of stage attestations (docs/layout.md)"
    )
    chain_commands = chain.add_subparsers(dest="chain_command", required=True, metavar="COMMAND")
    sub = chain_commands.add_parser(
        "verify",
        help="verify stage attestations against a pipeline layout",
        description="Verify stage attestations against a pipeline layout: each stage's TEE "
        "evidence, provenance and signatures, then the chain (order, run, inputs, licences, "
        "tags), optionally closed by an OMS model signature. Exit 0 verified, 1 not, "
        "2 unreadable input or bad usage.",
    )
    sub.set_defaults(handler=cmd_chain_verify)
    sub.add_argument("attestations", nargs="+", metavar="ATTESTATION", help="stage attestation")
    which = sub.add_mutually_exclusive_group(required=True)
    which.add_argument("--layout", type=Path, help="pipeline layout (TOML)")
    which.add_argument(
        "--layout-attestation",
        type=Path,
        help="the layout as a signed in-toto attestation (`attestctl layout sign`)",
    )
    sub.add_argument(
        "--layout-key", type=Path, help="the layout signer's public key (PEM), to verify it with"
    )
    sub.add_argument("--json", action="store_true", help="print the chain result as JSON")
    sub.add_argument("--now", type=rfc3339, help="verify as of this time (RFC 3339, with zone)")
    oms = sub.add_argument_group("closing with an OpenSSF model signature (the oms extra)")
    oms.add_argument("--oms-bundle", type=Path, help="model_signing signature bundle")
    oms.add_argument("--oms-key", type=Path, help="the signer's public key (PEM)")
    oms.add_argument(
        "--oms-certificate",
        type=Path,
        nargs="+",
        action="extend",
        default=[],
        help="certificates (PEM) to verify a certificate-signed bundle with",
    )
    oms.add_argument(
        "--oms-artifact", help="the last stage's output the signature is for (if several)"
    )
    add_result_options(sub)
