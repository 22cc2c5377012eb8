"""``attestctl verify``, ``appraise`` and ``trust-root export``: appraising evidence.

``verify`` appraises an evidence file against the nonce it was asked for;
``appraise`` asks the agent for evidence with a fresh nonce and appraises it.
Both print the result as JSON and exit 0 only when it is affirming.

With ``--checkpoint`` (``LENGTH:HEXHEAD`` or a file ``--write-checkpoint``
wrote after an earlier affirming appraisal) the evidence carries, and the
appraisal replays, only the runtime-log events after it. ``appraise
--full-log`` also fetches the events before the checkpoint page by page and
checks that they chain to it (``logPrefix`` in the JSON); without a
checkpoint it takes the agent's current length and head as the checkpoint,
which the appraisal then ties to the quote.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attestd.cli._common import (
    EXIT_NOT_AFFIRMING,
    EXIT_OK,
    EXIT_USAGE,
    Commands,
    UsageError,
    add_command,
    add_connection,
    connect,
    evidence_nonce,
    log_checkpoint,
    print_json,
    read_file,
    rfc3339,
    write_checkpoint,
    write_output,
)
from attestd.cli.result import (
    add_result_options,
    result_lifetime,
    result_signer,
    write_result_token,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import (
        EllipticCurvePrivateKey as ResultSigner,
    )

    from attestd.client import AgentClient
    from attestd.evidence import LogCheckpoint
    from attestd.verifier import AppraisalResult


def _appraise_and_report(
    evidence: bytes,
    nonce: bytes,
    args: argparse.Namespace,
    signer: ResultSigner | None = None,
    prefix: Callable[[], dict[str, object]] | None = None,
) -> int:
    from attestd.verifier import appraise, load_policy, policy_digest, sign_result

    policy = load_policy(args.policy)
    checkpoint = args.checkpoint
    result = appraise(evidence, nonce=nonce, policy=policy, now=args.now, checkpoint=checkpoint)
    if signer is not None:
        digest = policy_digest(read_file(str(args.policy)))
        token = sign_result(
            result,
            signer,
            policy_digest=digest,
            nonce=nonce,
            now=args.now,
            lifetime=result_lifetime(args),
        )
        write_result_token(token, args)
    report = result.to_json()
    prefix_ok = True
    if prefix is not None and result.affirming:
        # Only once the quote vouches for the checkpoint do the earlier events mean anything.
        report["logPrefix"] = prefix()
        prefix_ok = report["logPrefix"]["status"] == "affirming"
    if getattr(args, "summary", False):
        _print_summary(result, report)
    print_json(report)
    if result.affirming and prefix_ok:
        if args.write_checkpoint:
            write_checkpoint(args.write_checkpoint, _reached(evidence, checkpoint))
        return EXIT_OK
    # Bytes that are not evidence at all are unreadable input, not a verdict.
    return EXIT_USAGE if "evidence_format" in result.failed_names else EXIT_NOT_AFFIRMING


def _reached(evidence: bytes, checkpoint: LogCheckpoint | None) -> LogCheckpoint:
    """The checkpoint affirmed evidence reaches: where the next request may start."""
    from attestd.evidence import LOG_START, checkpoint_after, open_evidence

    _, statement = open_evidence(evidence)
    start = checkpoint or LOG_START  # the appraisal checked logStart is exactly this
    return checkpoint_after(start, statement.predicate.runtime_log)


def _log_prefix(agent: AgentClient, checkpoint: LogCheckpoint) -> Callable[[], dict[str, object]]:
    """Fetch the events before ``checkpoint`` page by page and check they chain to it."""

    def check() -> dict[str, object]:
        from attestd.evidence import LogPrefixError

        try:
            events = agent.log_prefix(checkpoint)
        except LogPrefixError as err:
            return {"status": "contraindicated", "reason": err.reason, "detail": err.message}
        return {
            "status": "affirming",
            "events": len(events),
            "detail": f"the first {len(events)} events chain to the checkpoint's head",
        }

    return check


def _print_summary(result: AppraisalResult, report: dict[str, Any]) -> None:
    """A few lines for people, on stderr so stdout stays machine-readable JSON.

    ``report`` is ``result.to_json()``: the summary quotes its TEE, root and
    evidence members as the JSON on stdout shows them.
    """
    out = sys.stderr
    out.write(f"attestctl: appraisal {result.status.value.upper()}\n")
    for key in ("tee", "rootOfTrust", "evidence"):
        out.write(f"  {key}: {json.dumps(report[key], sort_keys=True)}\n")
    for check in result.checks:
        reason = f" ({check.reason})" if check.reason else ""
        out.write(f"  [{check.status.value}] {check.name}{reason}\n")


def cmd_verify(args: argparse.Namespace) -> int:
    """Appraise an evidence file against the nonce it was asked for and a policy."""
    signer = result_signer(args)
    evidence = read_file(args.file, "evidence")
    return _appraise_and_report(evidence, args.nonce, args, signer)


def cmd_appraise(args: argparse.Namespace) -> int:
    """Fetch evidence with a fresh 32-byte nonce and appraise it."""
    from attestd.evidence import LogCheckpoint

    signer = result_signer(args)
    nonce = secrets.token_bytes(32)
    with connect(args) as agent:
        if args.full_log and args.checkpoint is None:
            # The agent's claim, checked twice: the quote must vouch for the log from this
            # head on, and the pages before it must replay to it.
            info = agent.info()
            args.checkpoint = LogCheckpoint(info.log_length, bytes(info.log_head))
        evidence = agent.evidence(nonce, args.artifact, checkpoint=args.checkpoint)
        if args.save_evidence:
            Path(args.save_evidence).write_bytes(evidence)
        prefix = _log_prefix(agent, args.checkpoint) if args.full_log else None
        return _appraise_and_report(evidence, nonce, args, signer, prefix)


def cmd_trust_root_export(args: argparse.Namespace) -> int:
    """Write the root a simulated TEE signs under, from an agent's state directory."""
    from attestd.tee.snp.simulated import STATE_SUBDIR as SNP_STATE
    from attestd.tee.snp.simulated import SimulatedSnpBackend
    from attestd.tee.tdx.simulated import STATE_SUBDIR as TDX_STATE
    from attestd.tee.tdx.simulated import SimulatedTdxBackend

    exporters: dict[str, tuple[Path, Callable[[Path], bytes]]] = {
        "simulated-tdx": (TDX_STATE, lambda d: SimulatedTdxBackend.open(d).trust_root_pem()),
        "simulated-snp": (SNP_STATE, lambda d: SimulatedSnpBackend.open(d).trust_root_pem()),
    }
    # Exporting must never create a simulated TEE where there was none.
    present = [
        name
        for name, (subdir, _) in exporters.items()
        if (args.state_dir / subdir).is_dir() and args.tee in (None, name)
    ]
    if not present:
        raise UsageError(f"no simulated TEE state under {args.state_dir}")
    if len(present) > 1:
        raise UsageError("both simulated TDX and SNP state exist; choose one with --tee")
    root = exporters[present[0]][1](args.state_dir)
    write_output(args.output, root.rstrip(b"\n"))
    return EXIT_OK


# -- parsers -------------------------------------------------------------------------


def add_verify(commands: Commands) -> None:
    sub = add_command(
        commands, "verify", cmd_verify, "appraise an evidence file against a nonce and a policy"
    )
    sub.add_argument("file", help="evidence file (DSSE envelope), or - for stdin")
    sub.add_argument("--nonce", required=True, type=evidence_nonce, help="16 to 64 bytes, hex")
    sub.add_argument("--policy", required=True, type=Path)
    sub.add_argument("--now", type=rfc3339, help="appraise as of this time (RFC 3339)")
    sub.add_argument("--summary", action="store_true", help="also print a summary on stderr")
    _add_checkpoint_options(sub)
    add_result_options(sub)


def add_appraise(commands: Commands) -> None:
    sub = add_command(
        commands, "appraise", cmd_appraise, "fetch evidence with a fresh nonce and appraise it"
    )
    sub.add_argument("--policy", required=True, type=Path)
    sub.add_argument("--artifact", action="append", default=[], help="subject name (repeatable)")
    sub.add_argument("--save-evidence", metavar="FILE", help="also keep the evidence")
    sub.add_argument("--quiet", dest="summary", action="store_false", help="no summary on stderr")
    _add_checkpoint_options(sub)
    sub.add_argument(
        "--full-log",
        action="store_true",
        help="also fetch the log before the checkpoint (the agent's head, if none is given) "
        "page by page and check that it chains to it",
    )
    sub.set_defaults(now=None)
    add_result_options(sub)
    add_connection(sub, local_default=False)


def _add_checkpoint_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--checkpoint",
        type=log_checkpoint,
        metavar="LENGTH:HEXHEAD|FILE",
        help="the log checkpoint the evidence was asked from: its log replays from there",
    )
    sub.add_argument(
        "--write-checkpoint",
        metavar="FILE",
        help="after an affirming appraisal, write the checkpoint it reached (for --checkpoint)",
    )


def add_trust_root(commands: Commands) -> None:
    trust = commands.add_parser("trust-root", help="trust roots of simulated TEEs")
    trust_commands = trust.add_subparsers(dest="trust_command", required=True, metavar="COMMAND")
    sub = trust_commands.add_parser(
        "export",
        help="export a simulated root (TDX root CA or SNP ARK) from an agent's state directory",
    )
    sub.set_defaults(handler=cmd_trust_root_export)
    sub.add_argument("--state-dir", required=True, type=Path)
    sub.add_argument("--tee", choices=["simulated-tdx", "simulated-snp"])
    sub.add_argument("-o", "--output", default="-", help="output file, or - for stdout")
