"""A small synchronous client for the agent, for pipelines, operators and verifiers.

Example, from a pipeline step on the same host::

    from attestd.client import AgentClient

    with AgentClient.unix("/run/attestd/attestd.sock") as agent:
        agent.measure(["/srv/models/llama"])
        agent.record("pipeline.train", "epoch_end", b'{"epoch": 3}')

a pipeline that records many events, each acknowledged once durable, on one stream::

    with AgentClient.unix("/run/attestd/attestd.sock") as agent, agent.recorder() as recorder:
        for step in range(10_000):
            ack = recorder.record("pipeline.train", "step", b'{"loss": 0.1}')

a pipeline stage, whose attestation the next stage names as its previous one::

    with AgentClient.unix("/run/attestd/attestd.sock") as agent:
        begun = agent.begin_stage("llm", "finetune",
                                  inputs=[ArtifactSpec(path="/srv/models/base", license="MIT")])
        ...
        attestation = agent.end_stage([ArtifactSpec(path="/srv/models/tuned", tags=["pii=none"])])
        # or, to give the stage up: agent.abort_stage("input rejected by the data check")

and from a remote verifier, over mutual TLS::

    with AgentClient.mtls("host:7443", cert=..., key=..., ca=...) as agent:
        envelope = agent.evidence(nonce)

A verifier that keeps the log checkpoint of its last affirming appraisal asks
for the events after it only, and can fetch (and check) the events before it::

        envelope = agent.evidence(nonce, checkpoint=checkpoint)
        earlier = agent.log_prefix(checkpoint)      # LogPrefixError unless they chain to it
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self

import grpc

from attestd._files import read_regular_file
from attestd.errors import AttestdError
from attestd.evidence import Caller, LogCheckpoint, RuntimeEvent, verify_log_prefix
from attestd.v1 import agent_pb2, agent_pb2_grpc

DEFAULT_TIMEOUT_S = 120.0
MAX_TLS_FILE_BYTES = 1 << 20
"""The largest certificate, key or CA file the client reads (a FIFO or device is refused)."""
ArtifactSpec = agent_pb2.ArtifactSpec
"""An input or output of a stage: ``ArtifactSpec(path=..., license=..., tags=[...])``."""

# Evidence envelopes may be up to 16 MiB (attestd.evidence.MAX_ENVELOPE_BYTES);
# gRPC's default 4 MiB receive limit would refuse a long runtime log.
_CHANNEL_OPTIONS: list[tuple[str, int | str]] = [("grpc.max_receive_message_length", 64 << 20)]


class _Closing:
    """A ``with`` block closes it: ``with AgentClient.unix(path) as client: ...``."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()  # whether or not the block raised: nothing here outlives it


class AgentCallError(AttestdError):
    """The agent refused or failed a call; ``code`` is the gRPC status."""

    reason = "agent_call_failed"

    def __init__(self, code: grpc.StatusCode, details: str, agent_reason: str | None) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.agent_reason = agent_reason


class AgentClient(_Closing):
    def __init__(self, channel: grpc.Channel, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self._channel = channel
        self._stub = agent_pb2_grpc.AgentStub(channel)  # type: ignore[no-untyped-call]
        self._timeout = timeout

    @classmethod
    def unix(cls, socket_path: str | Path, timeout: float = DEFAULT_TIMEOUT_S) -> AgentClient:
        return cls(grpc.insecure_channel(f"unix:{socket_path}", options=_CHANNEL_OPTIONS), timeout)

    @classmethod
    def mtls(
        cls,
        target: str,
        *,
        cert: Path,
        key: Path,
        ca: Path,
        server_name: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> AgentClient:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=read_regular_file(ca, MAX_TLS_FILE_BYTES, "CA certificate"),
            private_key=read_regular_file(key, MAX_TLS_FILE_BYTES, "client key"),
            certificate_chain=read_regular_file(cert, MAX_TLS_FILE_BYTES, "client certificate"),
        )
        options = list(_CHANNEL_OPTIONS)
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        return cls(grpc.secure_channel(target, credentials, options=options), timeout)

    def close(self) -> None:
        self._channel.close()

    def _invoke(self, method: Callable[..., Any], request: object) -> Any:
        try:
            return method(request, timeout=self._timeout)
        except grpc.RpcError as err:
            raise _call_error(err) from None

    def measure(self, paths: Sequence[str], *, use_gpu: bool = False) -> list[agent_pb2.Artifact]:
        request = agent_pb2.MeasureArtifactsRequest(paths=list(paths), use_gpu=use_gpu)
        response: agent_pb2.MeasureArtifactsResponse = self._invoke(
            self._stub.MeasureArtifacts, request
        )
        return list(response.artifacts)

    def record(self, domain: str, operation: str, content: bytes) -> agent_pb2.RecordEventResponse:
        request = agent_pb2.RecordEventRequest(domain=domain, operation=operation, content=content)
        response: agent_pb2.RecordEventResponse = self._invoke(self._stub.RecordEvent, request)
        return response

    def recorder(self) -> Recorder:
        """A :class:`Recorder`: :meth:`record` on one ``RecordEvents`` stream (close it after)."""
        return Recorder(self._stub)

    def evidence(
        self,
        nonce: bytes,
        artifact_names: Sequence[str] = (),
        *,
        checkpoint: LogCheckpoint | None = None,
    ) -> bytes:
        """Evidence for ``nonce``; from ``checkpoint`` on, it carries only later events.

        Appraise it with the same checkpoint (``appraise(..., checkpoint=...)``).
        An agent that does not know the checkpoint refuses (``checkpoint_unknown``).
        """
        request = agent_pb2.GetEvidenceRequest(nonce=nonce, artifact_names=list(artifact_names))
        if checkpoint is not None:
            request.checkpoint.length = checkpoint.length
            request.checkpoint.head = checkpoint.head
        response: agent_pb2.GetEvidenceResponse = self._invoke(self._stub.GetEvidence, request)
        return response.envelope

    def runtime_log(self, start: int = 0, limit: int = 0) -> agent_pb2.GetRuntimeLogResponse:
        request = agent_pb2.GetRuntimeLogRequest(start=start, limit=limit)
        response: agent_pb2.GetRuntimeLogResponse = self._invoke(self._stub.GetRuntimeLog, request)
        return response

    def log_pages(self, start: int = 0, limit: int = 0) -> Iterator[list[RuntimeEvent]]:
        """The runtime log from event ``start``, one ``GetRuntimeLog`` page at a time.

        Lazy: a page is fetched when the previous one has been consumed. The
        events are as the agent sent them, unchecked; :meth:`log_prefix` checks them.
        """
        while True:
            page = self.runtime_log(start, limit)
            events = [_event(e) for e in page.events]
            if not events:
                return
            yield events
            start += len(events)
            if start >= page.length:
                return

    def log_prefix(self, checkpoint: LogCheckpoint, *, limit: int = 0) -> tuple[RuntimeEvent, ...]:
        """The first ``checkpoint.length`` events, fetched page by page, checked to chain to it.

        LogPrefixError (``log_prefix_mismatch``) if they do not: a gap, a short
        log, or a head other than the checkpoint's.
        """
        return verify_log_prefix(self.log_pages(0, limit), checkpoint)

    def info(self) -> agent_pb2.GetAgentInfoResponse:
        response: agent_pb2.GetAgentInfoResponse = self._invoke(
            self._stub.GetAgentInfo, agent_pb2.GetAgentInfoRequest()
        )
        return response

    def begin_stage(
        self,
        pipeline: str,
        stage: str,
        *,
        inputs: Sequence[str | agent_pb2.ArtifactSpec] = (),
        run_id: str = "",
        previous_attestation: bytes = b"",
    ) -> agent_pb2.BeginStageResponse:
        """Open a stage; a plain string input is a path with no licence or tags."""
        request = agent_pb2.BeginStageRequest(
            pipeline=pipeline,
            run_id=run_id,
            stage=stage,
            inputs=_specs(inputs),
            previous_attestation=previous_attestation,
        )
        response: agent_pb2.BeginStageResponse = self._invoke(self._stub.BeginStage, request)
        return response

    def end_stage(self, outputs: Sequence[str | agent_pb2.ArtifactSpec] = ()) -> bytes:
        """Close the open stage; returns the stage attestation (JSON bytes)."""
        request = agent_pb2.EndStageRequest(outputs=_specs(outputs))
        response: agent_pb2.EndStageResponse = self._invoke(self._stub.EndStage, request)
        return response.attestation

    def abort_stage(self, reason: str = "") -> agent_pb2.RuntimeEvent:
        """Close the open stage without an attestation; returns the ``abort`` event."""
        request = agent_pb2.AbortStageRequest(reason=reason)
        response: agent_pb2.AbortStageResponse = self._invoke(self._stub.AbortStage, request)
        return response.event


class Recorder(_Closing):
    """Events recorded on one ``RecordEvents`` stream: the per-call cost of gRPC is paid once.

        with agent.recorder() as recorder:
            ack = recorder.record("pipeline.train", "step", b'{"loss": 0.1}')
            ack.event.sequence, ack.log_head

    :meth:`record` returns only once the agent has acknowledged the event, which
    it does only after the event is on disk and in the runtime register, as
    :meth:`AgentClient.record`. A refusal raises :class:`AgentCallError` and
    ends the stream; the recorder is then closed. One thread at a time.
    """

    def __init__(self, stub: agent_pb2_grpc.AgentStub) -> None:
        self._requests: queue.SimpleQueue[agent_pb2.RecordEventRequest | None] = queue.SimpleQueue()
        self._responses: Iterator[agent_pb2.RecordEventResponse] = stub.RecordEvents(
            self._outgoing()
        )
        self._closed = False

    def _outgoing(self) -> Iterator[agent_pb2.RecordEventRequest]:
        while (request := self._requests.get()) is not None:
            yield request

    def record(self, domain: str, operation: str, content: bytes) -> agent_pb2.RecordEventResponse:
        """Record one event; returns the agent's acknowledgement once it is durable."""
        if self._closed:
            raise RecorderClosedError("this recorder is closed")
        request = agent_pb2.RecordEventRequest(domain=domain, operation=operation, content=content)
        self._requests.put(request)
        try:
            return next(self._responses)
        except grpc.RpcError as err:
            self._end()
            raise _call_error(err) from None
        except StopIteration:
            self._end()
            raise RecorderClosedError("the agent ended the stream") from None

    def close(self) -> None:
        """End the stream; every event recorded so far has been acknowledged."""
        if self._closed:
            return
        self._end()
        try:
            for _ in self._responses:  # the agent's end of the stream (nothing is in flight)
                pass
        except grpc.RpcError as err:
            raise _call_error(err) from None

    def _end(self) -> None:
        self._closed = True
        self._requests.put(None)


class RecorderClosedError(AttestdError):
    """:meth:`Recorder.record` after the stream ended (closed, or ended by a refusal)."""

    reason = "recorder_closed"


def _call_error(err: grpc.RpcError) -> AgentCallError:
    """The agent's status, details and ``attestd-reason`` of a failed call."""
    code: grpc.StatusCode = err.code()
    details: str = err.details() or ""
    trailing = err.trailing_metadata() or ()
    reason = next((value for key, value in trailing if key == "attestd-reason"), None)
    return AgentCallError(code, details, reason)


def _specs(items: Sequence[str | agent_pb2.ArtifactSpec]) -> list[agent_pb2.ArtifactSpec]:
    return [agent_pb2.ArtifactSpec(path=i) if isinstance(i, str) else i for i in items]


def _event(message: agent_pb2.RuntimeEvent) -> RuntimeEvent:
    """A log page's event in the evidence format's terms (its digest is recomputed, not trusted)."""
    caller = (
        Caller(message.caller.pid, message.caller.uid, message.caller.gid)
        if message.HasField("caller")
        else None
    )
    return RuntimeEvent(
        sequence=message.sequence,
        domain=message.domain,
        operation=message.operation,
        content=message.content,
        recorded_at=message.recorded_at,
        caller=caller,
    )
