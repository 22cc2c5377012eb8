"""``attestctl fleet``: the verifier service's registry and status, over its gRPC API.

    attestctl fleet add gpu-01 --address 10.0.0.7:7443 --agent-cert ... --policy ... \\
        --verifier v.internal:7543 --cert admin.pem --key admin.key --ca ca.pem
    attestctl fleet add gpu-02 --push --pin sha256:... --policy ... --verifier ...  # push mode
    attestctl fleet list   --verifier ... (admin)
    attestctl fleet remove gpu-01 --verifier ... (admin)
    attestctl fleet status [NAME] [--watch] --verifier ... (any client of the service's CA)
    attestctl fleet pin --cert admin.pem          # the value for [api] admin_pins

Exit codes: ``status NAME`` exits 0 when the agent is affirming, 1 otherwise;
the service refusing a call (no admin role, unknown agent) exits 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from attestd._files import read_regular_file
from attestd.cli._common import (
    EXIT_NOT_AFFIRMING,
    EXIT_OK,
    Commands,
    UsageError,
    print_json,
)
from attestd.errors import AttestdError
from attestd.v1 import verifier_pb2, verifier_pb2_grpc

__all__ = ["FleetCallError", "add_commands"]

_MAX_PEM_BYTES = 1 << 20


class FleetCallError(AttestdError):
    """The verifier service refused or failed a call."""

    reason = "verifier_call_failed"


def add_commands(commands: Commands) -> None:
    group = commands.add_parser("fleet", help="the verifier service's agents and their status")
    fleet = group.add_subparsers(dest="fleet_command", required=True, metavar="COMMAND")

    sub = fleet.add_parser("add", help="register an agent for continuous appraisal (admin)")
    sub.set_defaults(handler=cmd_add)
    sub.add_argument("name", help="unique name in the fleet")
    sub.add_argument("--address", metavar="HOST:PORT", help="agent's mTLS address (pull)")
    sub.add_argument("--agent-cert", help="client certificate for the agent (pull)")
    sub.add_argument("--agent-key", help="its private key (pull)")
    sub.add_argument("--agent-ca", help="CA of the agent's server certificate (pull)")
    sub.add_argument(
        "--push", action="store_true", help="the agent pushes its evidence ([push] in its config)"
    )
    sub.add_argument(
        "--pin", default="", help="with --push: its client certificate's key pin (fleet pin)"
    )
    sub.add_argument("--agent-server-name", default="", help="name in the agent's certificate")
    sub.add_argument("--policy", required=True, help="appraisal policy (TOML)")
    sub.add_argument("--interval", type=float, default=0.0, help="seconds (default: service's)")
    _add_connection(sub)

    sub = fleet.add_parser("remove", help="forget an agent and its history (admin)")
    sub.set_defaults(handler=cmd_remove)
    sub.add_argument("name")
    _add_connection(sub)

    sub = fleet.add_parser("list", help="every registered agent (admin)")
    sub.set_defaults(handler=cmd_list)
    _add_connection(sub)

    sub = fleet.add_parser("status", help="the fleet summary, or one agent's latest result")
    sub.set_defaults(handler=cmd_status)
    sub.add_argument("name", nargs="?", help="an agent: its latest result and EAR")
    sub.add_argument("--watch", action="store_true", help="print status changes as they happen")
    sub.add_argument("--after", type=int, default=-1, help="with --watch: from this change id")
    _add_connection(sub)

    sub = fleet.add_parser("pin", help="print a certificate's key pin, for [api] admin_pins")
    sub.set_defaults(handler=cmd_pin)
    sub.add_argument("--cert", type=Path, required=True, help="certificate (PEM)")


def _add_connection(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the verifier service (mutual TLS)")
    group.add_argument("--verifier", required=True, metavar="HOST:PORT")
    group.add_argument("--cert", type=Path, required=True, help="client certificate (PEM)")
    group.add_argument("--key", type=Path, required=True, help="client private key (PEM)")
    group.add_argument("--ca", type=Path, required=True, help="CA of the service's certificate")
    group.add_argument("--server-name", help="expected name in the service's certificate")


def _channel(args: argparse.Namespace) -> grpc.Channel:
    try:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=read_regular_file(args.ca, _MAX_PEM_BYTES, "CA certificate"),
            private_key=read_regular_file(args.key, _MAX_PEM_BYTES, "client key"),
            certificate_chain=read_regular_file(args.cert, _MAX_PEM_BYTES, "client certificate"),
        )
    except AttestdError as err:
        raise UsageError(err.message) from None
    options = [("grpc.ssl_target_name_override", args.server_name)] if args.server_name else []
    return grpc.secure_channel(args.verifier, credentials, options=options)


def _call(method: Callable[..., Any], request: object) -> Any:
    try:
        return method(request, timeout=30)
    except grpc.RpcError as err:
        raise _refused(err) from None


def _refused(err: grpc.RpcError) -> FleetCallError:
    trailing = err.trailing_metadata() or ()
    reason = next((value for key, value in trailing if key == "attestd-reason"), None)
    code: grpc.StatusCode = err.code()
    suffix = f" ({reason})" if reason else ""
    return FleetCallError(f"{code.name}{suffix}: {err.details() or ''}")


def _agent_json(agent: verifier_pb2.Agent) -> dict[str, object]:
    return {
        "name": agent.spec.name,
        "address": agent.spec.address,
        "pushPin": agent.spec.push_pin or None,
        "status": agent.status,
        "reason": agent.status_reason,
        "intervalSeconds": agent.spec.interval_s,
        "policy": agent.spec.policy_path,
        "lastAppraisedAt": agent.last_appraised_at or None,
    }


def cmd_add(args: argparse.Namespace) -> int:
    pull_args = (args.address, args.agent_cert, args.agent_key, args.agent_ca)
    if args.push:
        # The agent calls in with the certificate whose key is pinned; nothing to dial.
        if not args.pin or any(pull_args) or args.agent_server_name:
            raise UsageError("--push takes --pin and no --address or --agent-* options")
        spec = verifier_pb2.AgentSpec(
            name=args.name,
            push_pin=args.pin,
            policy_path=str(Path(args.policy).resolve()),
            interval_s=args.interval,
        )
    else:
        if not all(pull_args) or args.pin:
            raise UsageError(
                "give --address, --agent-cert, --agent-key and --agent-ca (or --push --pin)"
            )
        spec = verifier_pb2.AgentSpec(
            name=args.name,
            address=args.address,
            cert_path=str(Path(args.agent_cert).resolve()),
            key_path=str(Path(args.agent_key).resolve()),
            ca_path=str(Path(args.agent_ca).resolve()),
            server_name=args.agent_server_name,
            policy_path=str(Path(args.policy).resolve()),
            interval_s=args.interval,
        )
    with _channel(args) as channel:
        stub = verifier_pb2_grpc.FleetAdminStub(channel)  # type: ignore[no-untyped-call]
        response = _call(stub.AddAgent, verifier_pb2.AddAgentRequest(spec=spec))
    print_json(_agent_json(response.agent))
    return EXIT_OK


def cmd_remove(args: argparse.Namespace) -> int:
    with _channel(args) as channel:
        stub = verifier_pb2_grpc.FleetAdminStub(channel)  # type: ignore[no-untyped-call]
        _call(stub.RemoveAgent, verifier_pb2.RemoveAgentRequest(name=args.name))
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    with _channel(args) as channel:
        stub = verifier_pb2_grpc.FleetAdminStub(channel)  # type: ignore[no-untyped-call]
        response = _call(stub.ListAgents, verifier_pb2.ListAgentsRequest())
    print_json([_agent_json(agent) for agent in response.agents])
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    with _channel(args) as channel:
        stub = verifier_pb2_grpc.FleetStatusStub(channel)  # type: ignore[no-untyped-call]
        if args.watch:
            return _watch(stub, args.after)
        if args.name:
            result = _call(
                stub.GetLatestResult, verifier_pb2.GetLatestResultRequest(name=args.name)
            )
            print_json(
                {
                    "name": result.name,
                    "status": result.status,
                    "reason": result.reason,
                    "appraisedAt": result.appraised_at or None,
                    "replica": result.replica or None,
                    "logLength": result.log_length,
                    "ear": result.ear or None,
                }
            )
            return EXIT_OK if result.status == "affirming" else EXIT_NOT_AFFIRMING
        summary = _call(stub.GetFleetSummary, verifier_pb2.GetFleetSummaryRequest())
    print_json(
        {
            "agents": summary.agents,
            "byStatus": dict(sorted(summary.agents_by_status.items())),
            "lastChangeId": summary.last_change_id,
        }
    )
    return EXIT_OK


def _watch(stub: Any, after: int) -> int:
    if after < 0:  # only what happens from now on
        summary = _call(stub.GetFleetSummary, verifier_pb2.GetFleetSummaryRequest())
        after = summary.last_change_id
    try:
        for change in stub.WatchStatus(verifier_pb2.WatchStatusRequest(after_id=after)):
            print_json(
                {
                    "id": change.id,
                    "name": change.name,
                    "at": change.at,
                    "from": change.old_status,
                    "to": change.new_status,
                    "reason": change.reason,
                }
            )
    except grpc.RpcError as err:
        raise _refused(err) from None
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def cmd_pin(args: argparse.Namespace) -> int:
    from attestd.verifier.service.roles import certificate_pin

    try:
        pem = read_regular_file(args.cert, _MAX_PEM_BYTES, "certificate")
    except AttestdError as err:
        raise UsageError(err.message) from None
    print(certificate_pin(pem))
    return EXIT_OK
