"""``attestctl quote inspect`` and ``quote verify``: one raw TDX quote or SEV-SNP report.

The library is ``attestd.verifier.quote`` (docs/quote-tools.md); this module
turns options into its requests and prints its JSON.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from attestd.cli._common import EXIT_NOT_AFFIRMING, EXIT_OK, Commands, print_json, rfc3339

# Spelled out rather than imported so that building the parser loads no TEE code;
# the library refuses any other value again (QuoteInputError, snp abi's product check).
TEES = ("tdx", "sev-snp")
PRODUCTS = ("Milan", "Genoa", "Turin")


def cmd_quote_inspect(args: argparse.Namespace) -> int:
    """Print every field of the quote or report."""
    from attestd.verifier import quote

    evidence = quote.read_evidence(args.file, args.tee)
    print_json(quote.inspect(evidence, product=args.product))
    return EXIT_OK


def cmd_quote_verify(args: argparse.Namespace) -> int:
    """Verify the signature chain (and TCB status, where it can): exit 0 valid, 1 not."""
    from attestd.verifier import quote

    evidence = quote.read_evidence(args.file, args.tee)
    request = quote.VerifyRequest(
        now=args.now or datetime.now(UTC),
        root=args.root,
        collateral=args.collateral,
        vcek=args.vcek,
        certs=args.certs,
        product=args.product,
        crl=args.crl,
    )
    result = quote.verify(evidence, request)
    print_json(result.to_json())
    return EXIT_OK if result.valid else EXIT_NOT_AFFIRMING


def add_commands(commands: Commands) -> None:
    group = commands.add_parser("quote", help="inspect or verify a TDX quote or SEV-SNP report")
    quote_commands = group.add_subparsers(dest="quote_command", required=True, metavar="COMMAND")

    sub = quote_commands.add_parser(
        "inspect", help="print every field of a quote or report as JSON"
    )
    sub.set_defaults(handler=cmd_quote_inspect)
    sub.add_argument("file", help="quote or report, binary or hex, or - for stdin")
    sub.add_argument("--tee", choices=TEES, help="do not detect the TEE")
    sub.add_argument("--product", choices=PRODUCTS, help="SEV-SNP TCB layout if no CPUID says")

    sub = quote_commands.add_parser(
        "verify", help="verify a quote's or report's signature chain and TCB status"
    )
    sub.set_defaults(handler=cmd_quote_verify)
    sub.add_argument("file", help="quote or report, binary or hex, or - for stdin")
    sub.add_argument("--tee", choices=TEES, help="do not detect the TEE")
    sub.add_argument(
        "--root",
        metavar="intel|amd|PATH",
        help="trusted root: intel (TDX default), amd (SEV-SNP default), or a PEM file "
        "such as a simulated root from `attestctl trust-root export`",
    )
    sub.add_argument("--collateral", type=Path, help="TDX: DCAP collateral (QuoteCollateralV3)")
    sub.add_argument("--vcek", type=Path, help="SEV-SNP: the VCEK or VLEK (DER or PEM)")
    sub.add_argument("--certs", type=Path, help="SEV-SNP: a GHCB certificate table")
    sub.add_argument("--product", choices=PRODUCTS, help="SEV-SNP product")
    sub.add_argument(
        "--crl", type=Path, help="SEV-SNP: the ARK's CRL (DER or PEM); checks the ASK's revocation"
    )
    sub.add_argument("--now", type=rfc3339, help="verify as of this time (RFC 3339, with zone)")
