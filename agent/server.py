"""The gRPC face of the agent: two listeners, one role each, per-RPC authorisation.

* The Unix socket serves local pipelines (role ``pipeline``). Who may connect is
  decided by the socket's file mode and group, then by the kernel's peer
  credentials against ``[pipeline]`` (``peercred.py``): the agent accepts on
  that socket itself and relays each allowed connection to the gRPC server's
  internal socket, so every pipeline call knows its caller (pid, uid, gid).
* TCP with mutual TLS serves remote verifiers (role ``verifier``): any client
  certificate issued by the configured CA whose key meets the minimum strength
  (``tls.py``). Verifiers may read evidence, the agent's info and the log, and
  nothing else.

The verifier listener runs on an event loop and thread of its own
(:class:`_LoopThread`): a burst of verifier calls (a batch of evidence settles
hundreds at once) queues on that loop, never in front of a pipeline call.

Every listener is bound before any is started, so nothing answers a call from
an agent that then fails to start. Library errors become gRPC status codes
here, with the stable ``reason`` in the ``attestd-reason`` trailing metadata.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import os
import socket
import stat
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import grpc
from cryptography import x509
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from attestd._reflection import enable_reflection
from attestd.agent.artifacts import ArtifactError, ArtifactNotFoundError
from attestd.agent.artifacts.gpu.errors import GpuUnavailableError
from attestd.agent.config import AgentConfig
from attestd.agent.errors import (
    ArtifactNotMeasuredError,
    CheckpointUnknownError,
    ClientKeyTooWeakError,
    EvidenceTooLargeError,
    ListenError,
    NoStageOpenError,
    NotServingError,
    RequestInvalidError,
    StageAlreadyOpenError,
    truncate,
)
from attestd.agent.measurement_events import MeasuredArtifact
from attestd.agent.peercred import Caller, CallerPolicy, PeerRelay, PeerUnknownError
from attestd.agent.runtime_log_store import Written
from attestd.agent.service import Agent
from attestd.agent.stages import ArtifactSpec
from attestd.agent.tls import ServerTls, key_weakness
from attestd.errors import AttestdError
from attestd.evidence import (
    EvidenceError,
    EvidenceFormatError,
    LogCheckpoint,
    RuntimeEvent,
    event_digest,
)
from attestd.tee.errors import TeeError
from attestd.v1 import agent_pb2, agent_pb2_grpc

log = logging.getLogger("attestd.server")

SERVICE_NAME = agent_pb2.DESCRIPTOR.services_by_name["Agent"].full_name
_T = TypeVar("_T")
#: The most characters of a refusal's message sent to the client. gRPC carries
#: it in a header; past its metadata limit the client would get
#: RESOURCE_EXHAUSTED instead of the refusal and its reason.
MAX_STATUS_MESSAGE_CHARS = 1024


class Role(enum.StrEnum):
    PIPELINE = "pipeline"
    VERIFIER = "verifier"


#: Which role may call which RPC. Anything not listed is refused.
PERMISSIONS: dict[str, frozenset[Role]] = {
    "GetEvidence": frozenset({Role.PIPELINE, Role.VERIFIER}),
    "GetAgentInfo": frozenset({Role.PIPELINE, Role.VERIFIER}),
    "GetRuntimeLog": frozenset({Role.PIPELINE, Role.VERIFIER}),
    "MeasureArtifacts": frozenset({Role.PIPELINE}),
    "RecordEvent": frozenset({Role.PIPELINE}),
    "RecordEvents": frozenset({Role.PIPELINE}),
    "BeginStage": frozenset({Role.PIPELINE}),
    "EndStage": frozenset({Role.PIPELINE}),
    "AbortStage": frozenset({Role.PIPELINE}),
}


def _status_for(err: AttestdError) -> grpc.StatusCode:
    if isinstance(err, ArtifactNotFoundError):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(err, ClientKeyTooWeakError):
        return grpc.StatusCode.UNAUTHENTICATED
    if isinstance(err, PeerUnknownError):
        return grpc.StatusCode.PERMISSION_DENIED
    if isinstance(err, RequestInvalidError | EvidenceError | ArtifactError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(
        err,
        ArtifactNotMeasuredError
        | NotServingError
        | EvidenceTooLargeError
        | CheckpointUnknownError
        | StageAlreadyOpenError
        | NoStageOpenError
        | GpuUnavailableError,
    ):
        return grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(err, TeeError):
        return grpc.StatusCode.UNAVAILABLE
    return grpc.StatusCode.INTERNAL


def _checkpoint(request: agent_pb2.GetEvidenceRequest) -> LogCheckpoint | None:
    """The request's log checkpoint, if it names one; a malformed one is INVALID_ARGUMENT."""
    if not request.HasField("checkpoint"):
        return None
    try:
        return LogCheckpoint(request.checkpoint.length, bytes(request.checkpoint.head))
    except EvidenceFormatError as err:
        raise RequestInvalidError(f"checkpoint: {err.message}") from err


def _event_pb(event: RuntimeEvent, digest: bytes | None = None) -> agent_pb2.RuntimeEvent:
    """The message of ``event``; ``digest`` is its digest where the caller has it already."""
    message = agent_pb2.RuntimeEvent()
    _fill_event(message, event, event_digest(event) if digest is None else digest)
    return message


def _ack_pb(written: Written) -> agent_pb2.RecordEventResponse:
    response = agent_pb2.RecordEventResponse(log_head=written.head)
    _fill_event(response.event, written.event, written.digest)
    return response


def _fill_event(message: agent_pb2.RuntimeEvent, event: RuntimeEvent, digest: bytes) -> None:
    """Set the fields of an empty ``message`` to ``event``'s.

    In place, field by field: building the messages from keyword arguments and
    nesting them copies each submessage once more, which every acknowledgement
    of a stream would pay (about twice the time).
    """
    message.sequence = event.sequence
    message.domain = event.domain
    message.operation = event.operation
    message.content = event.content
    message.recorded_at = event.recorded_at
    message.digest = digest
    caller = event.caller
    if caller is not None:
        into = message.caller
        into.pid = caller.pid
        into.uid = caller.uid
        into.gid = caller.gid


class _Acknowledgements:
    """Hands group-committed events to the event loop: one wake-up per group, not per event.

        acks = _Acknowledgements(asyncio.get_running_loop())
        written = await acks.watch(agent.record_event_future(...))   # one event (unary)
        acks.follow(future, stream.wake)     # or: call stream.wake() on the loop once settled

    ``asyncio.wrap_future`` would wake the loop once for every event a group
    commit settles; here the committer's thread queues each settled event's
    handler and wakes the loop only when the queue was empty, and the loop runs
    the lot.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._settled: list[Callable[[], None]] = []

    def watch(self, source: Future[Written]) -> asyncio.Future[Written]:
        """An asyncio future that follows ``source``; cancelling it cancels ``source``."""
        target: asyncio.Future[Written] = self._loop.create_future()
        target.add_done_callback(lambda done: source.cancel() if done.cancelled() else None)
        self.follow(source, lambda: _settle(target, source))
        return target

    def follow(self, source: Future[Written], handler: Callable[[], None]) -> None:
        """Call ``handler()`` on the event loop once ``source`` is settled."""
        source.add_done_callback(lambda _done: self._queue(handler))

    def _queue(self, handler: Callable[[], None]) -> None:
        with self._lock:
            self._settled.append(handler)
            if len(self._settled) > 1:
                return  # the loop is woken already and has not drained the queue yet
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            settled, self._settled = self._settled, []
        for handler in settled:
            handler()


def _settle(target: asyncio.Future[Written], source: Future[Written]) -> None:
    """Give ``target`` the outcome of the settled ``source``, unless its caller left."""
    if target.done():
        return  # cancelled: the caller left
    if source.cancelled():
        target.cancel()
    elif (error := source.exception()) is not None:
        target.set_exception(error)
    else:
        target.set_result(source.result())


class _RecordStream:
    """One RecordEvents stream: a reader task submits events, the handler acknowledges them.

        await _RecordStream(agent, acks, context, caller).run()

    Both sides share a deque of the submitted events' futures, oldest first,
    and wake each other through one asyncio future at a time, rather than an
    ``asyncio.Queue`` and an asyncio future per event: the committer's thread
    wakes the acknowledging side once per group (:class:`_Acknowledgements`),
    which then answers every settled event at the front, in order.
    """

    def __init__(
        self,
        agent: Agent,
        acks: _Acknowledgements,
        context: grpc.aio.ServicerContext,
        caller: Caller | None,
    ) -> None:
        self._agent = agent
        self._acks = acks
        self._context = context
        self._caller = caller
        self._loop = asyncio.get_running_loop()
        # Submitted, not yet acknowledged (at most STREAM_WINDOW), in the order they were read.
        self._pending: deque[Future[Written]] = deque()
        self._ended = False  # the reader is done: end of stream, or a failure
        self._failure: Exception | None = None  # answered after every event read before it
        self._acknowledger: asyncio.Future[None] | None = None  # waiting for the front event
        self._reader: asyncio.Future[None] | None = None  # waiting for room in the window

    async def run(self) -> None:
        """Acknowledge every event in order; raise the first refusal or failure in its turn."""
        reading = asyncio.create_task(self._read())
        pending = self._pending
        try:
            while True:
                if pending and pending[0].done():
                    written = pending.popleft().result()  # a failed event raises: its turn
                    if self._reader is not None:
                        _wake(self._reader)
                    await self._context.write(_ack_pb(written))
                    continue
                if not pending and self._ended:
                    if self._failure is not None:
                        raise self._failure
                    return
                self._acknowledger = self._loop.create_future()
                await self._acknowledger
                self._acknowledger = None
        finally:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
            for left in pending:  # unacknowledged: withdrawn if not yet in a group
                left.cancel()
            pending.clear()  # each future's callback refers to this stream: no cycle left

    def wake(self) -> None:
        """On the loop: an event settled, or the reader has news; the acknowledger looks."""
        if self._acknowledger is not None:
            _wake(self._acknowledger)

    async def _read(self) -> None:
        context, agent, caller, pending = self._context, self._agent, self._caller, self._pending
        try:
            while (request := await context.read()) is not grpc.aio.EOF:
                assert isinstance(request, agent_pb2.RecordEventRequest)
                future = agent.record_event_future(
                    request.domain, request.operation, request.content, caller=caller
                )
                pending.append(future)
                self._acks.follow(future, self.wake)
                while len(pending) >= STREAM_WINDOW:
                    self._reader = self._loop.create_future()
                    await self._reader
                    self._reader = None
        except Exception as err:  # the refusal is answered in its turn, after earlier acks
            self._failure = err
        self._ended = True
        self.wake()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _artifact_pb(item: MeasuredArtifact) -> agent_pb2.Artifact:
    m = item.measurement
    return agent_pb2.Artifact(
        name=m.name,
        kind=m.kind,
        digest=dict(m.digest),
        size_bytes=m.size_bytes,
        file_count=m.file_count,
        log_sequence=item.log_sequence,
    )


def _specs(items: Sequence[agent_pb2.ArtifactSpec]) -> list[ArtifactSpec]:
    return [ArtifactSpec(i.path, i.license or None, tuple(i.tags)) for i in items]


@functools.lru_cache(maxsize=256)
def _certificate_weakness(pem: bytes) -> str | None:
    """Why a verifier's certificate key is too weak (None: strong enough); cached per cert."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return "an unreadable certificate"  # TLS accepted it, so this should never happen
    return key_weakness(cert.public_key())


def _check_client_key(context: grpc.aio.ServicerContext) -> None:
    """Refuse a verifier whose certificate key is below the minimum strength.

    gRPC Python has no hook into the TLS handshake, so the certificate the
    handshake verified is read back from the call's auth context.
    """
    certs = context.auth_context().get("x509_pem_cert", [])
    if not certs:
        raise ClientKeyTooWeakError("the TLS session carries no client certificate")
    weakness = _certificate_weakness(certs[0])
    if weakness is not None:
        raise ClientKeyTooWeakError(f"the client certificate has a {weakness}")


#: Events of one RecordEvents stream read and submitted before their acknowledgements are
#: sent: a client that sends ahead gets them into one group commit, and no further.
STREAM_WINDOW = 64

_POOL_THREADS = min(32, (os.cpu_count() or 1) + 4)
"""Threads per listener for blocking calls (asyncio's default executor size)."""


#: Who made a pipeline call, from the call's ``context.peer()`` (raises PeerUnknownError).
CallerOf = Callable[[str], Caller]


class _LoopThread:
    """An asyncio event loop running on a daemon thread of its own.

        verifiers = _LoopThread("attestd-verifier-loop")
        server = verifiers.call(make_server)       # blocking: runs on that loop, returns
        await verifiers.run(server.start())       # from another loop: awaits it there
        verifiers.close()                         # stops the loop, joins the thread

    A grpc.aio server belongs to the loop it was created on, so it is created
    and driven there; the other loop only waits for the results.
    """

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, make: Callable[[], _T]) -> _T:
        """``make()`` run on this loop; blocks the calling thread until it has run."""

        async def run() -> _T:
            return make()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result()

    async def run(self, work: Awaitable[_T]) -> _T:
        """Await ``work`` on this loop, from a coroutine on any other loop."""

        async def run() -> _T:
            return await work

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), self.loop))

    def close(self) -> None:
        """Stop the loop and join its thread; what still runs there is abandoned."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class AgentServicer(agent_pb2_grpc.AgentServicer):
    """attestd.v1.Agent for one listener; ``role`` is fixed by the listener.

    A pipeline listener has ``caller_of``: every call on it must come through
    the peer-credential relay, and its work is given the caller. A verifier
    listener has none, and its work is given None.
    """

    def __init__(
        self,
        agent: Agent,
        role: Role,
        on_state_change: Callable[[], Awaitable[None]],
        pool: ThreadPoolExecutor | None = None,
        caller_of: CallerOf | None = None,
    ):
        self._agent = agent
        self._role = role
        self._on_state_change = on_state_change
        # Each listener has its own threads, so verifier load never queues a pipeline call.
        self._pool = pool
        self._caller_of = caller_of
        self._acks_of: _Acknowledgements | None = None

    @property
    def _acks(self) -> _Acknowledgements:
        """Created on first use, inside the server's event loop."""
        if self._acks_of is None:
            self._acks_of = _Acknowledgements(asyncio.get_running_loop())
        return self._acks_of

    async def _call(
        self, rpc: str, context: grpc.aio.ServicerContext, work: Callable[[Caller | None], _T]
    ) -> _T:
        """Run blocking ``work`` on this listener's threads, as :meth:`_guarded` describes."""
        loop = asyncio.get_running_loop()
        return await self._guarded(
            rpc, context, lambda caller: loop.run_in_executor(self._pool, work, caller)
        )

    async def _guarded(
        self,
        rpc: str,
        context: grpc.aio.ServicerContext,
        start: Callable[[Caller | None], Awaitable[_T]],
    ) -> _T:
        """Check the role and the caller, await ``start(caller)``, map its errors to statuses."""
        if self._role not in PERMISSIONS.get(rpc, frozenset()):
            log.warning("refused", extra={"rpc": rpc, "role": str(self._role)})
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED, f"{rpc} is not allowed for {self._role} clients"
            )
        try:
            caller: Caller | None = None
            if self._role is Role.VERIFIER:
                _check_client_key(context)
            elif self._caller_of is not None:
                caller = self._caller_of(context.peer())
            return await start(caller)
        except AttestdError as err:
            self._agent.metrics.refused(rpc, err.reason)
            code = _status_for(err)
            if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE):
                log.error(
                    "call failed", extra={"rpc": rpc, "reason": err.reason, "error": str(err)}
                )
            elif isinstance(err, ClientKeyTooWeakError | PeerUnknownError):
                log.warning("refused", extra={"rpc": rpc, "reason": err.reason, "error": str(err)})
            context.set_trailing_metadata((("attestd-reason", err.reason),))
            await context.abort(code, truncate(str(err), MAX_STATUS_MESSAGE_CHARS))
        except Exception:
            log.exception("internal error", extra={"rpc": rpc})
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the agent's log")
        finally:
            await self._on_state_change()
        raise AssertionError("unreachable: context.abort raises")  # pragma: no cover

    async def GetEvidence(
        self, request: agent_pb2.GetEvidenceRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.GetEvidenceResponse:
        # No thread waits for the quote: the request joins the agent's next batch.
        envelope = await self._guarded(
            "GetEvidence",
            context,
            lambda _caller: asyncio.wrap_future(
                self._agent.evidence_future(
                    request.nonce, list(request.artifact_names), _checkpoint(request)
                )
            ),
        )
        return agent_pb2.GetEvidenceResponse(envelope=envelope)

    async def MeasureArtifacts(
        self, request: agent_pb2.MeasureArtifactsRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.MeasureArtifactsResponse:
        measured = await self._call(
            "MeasureArtifacts",
            context,
            lambda caller: self._agent.measure(
                list(request.paths), use_gpu=request.use_gpu, caller=caller
            ),
        )
        return agent_pb2.MeasureArtifactsResponse(artifacts=[_artifact_pb(m) for m in measured])

    async def RecordEvent(
        self, request: agent_pb2.RecordEventRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.RecordEventResponse:
        # No thread waits for the fsync: the event joins the next group commit.
        written = await self._guarded(
            "RecordEvent",
            context,
            lambda caller: self._acks.watch(
                self._agent.record_event_future(
                    request.domain, request.operation, request.content, caller=caller
                )
            ),
        )
        return _ack_pb(written)

    async def RecordEvents(
        self,
        request_iterator: AsyncIterator[agent_pb2.RecordEventRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        """RecordEvent, one stream of many: each response acknowledges one durable event."""
        await self._guarded(
            "RecordEvents", context, lambda caller: self._record_stream(context, caller)
        )

    async def _record_stream(
        self, context: grpc.aio.ServicerContext, caller: Caller | None
    ) -> None:
        """Read events and submit each at once; acknowledge each, in order, once durable.

        Reading runs ahead of acknowledging (up to :data:`STREAM_WINDOW` events),
        so a client that sends before it reads has several events in one group
        commit. The first refusal or failure ends the stream through
        :meth:`_guarded`, after the events before it were acknowledged; events
        sent after it and not yet committed are withdrawn. Every event of the
        stream is recorded with ``caller``, the stream's own caller: the kernel
        named it once for the connection, which carries every event.
        """
        await _RecordStream(self._agent, self._acks, context, caller).run()

    async def GetRuntimeLog(
        self, request: agent_pb2.GetRuntimeLogRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.GetRuntimeLogResponse:
        events, head, length = await self._call(
            "GetRuntimeLog",
            context,
            lambda _caller: self._agent.log_page(request.start, request.limit),
        )
        return agent_pb2.GetRuntimeLogResponse(
            events=[_event_pb(e) for e in events], head=head, length=length
        )

    async def GetAgentInfo(
        self, request: agent_pb2.GetAgentInfoRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.GetAgentInfoResponse:
        info = await self._call("GetAgentInfo", context, lambda _caller: self._agent.info())
        return agent_pb2.GetAgentInfoResponse(
            version=info.version,
            tee=str(info.tee.tee),
            simulated=info.tee.simulated,
            root_of_trust=info.tee.root_of_trust,
            backend=info.tee.backend,
            agent_key_id=info.key_id,
            agent_public_key_pem=info.public_key_pem.encode(),
            log_length=info.log_length,
            log_head=info.log_head,
            serving=info.serving,
            serving_problem=info.serving_problem,
        )

    async def BeginStage(
        self, request: agent_pb2.BeginStageRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.BeginStageResponse:
        opened, previous = await self._call(
            "BeginStage",
            context,
            lambda caller: self._agent.begin_stage(
                request.pipeline,
                request.run_id,
                request.stage,
                _specs(request.inputs),
                request.previous_attestation,
                caller=caller,
            ),
        )
        return agent_pb2.BeginStageResponse(
            run_id=opened.run_id,
            previous_digest=bytes.fromhex(previous.digest) if previous else b"",
            event=_event_pb(opened.begin),
        )

    async def EndStage(
        self, request: agent_pb2.EndStageRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.EndStageResponse:
        attestation = await self._call(
            "EndStage",
            context,
            lambda caller: self._agent.end_stage(_specs(request.outputs), caller=caller),
        )
        return agent_pb2.EndStageResponse(attestation=attestation)

    async def AbortStage(
        self, request: agent_pb2.AbortStageRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.AbortStageResponse:
        event = await self._call(
            "AbortStage",
            context,
            lambda caller: self._agent.abort_stage(request.reason, caller=caller),
        )
        return agent_pb2.AbortStageResponse(event=_event_pb(event))


class AgentServer:
    """Both listeners, their health services, and an orderly stop.

    :meth:`bind` creates and binds every listener without serving on any;
    :meth:`start` then starts them all. A failure in either leaves nothing
    listening. The Unix listener is a :class:`PeerRelay` in front of a gRPC
    server on the relay's internal socket; the TCP listener is gRPC's own.
    """

    def __init__(self, agent: Agent, config: AgentConfig, tls: ServerTls | None = None) -> None:
        self._agent = agent
        self._config = config
        self._tls = tls
        self._servers: list[grpc.aio.Server] = []
        self._health: list[health.aio.HealthServicer] = []
        self._health_status: int | None = None  # what the health servicers last said
        self._pools: list[ThreadPoolExecutor] = []
        self._bound = False
        self._loop: asyncio.AbstractEventLoop | None = None  # the pipeline's (and ours)
        self._verifier_home: _LoopThread | None = None  # the verifier listener's own loop
        # Servers and health servicers that live on another loop than ours, and which.
        self._homes: dict[object, _LoopThread] = {}
        self.relay: PeerRelay | None = None  # the Unix listener, once bound
        self.tcp_port: int | None = None

    def _options(self) -> list[tuple[str, int]]:
        limit = self._config.limits.max_message_bytes
        return [
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", 256 << 20),
            # gRPC sets SO_REUSEPORT by default: a second agent could then bind
            # the same address and take half of the verifiers' connections.
            ("grpc.so_reuseport", 0),
        ]

    def _new_server(
        self, role: Role, caller_of: CallerOf | None = None, home: _LoopThread | None = None
    ) -> grpc.aio.Server:
        """A server for ``role``, on the running loop: ``home``'s loop where one is given."""
        server = grpc.aio.server(options=self._options())
        self._servers.append(server)  # before anything can fail: bind() stops it on failure
        if home is not None:
            self._homes[server] = home
        pool = ThreadPoolExecutor(_POOL_THREADS, thread_name_prefix=f"attestd-{role}")
        self._pools.append(pool)
        servicer = AgentServicer(self._agent, role, self.sync_health, pool, caller_of)
        agent_pb2_grpc.add_AgentServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
        health_servicer = health.aio.HealthServicer()
        if home is not None:
            self._homes[health_servicer] = home
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        enable_reflection(server, (SERVICE_NAME, health.SERVICE_NAME))
        self._health.append(health_servicer)
        self._health_status = None  # a new servicer has been told nothing yet
        return server

    async def bind(self) -> None:
        """Bind every configured listener; none serves until :meth:`start`."""
        try:
            self._bind_unix()
            self._bind_tcp()
        except BaseException:
            await self._discard()
            raise
        self._bound = True

    def _bind_unix(self) -> None:
        listen = self._config.listen
        if listen.unix_socket is None:
            return
        _prepare_socket_path(listen.unix_socket)  # from here on, the path is ours
        pipeline = self._config.pipeline
        relay = PeerRelay(
            listen.unix_socket,
            listen.unix_socket_mode,
            CallerPolicy(pipeline.allowed_uids, pipeline.allowed_gids),
        )
        self.relay = relay  # before anything can fail: _discard() closes it
        server = self._new_server(Role.PIPELINE, relay.caller_of)
        # The state directory: 0700, the agent's, and locked by it (agent/state_lock.py).
        relay.prepare_internal(self._config.state_dir)
        try:
            server.add_insecure_port(relay.internal_target)
        except RuntimeError as err:
            raise ListenError(f"cannot listen on {relay.internal_socket}") from err
        relay.bind()

    def _bind_tcp(self) -> None:
        listen = self._config.listen
        if listen.tcp_address is None:
            return
        if self._tls is None:
            raise ListenError("the TCP listener needs TLS material; none was loaded")
        credentials = self._tls.credentials()
        self._loop = asyncio.get_running_loop()
        # Verifiers are served on a loop of their own: when a batch of evidence settles,
        # hundreds of their calls become ready at once, and on a shared loop every
        # pipeline call arriving then would wait behind all of them.
        home = self._verifier_home = _LoopThread("attestd-verifier-loop")
        server = home.call(lambda: self._new_server(Role.VERIFIER, home=home))
        try:
            self.tcp_port = home.call(
                lambda: server.add_secure_port(listen.tcp_address, credentials)
            )
        except RuntimeError as err:
            raise ListenError(
                f"cannot listen on {listen.tcp_address}: the address is in use or not available"
            ) from err

    async def start(self) -> None:
        """Start serving on every listener (binding them first if :meth:`bind` was not called)."""
        if not self._bound:
            await self.bind()
        try:
            for server in self._servers:
                await self._at_home(server, server.start())
            if self.relay is not None:
                await self.relay.start()  # last: its gRPC server is ready for what it relays
            await self.sync_health()
        except BaseException:
            await self._discard()
            raise
        listen = self._config.listen
        if self.relay is not None:
            pipeline = self._config.pipeline
            log.info(
                "listening",
                extra={
                    "unix_socket": str(self.relay.public_path),
                    "role": "pipeline",
                    "internal_socket": str(self.relay.internal_socket),
                    "allowed_uids": sorted(pipeline.allowed_uids) or "any",
                    "allowed_gids": sorted(pipeline.allowed_gids) or "any",
                },
            )
        if listen.tcp_address is not None:
            log.info(
                "listening",
                extra={
                    "tcp": listen.tcp_address,
                    "port": self.tcp_port,
                    "role": "verifier",
                    "tls": "mutual",
                },
            )

    async def _at_home(self, owner: object, work: Awaitable[_T]) -> _T:
        """Await ``work`` (a coroutine of ``owner``) on the loop ``owner`` belongs to."""
        home = self._homes.get(owner)
        return await (home.run(work) if home is not None else work)

    def _close_homes(self) -> None:
        """Stop the verifier listener's loop, once its server has stopped."""
        self._homes.clear()
        if self._verifier_home is not None:
            self._verifier_home.close()
            self._verifier_home = None

    async def _discard(self) -> None:
        """Stop every server made so far, inside its loop (else their __del__ complains)."""
        await asyncio.gather(
            *(self._at_home(server, server.stop(None)) for server in self._servers)
        )
        self._servers.clear()
        self._shutdown_pools()
        self._health.clear()
        self._close_homes()
        self._health_status = None
        if self.relay is not None:
            await self.relay.close()  # removes only sockets it made: never another agent's
            self.relay = None

    async def sync_health(self) -> None:
        """Tell the health servicers whether the agent serves; a no-op when nothing changed.

        It runs after every call, so it costs a comparison unless the state moved.
        """
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if self._agent.serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        if status == self._health_status:
            return
        if self._loop is not None and asyncio.get_running_loop() is not self._loop:
            # A verifier call saw the change: the pipeline's loop tells every servicer, in order.
            await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(self.sync_health(), self._loop)
            )
            return
        self._health_status = status
        for servicer in self._health:
            await self._at_home(servicer, servicer.set("", status))
            await self._at_home(servicer, servicer.set(SERVICE_NAME, status))

    async def stop(self, grace: float = 5.0) -> None:
        for servicer in self._health:
            await self._at_home(servicer, servicer.enter_graceful_shutdown())
        if self.relay is not None:
            self.relay.stop_accepting()
        # Running calls finish through the relay; then it closes what is left.
        await asyncio.gather(
            *(self._at_home(server, server.stop(grace)) for server in self._servers)
        )
        self._shutdown_pools()
        self._close_homes()
        if self.relay is not None:
            await self.relay.close()
            self.relay = None

    def _shutdown_pools(self) -> None:
        for pool in self._pools:
            pool.shutdown(wait=False, cancel_futures=True)
        self._pools.clear()

    async def wait(self) -> None:
        await asyncio.gather(
            *(self._at_home(server, server.wait_for_termination()) for server in self._servers)
        )


def _prepare_socket_path(path: Path) -> None:
    try:
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    except OSError as err:
        # FileExistsError too: the parent (or one above it) is a file.
        raise ListenError(
            f"cannot create the socket's directory {path.parent}: "
            f"{err.strerror or 'a file is in the way'}"
        ) from err
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    except OSError as err:
        raise ListenError(f"cannot examine the socket path {path}: {err.strerror}") from err
    if not stat.S_ISSOCK(mode):
        raise ListenError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()  # a stale socket left by a crash
        return
    finally:
        probe.close()
    raise ListenError(f"another process is listening on {path}")
