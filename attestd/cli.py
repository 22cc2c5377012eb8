"""``attestctl``: the operator's and verifier's command line, a thin layer over the library.

Exit codes: 0 success (for verify/appraise: affirming), 1 the evidence is not
affirming or the agent refused, 2 bad usage or unreadable input.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import attestd
from attestd._files import FileRefusedError, read_regular_file
from attestd.client import AgentCallError, AgentClient, ArtifactSpec
from attestd.errors import AttestdError
from attestd.evidence.provenance import MAX_ATTESTATION_BYTES

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import (
        EllipticCurvePrivateKey as ResultSigner,
    )

    from attestd.agent.artifacts import Progress
    from attestd.v1.agent_pb2 import RuntimeEvent as RuntimeEventMessage

EXIT_OK = 0
EXIT_NOT_AFFIRMING = 1
EXIT_USAGE = 2
#: The largest file attestctl reads: a stage attestation (evidence, keys and tokens are smaller).
_MAX_INPUT_BYTES = MAX_ATTESTATION_BYTES
DEFAULT_SOCKET = "/run/attestd/attestd.sock"


class UsageError(AttestdError):
    reason = "usage"


def _hex_nonce(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError("nonce must be hex") from None


def _evidence_nonce(text: str) -> bytes:
    """A hex nonce of the length evidence may carry: any other can never match, so it is usage."""
    from attestd.evidence import MAX_NONCE_BYTES, MIN_NONCE_BYTES

    nonce = _hex_nonce(text)
    if not MIN_NONCE_BYTES <= len(nonce) <= MAX_NONCE_BYTES:
        raise argparse.ArgumentTypeError(
            f"nonce is {len(nonce)} bytes; it must be {MIN_NONCE_BYTES} to {MAX_NONCE_BYTES}"
        )
    return nonce


def _rfc3339(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError("the time needs a zone, e.g. 2026-01-01T00:00:00Z")
    return value


def _add_connection(parser: argparse.ArgumentParser, *, local_default: bool) -> None:
    group = parser.add_argument_group("connection (a local Unix socket, or mutual TLS)")
    group.add_argument(
        "--socket", default=DEFAULT_SOCKET if local_default else None, help="agent's Unix socket"
    )
    group.add_argument("--agent", metavar="HOST:PORT", help="agent's mutual-TLS address")
    group.add_argument("--cert", type=Path, help="client certificate (PEM)")
    group.add_argument("--key", type=Path, help="client private key (PEM)")
    group.add_argument("--ca", type=Path, help="CA that issued the agent's server certificate")
    group.add_argument("--server-name", help="expected name in the agent's certificate")


def _connect(args: argparse.Namespace) -> AgentClient:
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


def _print_json(value: object) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def _write_output(path: str, data: bytes) -> None:
    if path == "-":
        sys.stdout.buffer.write(data + b"\n")
    else:
        Path(path).write_bytes(data)


# -- commands --------------------------------------------------------------------


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
    with _connect(args) as agent:
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
    _print_json(summary)
    if args.output:
        _write_output(args.output, json.dumps(summary, indent=2).encode())
    return EXIT_OK


def _measure_local(args: argparse.Namespace) -> int:
    from attestd.agent.artifacts import HashingConfig, measure

    config = HashingConfig(
        algorithm=args.algorithm or "sha256", serialization=args.serialization or "files"
    )
    bar = _ProgressBar(sys.stderr) if sys.stderr.isatty() else None
    results = []
    for path in args.paths:
        try:
            results.append(measure(Path(path), config=config, progress=bar))
        finally:
            if bar is not None:
                bar.close()
    _print_json(
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
        _write_output(args.output, json.dumps(document, indent=2, ensure_ascii=False).encode())
    return EXIT_OK


class _ProgressBar:
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
    with _connect(args) as agent:
        response = agent.record(args.domain, args.operation, args.content.encode())
    _print_json(
        {
            "sequence": response.event.sequence,
            "recordedAt": response.event.recorded_at,
            "digest": response.event.digest.hex(),
            "logHead": response.log_head.hex(),
        }
    )
    return EXIT_OK


def cmd_evidence(args: argparse.Namespace) -> int:
    with _connect(args) as agent:
        envelope = agent.evidence(args.nonce, args.artifact)
    _write_output(args.output, envelope)
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    with _connect(args) as agent:
        info = agent.info()
    _print_json(
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
    with _connect(args) as agent:
        page = agent.runtime_log(args.start, args.limit)
    _print_json(
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


def _appraise_and_report(
    evidence: bytes, nonce: bytes, args: argparse.Namespace, signer: ResultSigner | None = None
) -> int:
    from attestd.verifier import appraise, load_policy, policy_digest, sign_result

    policy = load_policy(args.policy)
    result = appraise(evidence, nonce=nonce, policy=policy, now=args.now)
    if signer is not None:
        digest = policy_digest(_read_file(str(args.policy)))
        token = sign_result(
            result,
            signer,
            policy_digest=digest,
            nonce=nonce,
            now=args.now,
            lifetime=_result_lifetime(args),
        )
        _write_result_token(token, args)
    report = result.to_json()
    if getattr(args, "summary", False):
        _print_summary(report)
    _print_json(report)
    if result.status == "affirming":
        return EXIT_OK
    # Bytes that are not evidence at all are unreadable input, not a verdict.
    return EXIT_USAGE if "evidence_format" in _failed_checks(report) else EXIT_NOT_AFFIRMING


def _failed_checks(report: dict[str, object]) -> set[str]:
    checks = report.get("checks", [])
    if not isinstance(checks, list):
        return set()
    return {str(c.get("name")) for c in checks if isinstance(c, dict) and c.get("status") == "fail"}


def _print_summary(report: dict[str, object]) -> None:
    """A few lines for people, on stderr so stdout stays machine-readable JSON."""
    out = sys.stderr
    status = str(report.get("status", "?")).upper()
    out.write(f"attestctl: appraisal {status}\n")
    for key in ("tee", "rootOfTrust", "evidence"):
        if key in report:
            out.write(f"  {key}: {json.dumps(report[key], sort_keys=True)}\n")
    checks = report.get("checks", [])
    if isinstance(checks, list):
        for check in checks:
            if isinstance(check, dict):
                reason = f" ({check['reason']})" if check.get("reason") else ""
                out.write(f"  [{check.get('status')}] {check.get('name')}{reason}\n")


def cmd_verify(args: argparse.Namespace) -> int:
    signer = _result_signer(args)
    evidence = _read_file(args.file, "evidence")
    return _appraise_and_report(evidence, args.nonce, args, signer)


def cmd_appraise(args: argparse.Namespace) -> int:
    signer = _result_signer(args)
    nonce = secrets.token_bytes(32)
    with _connect(args) as agent:
        evidence = agent.evidence(nonce, args.artifact)
    if args.save_evidence:
        Path(args.save_evidence).write_bytes(evidence)
    return _appraise_and_report(evidence, nonce, args, signer)


def cmd_trust_root_export(args: argparse.Namespace) -> int:
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
    _write_output(args.output, root.rstrip(b"\n"))
    return EXIT_OK


def cmd_quote_inspect(args: argparse.Namespace) -> int:
    from attestd import quotetool

    evidence = quotetool.read_evidence(args.file, args.tee)
    _print_json(quotetool.inspect(evidence, product=args.product))
    return EXIT_OK


def cmd_quote_verify(args: argparse.Namespace) -> int:
    from datetime import UTC

    from attestd import quotetool

    evidence = quotetool.read_evidence(args.file, args.tee)
    request = quotetool.VerifyRequest(
        now=args.now or datetime.now(UTC),
        root=args.root,
        collateral=args.collateral,
        vcek=args.vcek,
        certs=args.certs,
        product=args.product,
    )
    result = quotetool.verify(evidence, request)
    _print_json(result.to_json())
    return EXIT_OK if result.valid else EXIT_NOT_AFFIRMING


def cmd_dev_pki(args: argparse.Namespace) -> int:
    from attestd.devpki import create_dev_pki

    create_dev_pki(args.directory, tuple(args.host) if args.host else ("localhost", "127.0.0.1"))
    print(f"wrote ca.pem, server.pem/.key and client.pem/.key to {args.directory}")
    return EXIT_OK


def _stage_artifacts(
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
    previous = b""
    if args.previous:
        previous = _read_file(args.previous, "previous attestation")
    inputs = _stage_artifacts(args.input, args.input_tag, "input")
    with _connect(args) as agent:
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
    from attestd.evidence import parse_envelope
    from attestd.evidence.provenance import StageAttestation, provenance_digest

    outputs = _stage_artifacts(args.output, args.output_tag, "output")
    with _connect(args) as agent:
        attestation = agent.end_stage(outputs)
    _write_output(args.attestation, attestation)
    if args.attestation != "-":
        payload = bytes(parse_envelope(StageAttestation.from_json(attestation).provenance).payload)
        statement = json.loads(payload)
        params = statement["predicate"]["buildDefinition"]["externalParameters"]
        _print_json(
            {
                "pipeline": params["pipeline"],
                "runId": params["runId"],
                "stage": params["stage"],
                "provenanceDigest": provenance_digest(payload),
                "subjects": statement["subject"],
                "attestation": args.attestation,
            }
        )
    return EXIT_OK


def cmd_stage_abort(args: argparse.Namespace) -> int:
    with _connect(args) as agent:
        event = agent.abort_stage(args.reason)
    _print_json({"sequence": event.sequence, **json.loads(event.content)})
    return EXIT_OK


# -- parser ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attestctl",
        description="attestctl: the operator's and verifier's command line for attestd.",
    )
    parser.add_argument("--version", action="version", version=f"attestctl {attestd.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], int], help: str):  # type: ignore[no-untyped-def]
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    sub = command(
        "measure", cmd_measure, "measure files or directories through the agent, or --local"
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
    _add_connection(sub, local_default=True)

    sub = command("record", cmd_record, "record a runtime event through the agent")
    sub.add_argument("--domain", required=True)
    sub.add_argument("--operation", required=True)
    sub.add_argument("--content", default="", help="event content (UTF-8 text)")
    _add_connection(sub, local_default=True)

    sub = command("evidence", cmd_evidence, "fetch evidence for a nonce and write it to a file")
    sub.add_argument("--nonce", required=True, type=_evidence_nonce, help="16 to 64 bytes, hex")
    sub.add_argument("--artifact", action="append", default=[], help="subject name (repeatable)")
    sub.add_argument("-o", "--output", required=True, help="output file, or - for stdout")
    _add_connection(sub, local_default=False)

    sub = command("verify", cmd_verify, "appraise an evidence file against a nonce and a policy")
    sub.add_argument("file", help="evidence file (DSSE envelope), or - for stdin")
    sub.add_argument("--nonce", required=True, type=_evidence_nonce, help="16 to 64 bytes, hex")
    sub.add_argument("--policy", required=True, type=Path)
    sub.add_argument("--now", type=_rfc3339, help="appraise as of this time (RFC 3339)")
    sub.add_argument("--summary", action="store_true", help="also print a summary on stderr")
    _add_result_options(sub)

    sub = command("appraise", cmd_appraise, "fetch evidence with a fresh nonce and appraise it")
    sub.add_argument("--policy", required=True, type=Path)
    sub.add_argument("--artifact", action="append", default=[], help="subject name (repeatable)")
    sub.add_argument("--save-evidence", metavar="FILE", help="also keep the evidence")
    sub.add_argument("--quiet", dest="summary", action="store_false", help="no summary on stderr")
    sub.set_defaults(now=None)
    _add_result_options(sub)
    _add_connection(sub, local_default=False)

    sub = command("info", cmd_info, "show which TEE, root of trust and key the agent uses")
    _add_connection(sub, local_default=True)

    sub = command("log", cmd_log, "show the agent's runtime log")
    sub.add_argument("--start", type=int, default=0)
    sub.add_argument("--limit", type=int, default=0)
    _add_connection(sub, local_default=True)

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

    _add_quote_commands(commands)
    _add_stage_commands(commands)
    _add_chain_commands(commands)
    _add_attestation_commands(commands)
    _add_result_commands(commands)

    sub = command("dev-pki", cmd_dev_pki, "create a throwaway mTLS PKI for demos (not production)")
    sub.add_argument("directory", type=Path)
    sub.add_argument("--host", action="append", help="server name or IP (repeatable)")
    return parser


def _add_quote_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    quote = commands.add_parser("quote", help="inspect or verify a TDX quote or SEV-SNP report")
    quote_commands = quote.add_subparsers(dest="quote_command", required=True, metavar="COMMAND")
    tees = ("tdx", "sev-snp")
    products = ("Milan", "Genoa", "Turin")

    sub = quote_commands.add_parser(
        "inspect", help="print every field of a quote or report as JSON"
    )
    sub.set_defaults(handler=cmd_quote_inspect)
    sub.add_argument("file", help="quote or report, binary or hex, or - for stdin")
    sub.add_argument("--tee", choices=tees, help="do not detect the TEE")
    sub.add_argument("--product", choices=products, help="SEV-SNP TCB layout if no CPUID says")

    sub = quote_commands.add_parser(
        "verify", help="verify a quote's or report's signature chain and TCB status"
    )
    sub.set_defaults(handler=cmd_quote_verify)
    sub.add_argument("file", help="quote or report, binary or hex, or - for stdin")
    sub.add_argument("--tee", choices=tees, help="do not detect the TEE")
    sub.add_argument(
        "--root",
        metavar="intel|amd|PATH",
        help="trusted root: intel (TDX default), amd (SEV-SNP default), or a PEM file "
        "such as a simulated root from `attestctl trust-root export`",
    )
    sub.add_argument("--collateral", type=Path, help="TDX: DCAP collateral (QuoteCollateralV3)")
    sub.add_argument("--vcek", type=Path, help="SEV-SNP: the VCEK or VLEK (DER or PEM)")
    sub.add_argument("--certs", type=Path, help="SEV-SNP: a GHCB certificate table")
    sub.add_argument("--product", choices=products, help="SEV-SNP product")
    sub.add_argument("--now", type=_rfc3339, help="verify as of this time (RFC 3339, with zone)")


def _add_stage_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    _add_connection(sub, local_default=True)

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
    _add_connection(sub, local_default=True)

    sub = stage_commands.add_parser(
        "abort", help="close the open stage without an attestation; prints the abort event"
    )
    sub.set_defaults(handler=cmd_stage_abort)
    sub.add_argument(
        "--reason", default="", metavar="TEXT", help="why, for the log (at most 1024 bytes)"
    )
    _add_connection(sub, local_default=True)


# -- chain verify -------------------------------------------------------------------


def cmd_chain_verify(args: argparse.Namespace) -> int:
    from attestd.verifier.chain import verify_chain
    from attestd.verifier.layout import load_layout
    from attestd.verifier.oms import OmsClosing

    signer = _result_signer(args)
    layout = load_layout(args.layout)
    attestations = []
    for name in args.attestations:
        attestations.append(_read_file(name, "attestation"))
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
        from attestd.verifier.ear import policy_digest, sign_chain_result

        digest = policy_digest(_read_file(str(args.layout)))
        token = sign_chain_result(
            result, signer, policy_digest=digest, now=args.now, lifetime=_result_lifetime(args)
        )
        _write_result_token(token, args)
    if args.json:
        _print_json(result.to_json())
    else:
        _print_chain_table(result.to_json())
    if result.status == "affirming":
        return EXIT_OK
    # Files that are not stage attestations at all are unreadable input, not a verdict.
    return EXIT_USAGE if "attestation_malformed" in result.reasons else EXIT_NOT_AFFIRMING


def _print_chain_table(report: dict[str, Any]) -> None:
    """The chain for people: one row per stage, then the chain's own failures."""
    header = ("STAGE", "TEE", "ROOT", "AGENT KEY", "INPUTS -> OUTPUTS", "LICENCE", "STATUS")
    rows = [header]
    for stage in report["stages"]:
        names = [_short_name(a["name"]) for a in stage["inputs"]]
        outputs = [_short_name(a["name"]) for a in stage["outputs"]]
        licences = sorted({a.get("annotations", {}).get("license", "-") for a in stage["outputs"]})
        reasons = [c["reason"] for c in stage["checks"] if c["status"] == "fail" and c["reason"]]
        warnings = [c["reason"] for c in stage["checks"] if c["status"] == "warn" and c["reason"]]
        status = ", ".join(dict.fromkeys(reasons or warnings)) or "ok"
        key = stage["agentKeyId"] or "-"
        rows.append(
            (
                stage["stage"] or f"? ({stage['source']})",
                stage["tee"] or "-",
                stage["rootOfTrust"] or "-",
                key[:19] + "..." if len(key) > 22 else key,
                f"{', '.join(names) or '-'} -> {', '.join(outputs) or '-'}",
                ", ".join(licences) or "-",
                status,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        sys.stdout.write("\n")
    for check in report["checks"]:
        if check["status"] != "pass":
            label = check["reason"] or check["status"]
            sys.stdout.write(f"chain: {check['name']}: {label}: {check['detail']}\n")
    freshness = report["freshness"]
    if not freshness["checked"]:
        sys.stdout.write("freshness: not checked (the layout sets no max_age_seconds)\n")
    verdict = "VERIFIED" if report["status"] == "affirming" else "NOT VERIFIED"
    because = f" ({', '.join(report['reasons'])})" if report["reasons"] else ""
    sys.stdout.write(f"chain {report['pipeline']} run {report['runId']}: {verdict}{because}\n")


def _short_name(name: str) -> str:
    return name.rstrip("/").rsplit("/", 1)[-1] or name


def _add_chain_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    sub.add_argument("--layout", required=True, type=Path, help="pipeline layout (TOML)")
    sub.add_argument("--json", action="store_true", help="print the chain result as JSON")
    sub.add_argument("--now", type=_rfc3339, help="verify as of this time (RFC 3339, with zone)")
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
    _add_result_options(sub)


# -- attestation: Sigstore bundles (docs/sigstore.md) ------------------------------


def _read_file(name: str, what: str = "input file", max_bytes: int = _MAX_INPUT_BYTES) -> bytes:
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


def cmd_attestation_export_bundle(args: argparse.Namespace) -> int:
    from attestd.evidence import parse_envelope
    from attestd.evidence.provenance import StageAttestation, provenance_digest
    from attestd.sigstore_export import BUNDLE_MEDIA_TYPE, export_stage_bundles

    attestation = StageAttestation.from_json(_read_file(args.file))
    bundles = export_stage_bundles(attestation)
    _write_output(args.output, bundles.provenance)
    if args.evidence_bundle:
        _write_output(args.evidence_bundle, bundles.evidence)
    if args.public_key:
        _write_output(args.public_key, bundles.agent_key_pem.rstrip("\n").encode())
    if "-" not in (args.output, args.evidence_bundle, args.public_key):
        payload = bytes(parse_envelope(attestation.provenance).payload)
        _print_json(
            {
                "mediaType": BUNDLE_MEDIA_TYPE,
                "bundle": args.output,
                "evidenceBundle": args.evidence_bundle,
                "publicKey": args.public_key,
                "agentKeyId": bundles.agent_key_id,
                "provenanceDigest": provenance_digest(payload),
                "transparencyLog": False,
            }
        )
    return EXIT_OK


def cmd_attestation_sign_keyless(args: argparse.Namespace) -> int:
    from attestd.evidence.provenance import StageAttestation
    from attestd.sigstore_export import KeylessSigningError, sign_keyless

    attestation = StageAttestation.from_json(_read_file(args.file))
    try:
        bundle = sign_keyless(
            attestation, identity_token=args.identity_token or None, staging=args.staging
        )
    except KeylessSigningError as err:
        # Sigstore refused or was unreachable: like an agent refusal, not bad usage.
        print(f"attestctl: {err.diagnostics()}", file=sys.stderr)
        return EXIT_NOT_AFFIRMING
    _write_output(args.output, bundle)
    return EXIT_OK


def _add_attestation_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
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


# -- signed attestation results (docs/attestation-results.md) -----------------------


def _add_result_options(parser: argparse.ArgumentParser) -> None:
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


def _result_signer(args: argparse.Namespace) -> ResultSigner | None:
    """The verifier's key, loaded before any work so a bad key stops the command early."""
    from attestd.verifier.ear import load_signing_key

    if (args.result_key is None) != (args.result_out is None):
        raise UsageError("--result-key and --result-out go together")
    if args.result_key is None:
        if args.result_lifetime is not None:
            raise UsageError("--result-lifetime needs --result-key and --result-out")
        return None
    return load_signing_key(_read_file(str(args.result_key)))


def _result_lifetime(args: argparse.Namespace) -> timedelta:
    from attestd.verifier.ear import DEFAULT_RESULT_LIFETIME

    if args.result_lifetime is None:
        return DEFAULT_RESULT_LIFETIME
    return timedelta(seconds=args.result_lifetime)


def _write_result_token(token: str, args: argparse.Namespace) -> None:
    if args.result_out == "-":
        sys.stderr.write(token + "\n")  # stdout carries the JSON report
        return
    try:
        Path(args.result_out).write_text(token + "\n", encoding="ascii")
    except OSError as err:
        raise UsageError(f"cannot write {args.result_out}: {err.strerror}") from err


def cmd_result_verify(args: argparse.Namespace) -> int:
    from attestd.verifier.ear import (
        ResultError,
        ResultFormatError,
        ResultKeyError,
        load_verification_key,
        result_statuses,
        verify_result,
    )

    key = load_verification_key(_read_file(str(args.key)))
    token = _read_file(args.token)
    try:
        claims = verify_result(token, key, nonce=args.nonce, now=args.now)
    except (ResultFormatError, ResultKeyError):
        raise  # unreadable input: exit 2
    except ResultError as err:
        print(f"attestctl: result REJECTED: {err.diagnostics()}", file=sys.stderr)
        return EXIT_NOT_AFFIRMING
    _print_json(claims)
    statuses = ", ".join(f"{k}={v}" for k, v in result_statuses(claims).items())
    print(f"attestctl: result signature valid; {statuses}", file=sys.stderr)
    return EXIT_OK


def _add_result_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    sub.add_argument("--nonce", type=_hex_nonce, help="the nonce the result must carry (hex)")
    sub.add_argument("--now", type=_rfc3339, help="check exp as of this time (RFC 3339)")


def main(argv: Sequence[str] | None = None) -> int:
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


if __name__ == "__main__":
    sys.exit(main())
