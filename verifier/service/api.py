"""``attestd.verifier.v1`` over mutual TLS: the fleet admin and relying-party services.

    server = ApiServer.start(store, ApiSettings(address="0.0.0.0:7543", tls=tls,
                                                admin_pins=frozenset({"sha256:..."})))
    ...
    server.stop()

Roles come from the client certificate the TLS handshake verified against the
client CA (a call without one never reaches a handler):

* **admin** (``FleetAdmin``: add, remove, list agents): the certificate's
  public key's pin (``roles.certificate_pin``, ``attestctl fleet pin``) is in
  ``[api] admin_pins``.
* **relying party** (``FleetStatus``): any certificate the client CA issued.
* **pushing agent** (``FleetPush``): the agent registered with ``push_pin`` equal
  to the caller's key's pin, for that agent's name only.

Admins are relying parties too. gRPC health and reflection (``v1`` and
``v1alpha``, :mod:`attestd._reflection`) are served on the same mutually
authenticated port.
"""

from __future__ import annotations

import hmac
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import NoReturn, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from attestd._reflection import enable_reflection
from attestd.errors import AttestdError
from attestd.evidence import LogCheckpoint
from attestd.v1 import verifier_pb2, verifier_pb2_grpc
from attestd.verifier.errors import VerifierError
from attestd.verifier.service.poller import Poller
from attestd.verifier.service.roles import certificate_pin
from attestd.verifier.service.store import (
    AgentExistsError,
    AgentNotFoundError,
    AgentRecord,
    AgentSpec,
    Store,
    StoreUnavailableError,
)

__all__ = [
    "ADMIN_SERVICE",
    "PUSH_SERVICE",
    "STATUS_SERVICE",
    "AgentSpecInvalidError",
    "ApiServer",
    "ApiSettings",
    "NotAdminError",
    "TlsFiles",
]

ADMIN_SERVICE = "attestd.verifier.v1.FleetAdmin"
STATUS_SERVICE = "attestd.verifier.v1.FleetStatus"
PUSH_SERVICE = "attestd.verifier.v1.FleetPush"
_NAME = re.compile(r"[A-Za-z0-9._-]{1,200}")
_PIN = re.compile(r"sha256:[0-9a-f]{64}")
_NONCE_BYTES = 32
_WATCH_POLL_S = 0.25
_T = TypeVar("_T")


class NotAdminError(VerifierError):
    """The caller's certificate is not pinned as an admin's."""

    reason = "not_admin"


class NoClientCertificateError(VerifierError):
    """The call carries no verified client certificate."""

    reason = "client_certificate_missing"


class AgentSpecInvalidError(VerifierError):
    """An agent registration names an invalid name, address, path or interval."""

    reason = "agent_spec_invalid"


class ApiListenError(VerifierError):
    """The API address cannot be bound."""

    reason = "api_listen_failed"


class TooManyWatchersError(VerifierError):
    """Every WatchStatus slot is taken."""

    reason = "too_many_watchers"


class PusherNotRegisteredError(VerifierError):
    """No agent in push mode of that name has the caller's client certificate key.

    One error for an unknown name and a wrong key, so a caller learns nothing
    about which agents are registered.
    """

    reason = "pusher_not_registered"


class NonceRefusedError(VerifierError):
    """The pushed nonce was not issued to this agent, was used before, or has expired."""

    reason = "nonce_refused"


class PushBusyError(VerifierError):
    """Another push or pull of this agent holds its lease right now."""

    reason = "push_busy"


_STATUS_CODES: dict[type[AttestdError], grpc.StatusCode] = {
    NotAdminError: grpc.StatusCode.PERMISSION_DENIED,
    NoClientCertificateError: grpc.StatusCode.UNAUTHENTICATED,
    AgentSpecInvalidError: grpc.StatusCode.INVALID_ARGUMENT,
    AgentExistsError: grpc.StatusCode.ALREADY_EXISTS,
    AgentNotFoundError: grpc.StatusCode.NOT_FOUND,
    StoreUnavailableError: grpc.StatusCode.UNAVAILABLE,
    TooManyWatchersError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    PusherNotRegisteredError: grpc.StatusCode.PERMISSION_DENIED,
    NonceRefusedError: grpc.StatusCode.FAILED_PRECONDITION,
    PushBusyError: grpc.StatusCode.UNAVAILABLE,
}


@dataclass(frozen=True)
class TlsFiles:
    """The service's own certificate and key, and the CA its clients' certificates chain to."""

    cert: bytes
    key: bytes
    client_ca: bytes


@dataclass(frozen=True)
class ApiSettings:
    address: str
    tls: TlsFiles
    admin_pins: frozenset[str]
    default_interval_s: float = 60.0
    min_interval_s: float = 1.0
    max_watchers: int = 16


def _fail(context: grpc.ServicerContext, err: AttestdError) -> NoReturn:
    code = _STATUS_CODES.get(type(err), grpc.StatusCode.INTERNAL)
    context.set_trailing_metadata((("attestd-reason", err.reason),))
    context.abort(code, err.message)
    raise AssertionError("unreachable: abort raises")  # pragma: no cover


def _peer_pin(context: grpc.ServicerContext) -> str:
    certs = context.auth_context().get("x509_pem_cert", [])
    if not certs:
        raise NoClientCertificateError("the TLS session carries no client certificate")
    return certificate_pin(certs[0])


def _agent_pb(record: AgentRecord) -> verifier_pb2.Agent:
    spec = record.spec
    return verifier_pb2.Agent(
        spec=verifier_pb2.AgentSpec(
            name=spec.name,
            address=spec.address,
            cert_path=spec.cert_path,
            key_path=spec.key_path,
            ca_path=spec.ca_path,
            server_name=spec.server_name,
            policy_path=spec.policy_path,
            interval_s=spec.interval_s,
            push_pin=spec.push_pin,
        ),
        status=record.status,
        status_reason=record.status_reason,
        registered_at=record.registered_at,
        last_appraised_at=record.last_appraised_at or 0.0,
    )


def _spec(message: verifier_pb2.AgentSpec, settings: ApiSettings) -> AgentSpec:
    """The registration in ``message``, checked (AgentSpecInvalidError)."""
    if not _NAME.fullmatch(message.name):
        raise AgentSpecInvalidError("name must be 1 to 200 characters of [A-Za-z0-9._-]")
    if message.push_pin:
        # Push mode: the agent calls in; there is nothing to dial, only a key to expect.
        if not _PIN.fullmatch(message.push_pin):
            raise AgentSpecInvalidError("push_pin must be sha256: and 64 lowercase hex digits")
        if message.address or message.cert_path or message.key_path or message.ca_path:
            raise AgentSpecInvalidError("an agent in push mode has no address or TLS paths")
        paths: tuple[str, ...] = ("policy_path",)
    else:
        host, sep, port = message.address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise AgentSpecInvalidError(f"address {message.address!r} is not HOST:PORT")
        paths = ("cert_path", "key_path", "ca_path", "policy_path")
    for what in paths:
        path: str = getattr(message, what)
        # Relative paths would resolve against whichever directory each replica runs in.
        if not path.startswith("/") or "\x00" in path:
            raise AgentSpecInvalidError(f"{what} must be an absolute path")
    interval = message.interval_s or settings.default_interval_s
    if not settings.min_interval_s <= interval <= 86400.0:
        raise AgentSpecInvalidError(
            f"interval_s must be within {settings.min_interval_s} .. 86400 seconds"
        )
    return AgentSpec(
        name=message.name,
        address=message.address,
        cert_path=message.cert_path,
        key_path=message.key_path,
        ca_path=message.ca_path,
        server_name=message.server_name,
        policy_path=message.policy_path,
        interval_s=interval,
        push_pin=message.push_pin,
    )


class _Authorizer:
    def __init__(self, admin_pins: frozenset[str]) -> None:
        self._pins = tuple(pin.encode() for pin in admin_pins)

    def admin(self, context: grpc.ServicerContext) -> None:
        pin = _peer_pin(context).encode()
        # Every pin compared, in constant time, so timing says nothing about the set.
        matched = False
        for admin in self._pins:
            matched |= hmac.compare_digest(pin, admin)
        if not matched:
            raise NotAdminError("the client certificate's key is not one of the admin pins")

    def relying_party(self, context: grpc.ServicerContext) -> None:
        _peer_pin(context)  # a certificate the client CA issued: the handshake checked it

    def pusher(self, context: grpc.ServicerContext, store: Store, name: str) -> AgentRecord:
        """The agent in push mode named ``name`` whose pin is the caller's key's."""
        pin = _peer_pin(context).encode()
        try:
            agent = store.agent(name) if _NAME.fullmatch(name) else None
        except AgentNotFoundError:
            agent = None
        expected = agent.spec.push_pin.encode() if agent is not None else b""
        # compare_digest even for an unknown name, so timing does not tell names apart.
        if not hmac.compare_digest(pin, expected or b"\x00" * len(pin)) or agent is None:
            raise PusherNotRegisteredError(
                "no agent in push mode of that name has this client certificate's key"
            )
        return agent


def _guarded(
    context: grpc.ServicerContext,
    check: Callable[[grpc.ServicerContext], None],
    call: Callable[[], _T],
) -> _T:
    try:
        check(context)
        return call()
    except AttestdError as err:
        _fail(context, err)


class FleetAdminServicer(verifier_pb2_grpc.FleetAdminServicer):
    def __init__(self, store: Store, settings: ApiSettings, auth: _Authorizer) -> None:
        self._store = store
        self._settings = settings
        self._auth = auth

    def AddAgent(
        self, request: verifier_pb2.AddAgentRequest, context: grpc.ServicerContext
    ) -> verifier_pb2.AddAgentResponse:
        def add() -> verifier_pb2.AddAgentResponse:
            record = self._store.add_agent(_spec(request.spec, self._settings), now=time.time())
            return verifier_pb2.AddAgentResponse(agent=_agent_pb(record))

        return _guarded(context, self._auth.admin, add)

    def RemoveAgent(
        self, request: verifier_pb2.RemoveAgentRequest, context: grpc.ServicerContext
    ) -> verifier_pb2.RemoveAgentResponse:
        def remove() -> verifier_pb2.RemoveAgentResponse:
            self._store.remove_agent(request.name)
            return verifier_pb2.RemoveAgentResponse()

        return _guarded(context, self._auth.admin, remove)

    def ListAgents(
        self, request: verifier_pb2.ListAgentsRequest, context: grpc.ServicerContext
    ) -> verifier_pb2.ListAgentsResponse:
        def listing() -> verifier_pb2.ListAgentsResponse:
            return verifier_pb2.ListAgentsResponse(
                agents=[_agent_pb(a) for a in self._store.agents()]
            )

        return _guarded(context, self._auth.admin, listing)


class FleetStatusServicer(verifier_pb2_grpc.FleetStatusServicer):
    def __init__(self, store: Store, settings: ApiSettings, auth: _Authorizer) -> None:
        self._store = store
        self._auth = auth
        self._watchers = threading.BoundedSemaphore(settings.max_watchers)
        self.stopping = threading.Event()

    def GetLatestResult(
        self, request: verifier_pb2.GetLatestResultRequest, context: grpc.ServicerContext
    ) -> verifier_pb2.GetLatestResultResponse:
        def latest() -> verifier_pb2.GetLatestResultResponse:
            self._store.agent(request.name)  # NOT_FOUND for an unknown agent
            result = self._store.latest_result(request.name)
            if result is None:
                return verifier_pb2.GetLatestResultResponse(
                    name=request.name, status="none", reason="not yet appraised"
                )
            return verifier_pb2.GetLatestResultResponse(
                name=result.agent_name,
                status=result.status,
                reason=result.reason,
                ear=result.ear or "",
                appraised_at=result.appraised_at,
                replica=result.replica,
                log_length=result.log_length or 0,
            )

        return _guarded(context, self._auth.relying_party, latest)

    def WatchStatus(
        self, request: verifier_pb2.WatchStatusRequest, context: grpc.ServicerContext
    ) -> Iterator[verifier_pb2.StatusChange]:
        def admitted() -> bool:
            if request.after_id < 0:
                raise AgentSpecInvalidError("after_id must not be negative")
            if not self._watchers.acquire(blocking=False):
                raise TooManyWatchersError("every WatchStatus slot is taken; try again later")
            return True

        _guarded(context, self._auth.relying_party, admitted)
        try:
            cursor = request.after_id
            # The table is the stream: every replica's changes, in id order, and a
            # client that reconnects resumes from the last id it saw.
            while context.is_active() and not self.stopping.is_set():
                for change in self._store.status_changes(after=cursor, limit=100):
                    cursor = change.id
                    yield verifier_pb2.StatusChange(
                        id=change.id,
                        name=change.agent_name,
                        at=change.at,
                        old_status=change.old_status,
                        new_status=change.new_status,
                        reason=change.reason,
                    )
                self.stopping.wait(_WATCH_POLL_S)
        finally:
            self._watchers.release()

    def GetFleetSummary(
        self, request: verifier_pb2.GetFleetSummaryRequest, context: grpc.ServicerContext
    ) -> verifier_pb2.GetFleetSummaryResponse:
        def summary() -> verifier_pb2.GetFleetSummaryResponse:
            counts = self._store.summary()
            return verifier_pb2.GetFleetSummaryResponse(
                agents_by_status=counts,
                agents=sum(counts.values()),
                last_change_id=self._store.last_status_change_id(),
            )

        return _guarded(context, self._auth.relying_party, summary)


class FleetPushServicer(verifier_pb2_grpc.FleetPushServicer):
    """Challenges and pushed evidence: the pull's nonce, appraisal and storage, turned around."""

    def __init__(self, store: Store, poller: Poller, auth: _Authorizer) -> None:
        self._store = store
        self._poller = poller
        self._auth = auth

    def GetChallenge(
        self, request: verifier_pb2.GetChallengeRequest, context: grpc.ServicerContext
    ) -> verifier_pb2.Challenge:
        def challenge() -> verifier_pb2.Challenge:
            agent = self._auth.pusher(context, self._store, request.name)
            nonce = os.urandom(_NONCE_BYTES)
            now = time.time()
            ttl = self._poller.settings.lease_s
            checkpoint = self._store.begin_pull(agent.id, nonce, now=now, ttl_s=ttl)
            answer = verifier_pb2.Challenge(nonce=nonce, expires_at=now + ttl)
            if checkpoint is not None:
                answer.has_checkpoint = True
                answer.checkpoint_length = checkpoint.length
                answer.checkpoint_head = checkpoint.head
            return answer

        return _guarded(context, lambda _: None, challenge)

    def PushEvidence(
        self, request: verifier_pb2.PushEvidenceRequest, context: grpc.ServicerContext
    ) -> verifier_pb2.PushEvidenceResponse:
        def push() -> verifier_pb2.PushEvidenceResponse:
            agent = self._auth.pusher(context, self._store, request.name)
            began = time.perf_counter()
            now = time.time()
            owner, lease_s = self._poller.settings.replica_id, self._poller.settings.lease_s
            # The lease first, as a pull takes it: the result is stored fenced by it.
            if not self._store.claim(agent.id, owner, now=now, lease_s=lease_s):
                raise PushBusyError("this agent's evidence is being appraised already")
            try:
                # Consumed before appraising: a replay is refused and stores nothing.
                if not self._store.consume_nonce(agent.id, request.nonce, now=now):
                    raise NonceRefusedError(
                        "the nonce was not issued to this agent, was used, or expired"
                    )
                checkpoint: LogCheckpoint | None = self._store.checkpoint(agent.id)
                outcome = self._poller.appraise_pushed(
                    agent, request.evidence, request.nonce, checkpoint, started=now
                )
            except BaseException:
                self._store.release(agent.id, owner)
                raise
            self._poller.store_outcome(agent, outcome, began=began)
            return verifier_pb2.PushEvidenceResponse(
                status=outcome.status, reason=outcome.reason, ear=outcome.ear or ""
            )

        return _guarded(context, lambda _: None, push)


@dataclass
class ApiServer:
    """A running API server; ``port`` is the bound one (useful after port 0)."""

    server: grpc.Server
    port: int
    status: FleetStatusServicer

    @classmethod
    def start(cls, store: Store, settings: ApiSettings, push: Poller | None = None) -> ApiServer:
        """Serve the API; with ``push`` (this replica's poller) FleetPush too."""
        auth = _Authorizer(settings.admin_pins)
        # Each WatchStatus stream holds a thread; leave room for unary calls beside them.
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=settings.max_watchers + 16))
        status = FleetStatusServicer(store, settings, auth)
        verifier_pb2_grpc.add_FleetAdminServicer_to_server(  # type: ignore[no-untyped-call]
            FleetAdminServicer(store, settings, auth), server
        )
        verifier_pb2_grpc.add_FleetStatusServicer_to_server(status, server)  # type: ignore[no-untyped-call]
        services = [ADMIN_SERVICE, STATUS_SERVICE]
        if push is not None:
            verifier_pb2_grpc.add_FleetPushServicer_to_server(  # type: ignore[no-untyped-call]
                FleetPushServicer(store, push, auth), server
            )
            services.append(PUSH_SERVICE)
        health_servicer = health.HealthServicer()
        for name in ("", *services):
            health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        enable_reflection(server, (*services, health.SERVICE_NAME))
        credentials = grpc.ssl_server_credentials(
            [(settings.tls.key, settings.tls.cert)],
            root_certificates=settings.tls.client_ca,
            require_client_auth=True,
        )
        port = server.add_secure_port(settings.address, credentials)
        if port == 0:
            raise ApiListenError(f"cannot listen on {settings.address}")
        server.start()
        return cls(server, port, status)

    def stop(self, grace: float = 2.0) -> None:
        self.status.stopping.set()
        self.server.stop(grace).wait()
