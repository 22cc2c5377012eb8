"""``attestctl attestation export-bundle`` and ``sign-keyless``: Sigstore bundles.

docs/sigstore.md says what each bundle proves.

The library is ``attestd.integrations.sigstore``; keyless signing needs the
optional ``sigstore`` extra, which is imported only when it is asked for.
"""

from __future__ import annotations

import argparse
import os
import sys

from attestd.cli._common import (
    EXIT_NOT_AFFIRMING,
    EXIT_OK,
    Commands,
    print_json,
    read_file,
    write_output,
)


def cmd_attestation_export_bundle(args: argparse.Namespace) -> int:
    """Write the agent-signed envelopes as bundles; summarise them unless one went to stdout."""
    from attestd.evidence.provenance import StageAttestation
    from attestd.integrations.sigstore import BUNDLE_MEDIA_TYPE, export_stage_bundles

    attestation = StageAttestation.from_json(read_file(args.file))
    bundles = export_stage_bundles(attestation)
    write_output(args.output, bundles.provenance)
    if args.evidence_bundle:
        write_output(args.evidence_bundle, bundles.evidence)
    if args.public_key:
        write_output(args.public_key, bundles.agent_key_pem.rstrip("\n").encode())
    if "-" not in (args.output, args.evidence_bundle, args.public_key):
        print_json(
            {
                "mediaType": BUNDLE_MEDIA_TYPE,
                "bundle": args.output,
                "evidenceBundle": args.evidence_bundle,
                "publicKey": args.public_key,
                "agentKeyId": bundles.agent_key_id,
                "provenanceDigest": attestation.provenance_digest(),
                "transparencyLog": False,
            }
        )
    return EXIT_OK


def cmd_attestation_sign_keyless(args: argparse.Namespace) -> int:
    """Sign the provenance keylessly (Fulcio, Rekor); exit 1 if Sigstore refused."""
    from attestd.evidence.provenance import StageAttestation
    from attestd.integrations.sigstore import KeylessSigningError, sign_keyless

    attestation = StageAttestation.from_json(read_file(args.file))
    try:
        bundle = sign_keyless(
            attestation, identity_token=args.identity_token or None, staging=args.staging
        )
    except KeylessSigningError as err:
        # Sigstore refused or was unreachable: like an agent refusal, not bad usage.
        print(f"attestctl: {err.diagnostics()}", file=sys.stderr)
        return EXIT_NOT_AFFIRMING
    write_output(args.output, bundle)
    return EXIT_OK


def add_commands(commands: Commands) -> None:
    group = commands.add_parser(
        "attestation", help="export or sign a stage attestation as a Sigstore bundle"
    )
    group_commands = group.add_subparsers(
        dest="attestation_command", required=True, metavar="COMMAND"
    )
    sub = group_commands.add_parser(
        "export-bundle",
        help="the provenance envelope as a Sigstore bundle under the agent key (offline)",
        description="Write the provenance envelope the agent signed as a Sigstore bundle "
        "(v0.3, publicKey hint = agent key id, no transparency-log entry). Exit 0 written, "
        "2 unreadable input or envelopes that do not verify under the agent key.",
    )
    sub.set_defaults(handler=cmd_attestation_export_bundle)
    sub.add_argument("file", metavar="FILE", help="stage attestation, or - for stdin")
    sub.add_argument("-o", "--output", required=True, metavar="BUNDLE", help="bundle file, or -")
    sub.add_argument(
        "--evidence-bundle", metavar="FILE", help="also write the evidence envelope's bundle"
    )
    sub.add_argument("--public-key", metavar="FILE", help="also write the agent public key (PEM)")
    sub = group_commands.add_parser(
        "sign-keyless",
        help="sign the provenance with Fulcio and Rekor for a CI job's OIDC identity",
        description="Sign the provenance statement as DSSE with a Fulcio certificate for an "
        "OIDC identity and record it in Rekor. The identity is --identity-token, else "
        "SIGSTORE_IDENTITY_TOKEN, else the CI job's ambient credential; never a browser. "
        "Exit 0 written, 1 Sigstore refused or was unreachable, 2 no identity or bad input.",
    )
    sub.set_defaults(handler=cmd_attestation_sign_keyless)
    sub.add_argument("file", metavar="FILE", help="stage attestation, or - for stdin")
    sub.add_argument("-o", "--output", required=True, metavar="BUNDLE", help="bundle file, or -")
    sub.add_argument("--staging", action="store_true", help="use Sigstore's staging instance")
    sub.add_argument(
        "--identity-token",
        metavar="TOKEN",
        default=os.environ.get("SIGSTORE_IDENTITY_TOKEN", ""),
        help="OIDC identity token (default: $SIGSTORE_IDENTITY_TOKEN, then ambient CI)",
    )
