"""Attest any pipeline step from Python: a context manager and a decorator.

Example, two stages of one run, the second linked to the first::

    from attestd.pipeline import Artifact, attested_stage, current_stage, stage

    with stage("prepare", pipeline="llm",
               inputs=[Artifact("/srv/raw", licence="CC-BY-4.0")],
               outputs=[Artifact("/srv/dataset", licence="CC-BY-4.0", tags=["pii:none"])],
               attestation_path="prepare.attestation.json") as prepare:
        make_dataset("/srv/raw", "/srv/dataset")
        prepare.record("pipeline.prepare", "rows", {"kept": 9_812})
    # prepare.attestation: the signed stage attestation; also in prepare.attestation.json

    @attested_stage(pipeline="llm", inputs=["/srv/dataset"], outputs=["/srv/model"],
                    licence="Apache-2.0", previous="prepare.attestation.json",
                    attestation_path="train.attestation.json")
    def train() -> None:
        current_stage().record("pipeline.train", "epoch_end", {"epoch": 1})

On entry the stage is begun on the local agent over its Unix socket (the
inputs are measured then); on a clean exit it is ended (the outputs are
measured then, as they are at that moment) and the agent's signed stage
attestation is kept on the handle and, if asked, written atomically to a
file; if the block raises, the stage is aborted and the exception goes on.
docs/pipeline-api.md describes each exit path and the unattested mode.

The agent is reached with :class:`attestd.client.AgentClient`; this module adds
the lifecycle, the handover between stages and typed errors, nothing else.
"""

from __future__ import annotations

import enum
import functools
import inspect
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, ParamSpec, TypeAlias, TypeVar

import grpc

from attestd._files import FileMissingError, FileRefusedError, read_regular_file, write_atomic
from attestd.cli._common import DEFAULT_SOCKET
from attestd.client import DEFAULT_TIMEOUT_S, AgentCallError, AgentClient, ArtifactSpec
from attestd.errors import AttestdError
from attestd.evidence import canonical_json
from attestd.evidence.provenance import MAX_ATTESTATION_BYTES
from attestd.v1 import agent_pb2

__all__ = [
    "ABORT_REASON_PREFIX",
    "PIPELINE_ENV",
    "SOCKET_ENV",
    "AgentRefusedError",
    "AgentTimeoutError",
    "AgentUnavailableError",
    "Artifact",
    "AttestationWriteError",
    "NoCurrentStageError",
    "PipelineError",
    "PreviousAttestationMissingError",
    "PreviousAttestationUnreadableError",
    "StageHandle",
    "StageState",
    "StageUsageError",
    "abort_reason",
    "attested_stage",
    "current_stage",
    "resolve_socket",
    "stage",
]

SOCKET_ENV: Final = "ATTESTD_SOCKET"
"""The environment variable naming the agent's socket when ``socket=`` is not given."""
PIPELINE_ENV: Final = "ATTESTD_PIPELINE"
"""The environment variable naming the pipeline when ``pipeline=`` is not given."""
ABORT_REASON_PREFIX: Final = "exception "
"""An abort reason is this prefix and the exception's qualified type name, never its message."""

log = logging.getLogger("attestd.pipeline")

P = ParamSpec("P")
R = TypeVar("R")


# -- errors --------------------------------------------------------------------------


class PipelineError(AttestdError):
    """Base class of the errors of :mod:`attestd.pipeline`."""

    reason = "pipeline_error"


class StageUsageError(PipelineError):
    """The stage was asked for something that cannot be done (no pipeline name, a handle reused)."""

    reason = "stage_usage"


class AgentUnavailableError(AgentCallError, PipelineError):
    """No agent answers on the socket: absent, stopped, or it refused the connection.

    ``socket_path`` is where it was looked for; ``code`` and ``details`` are gRPC's.
    Catchable as :class:`~attestd.client.AgentCallError` too.
    """

    reason = "agent_unavailable"

    def __init__(self, socket_path: str, call: str, code: grpc.StatusCode, details: str) -> None:
        # AgentCallError's own message is gRPC's; this one names the socket to check.
        AttestdError.__init__(
            self,
            f"no attestd agent answers on unix:{socket_path} ({call}: {code.name}: {details}); "
            f"is the agent running, and may this process connect to its socket?",
        )
        self.code = code
        self.details = details
        self.agent_reason = None
        self.socket_path = socket_path
        self.call = call


class AgentTimeoutError(AgentCallError, PipelineError):
    """The agent did not answer ``call`` within ``timeout`` seconds (gRPC's DEADLINE_EXCEEDED).

    The agent may still carry the call out: a timed-out BeginStage may open
    its stage later (the agent was still measuring the inputs), and that stage
    then stays open until ``attestctl stage abort``. Give large inputs or
    outputs a longer ``timeout``.
    """

    reason = "agent_timeout"

    def __init__(self, call: str, timeout: float, code: grpc.StatusCode, details: str) -> None:
        AttestdError.__init__(
            self,
            f"the agent did not answer {call} within {timeout:g} s ({code.name}: {details}); "
            "it may still be working on it",
        )
        self.code = code
        self.details = details
        self.agent_reason = None
        self.call = call
        self.timeout = timeout


class AgentRefusedError(AgentCallError, PipelineError):
    """The agent refused a call; ``agent_reason`` is its stable reason (``path_not_allowed``, ...).

    ``call`` names the RPC (``BeginStage``, ``EndStage``, ``AbortStage``,
    ``RecordEvent``). ``agent_reason`` is None only for the refusals the agent
    sends without one (docs/api.md: a role refusal, an internal error).
    """

    reason = "agent_refused"

    def __init__(
        self, call: str, code: grpc.StatusCode, details: str, agent_reason: str | None
    ) -> None:
        AttestdError.__init__(
            self, f"the agent refused {call}: {agent_reason or code.name}: {details}"
        )
        self.code = code
        self.details = details
        self.agent_reason = agent_reason
        self.call = call


class PreviousAttestationMissingError(PipelineError):
    """The previous stage left no attestation (no file, or it ran unattested or failed)."""

    reason = "previous_attestation_missing"


class PreviousAttestationUnreadableError(PipelineError):
    """The previous attestation file exists but cannot be read as one (a directory, too large)."""

    reason = "previous_attestation_unreadable"


class AttestationWriteError(PipelineError):
    """The stage ended attested, but its attestation file could not be written.

    The attestation is not lost: it is :attr:`attestation` here and on the handle.
    """

    reason = "attestation_write_failed"

    def __init__(self, path: Path, detail: str, attestation: bytes) -> None:
        super().__init__(f"cannot write the stage attestation to {path}: {detail}")
        self.path = path
        self.attestation = attestation


class NoCurrentStageError(PipelineError):
    """:func:`current_stage` was called outside any stage's block."""

    reason = "no_current_stage"


# -- values --------------------------------------------------------------------------


@dataclass(frozen=True)
class Artifact:
    """An input or output with its own licence (an SPDX expression) and policy tags.

    ``Artifact("/srv/model", licence="Apache-2.0", tags=["eval:passed"])``. A
    plain path in ``inputs`` or ``outputs`` takes the stage's ``licence`` and ``tags``.
    """

    path: str | os.PathLike[str]
    licence: str | None = None
    tags: Sequence[str] = ()

    def __post_init__(self) -> None:
        # A tuple, so the value stays frozen (and hashable) whatever sequence was given.
        object.__setattr__(self, "tags", _tag_tuple(self.tags, f"Artifact({self.path!r})"))


ArtifactLike: TypeAlias = "str | os.PathLike[str] | Artifact"
"""What ``inputs`` and ``outputs`` take: a path, or an :class:`Artifact`."""
PreviousLike: TypeAlias = "bytes | str | os.PathLike[str] | StageHandle | None"
"""The previous stage's attestation: its bytes, its file, or its handle."""
Content: TypeAlias = "bytes | str | Mapping[str, object]"
"""An event's content: bytes as given, text as UTF-8, a mapping as canonical JSON."""


class StageState(enum.Enum):
    """Where a :class:`StageHandle` is in its life."""

    NEW = "new"
    OPEN = "open"
    """Begun on the agent; the block is running."""
    ENDED = "ended"
    """Ended on the agent: :attr:`StageHandle.attestation` holds the attestation."""
    ABORTED = "aborted"
    """Aborted on the agent (the block raised, or EndStage was refused): no attestation."""
    UNATTESTED = "unattested"
    """Ran without the agent (``allow_unattested``): nothing recorded, no attestation."""


_current: ContextVar[StageHandle | None] = ContextVar("attestd_pipeline_stage", default=None)


def current_stage() -> StageHandle:
    """The stage whose block is running in this context (thread, task); for decorated functions.

    ``current_stage().record("pipeline.train", "epoch_end", {"epoch": 3})``.
    NoCurrentStageError outside any stage.
    """
    handle = _current.get()
    if handle is None:
        raise NoCurrentStageError("no attestd stage is open in this context")
    return handle


def resolve_socket(socket: str | os.PathLike[str] | None = None) -> str:
    """The agent's socket: ``socket`` if given, else ``$ATTESTD_SOCKET``, else attestctl's default.

    ``resolve_socket()`` -> ``"/run/attestd/attestd.sock"`` with nothing set.
    """
    if socket is not None:
        return os.fspath(socket)
    return os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET


# -- the stage -----------------------------------------------------------------------


class StageHandle:
    """One stage run: a context manager that begins, ends or aborts it on the agent.

        with stage("train", pipeline="llm", outputs=["/srv/model"]) as s:
            s.record("pipeline.train", "epoch_end", {"epoch": 1})
        s.attestation       # bytes, after a clean exit; None after an abort or unattested

    Made by :func:`stage`; used once. While the block runs, :meth:`record`
    logs events into the stage's segment and :meth:`add_output` declares more
    outputs. After a clean exit, :attr:`attestation` holds the signed stage
    attestation (and :attr:`attestation_path` its file, if one was asked for).
    """

    def __init__(
        self,
        name: str,
        *,
        pipeline: str | None = None,
        inputs: Sequence[ArtifactLike] = (),
        outputs: Sequence[ArtifactLike] = (),
        licence: str | None = None,
        tags: Sequence[str] = (),
        previous: PreviousLike = None,
        run_id: str = "",
        attestation_path: str | os.PathLike[str] | None = None,
        socket: str | os.PathLike[str] | None = None,
        allow_unattested: bool = False,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        pipeline = pipeline or os.environ.get(PIPELINE_ENV)
        if not pipeline:
            raise StageUsageError(
                f"stage {name!r}: give pipeline=NAME or set {PIPELINE_ENV}; the agent "
                "records every stage under its pipeline's name"
            )
        self.name = name
        self.pipeline = pipeline
        self.socket_path = resolve_socket(socket)
        self.allow_unattested = allow_unattested
        self.state = StageState.NEW
        self.run_id: str | None = None
        """The run id in force, from the agent (None until begun, and when unattested)."""
        self.previous_digest: str | None = None
        """SHA-256 (hex) of the previous stage's provenance, as the agent linked it."""
        self.attestation: bytes | None = None
        """The signed stage attestation, once the stage has ended attested; else None."""
        self.attestation_path = Path(attestation_path) if attestation_path is not None else None
        """Where the attestation is written; the file exists only if this stage ended attested."""
        self.unattested_reason: str | None = None
        """Why the stage ran unattested: ``agent_unavailable`` or ``previous_unattested``."""
        self._licence = licence
        self._tags = _tag_tuple(tags, f"stage {name!r}")
        self._inputs = [self._spec(a) for a in inputs]
        self._outputs = [self._spec(a) for a in outputs]
        self._previous = previous
        self._requested_run_id = run_id
        self._timeout = timeout
        self._client: AgentClient | None = None
        self._token: Token[StageHandle | None] | None = None

    @property
    def attested(self) -> bool:
        """Whether the agent attests this stage (begun on it, and not run unattested)."""
        return self.state in (StageState.OPEN, StageState.ENDED, StageState.ABORTED)

    def _spec(self, item: ArtifactLike) -> ArtifactSpec:
        # Absolute paths, as attestctl sends them: the agent resolves against its own cwd.
        if isinstance(item, Artifact):
            return ArtifactSpec(
                path=os.path.abspath(item.path),
                license=item.licence or self._licence or "",
                tags=list(item.tags or self._tags),
            )
        return ArtifactSpec(
            path=os.path.abspath(item), license=self._licence or "", tags=list(self._tags)
        )

    def add_output(self, item: ArtifactLike) -> None:
        """Declare one more output, measured when the stage ends (paths decided in the block)."""
        if self.state not in (StageState.NEW, StageState.OPEN, StageState.UNATTESTED):
            raise StageUsageError(f"stage {self.name!r} is {self.state.value}; too late to add")
        self._outputs.append(self._spec(item))

    def record(
        self, domain: str, operation: str, content: Content = b""
    ) -> agent_pb2.RecordEventResponse | None:
        """Log an event into the stage's segment; returns the agent's answer (None if unattested).

        ``s.record("pipeline.train", "epoch_end", {"epoch": 3, "loss": 0.41})``.
        A refusal (a reserved ``attestd.`` domain, oversized content) is
        :class:`AgentRefusedError`.
        """
        data = _content_bytes(content)
        if self.state is StageState.UNATTESTED:
            log.debug(
                "unattested stage: event not recorded",
                extra={"stage": self.name, "domain": domain, "operation": operation},
            )
            return None
        if self.state is not StageState.OPEN or self._client is None:
            raise StageUsageError(f"stage {self.name!r} is {self.state.value}, not open")
        return self._call("RecordEvent", lambda c: c.record(domain, operation, data))

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> StageHandle:
        if self.state is not StageState.NEW:
            raise StageUsageError(f"stage {self.name!r} was already run; make a new one")
        # Read first: the previous attestation may be the very file this stage replaces.
        previous = self._read_previous()
        self._remove_stale_attestation()
        if previous is None:
            self._run_unattested("previous_unattested")
        else:
            self._begin(previous)
        self._token = _current.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _current.reset(self._token)
            self._token = None
        if self.state is StageState.UNATTESTED:
            return
        try:
            if exc is None:
                self._end()
            else:
                self._abort_for(exc)
        finally:
            self._close()

    def _remove_stale_attestation(self) -> None:
        """An old run's file must not pass for this run's: the path holds this run's, or nothing."""
        if self.attestation_path is None:
            return
        if not self.attestation_path.parent.is_dir():
            # Found now, not after a stage that may have run for hours.
            raise StageUsageError(
                f"attestation_path {self.attestation_path}: {self.attestation_path.parent} "
                "is not a directory"
            )
        try:
            self.attestation_path.unlink()
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            raise StageUsageError(
                f"attestation_path {self.attestation_path} is a directory"
            ) from None
        except OSError as err:
            raise AttestationWriteError(
                self.attestation_path, f"cannot remove the old file: {err.strerror}", b""
            ) from err

    def _read_previous(self) -> bytes | None:
        """The previous attestation's bytes (``b""``: none); None if it is missing and may be."""
        previous = self._previous
        if previous is None:
            return b""
        if isinstance(previous, bytes):
            return previous
        if isinstance(previous, StageHandle):
            if previous.attestation is not None:
                return previous.attestation
            self._check_previous_may_be_missing(
                f"stage {previous.name!r} is {previous.state.value}"
            )
            return None
        path = os.fspath(previous)
        try:
            return read_regular_file(path, MAX_ATTESTATION_BYTES, "previous attestation")
        except FileMissingError:
            self._check_previous_may_be_missing(f"{path} does not exist")
            return None
        except FileRefusedError as err:
            raise PreviousAttestationUnreadableError(err.message) from err

    def _check_previous_may_be_missing(self, why: str) -> None:
        """Only a stage allowed to run unattested may go on without its previous attestation."""
        if not self.allow_unattested:
            raise PreviousAttestationMissingError(
                f"stage {self.name!r}: the previous stage left no attestation ({why})"
            )

    def _begin(self, previous: bytes) -> None:
        client = AgentClient.unix(self.socket_path, timeout=self._timeout)
        try:
            begun = client.begin_stage(
                self.pipeline,
                self.name,
                inputs=self._inputs,
                run_id=self._requested_run_id,
                previous_attestation=previous,
            )
        except AgentCallError as err:
            client.close()
            if _unreachable(err) and self.allow_unattested:
                self._run_unattested("agent_unavailable", err.details)
                return
            raise self._typed("BeginStage", err) from None
        self._client = client
        self.state = StageState.OPEN
        self.run_id = begun.run_id
        self.previous_digest = begun.previous_digest.hex() or None
        log.info(
            "stage begun",
            extra={"pipeline": self.pipeline, "stage": self.name, "run_id": self.run_id},
        )

    def _run_unattested(self, why: str, detail: str = "") -> None:
        self.state = StageState.UNATTESTED
        self.unattested_reason = why
        log.warning(
            "STAGE %r OF PIPELINE %r RUNS UNATTESTED (%s%s): nothing it does is recorded or "
            "attested, and it writes no attestation",
            self.name,
            self.pipeline,
            why,
            f": {detail}" if detail else "",
            extra={"stage": self.name, "pipeline": self.pipeline, "unattested": why},
        )

    def _end(self) -> None:
        try:
            attestation = self._call("EndStage", lambda c: c.end_stage(self._outputs))
        except AgentRefusedError as refusal:
            # A refused EndStage leaves the stage open on the agent (docs/lifecycle.md);
            # with no one left to retry, it would block every later stage: close it.
            why = refusal.agent_reason or refusal.code.name
            try:
                self._abort(f"EndStage refused: {why}")
            except PipelineError as err:
                refusal.add_note(f"attestd: stage {self.name!r} could not be aborted: {err}")
                log.error(
                    "the stage could not be aborted; it stays open on the agent",
                    extra={"stage": self.name, "error": err.reason},
                )
            raise
        self.state = StageState.ENDED
        self.attestation = attestation
        log.info(
            "stage ended",
            extra={"pipeline": self.pipeline, "stage": self.name, "run_id": self.run_id},
        )
        if self.attestation_path is not None:
            try:
                write_atomic(self.attestation_path, attestation, mode=0o644)
            except OSError as err:
                raise AttestationWriteError(
                    self.attestation_path, err.strerror or str(err), attestation
                ) from err

    def _abort_for(self, exc: BaseException) -> None:
        """Abort because the block raised; a failed abort is noted on ``exc``, never replaces it."""
        try:
            self._abort(abort_reason(exc))
        except PipelineError as err:
            exc.add_note(f"attestd: stage {self.name!r} could not be aborted: {err}")
            log.error(
                "the stage could not be aborted; it stays open on the agent",
                extra={"stage": self.name, "error": err.reason},
            )

    def _abort(self, reason: str) -> None:
        self._call("AbortStage", lambda c: c.abort_stage(reason))
        self.state = StageState.ABORTED
        log.warning(
            "stage aborted",
            extra={"pipeline": self.pipeline, "stage": self.name, "reason": reason},
        )

    def _call(self, call: str, do: Callable[[AgentClient], R]) -> R:
        assert self._client is not None  # only called while OPEN
        try:
            return do(self._client)
        except AgentCallError as err:
            raise self._typed(call, err) from None

    def _typed(self, call: str, err: AgentCallError) -> AgentCallError:
        """The pipeline error for a failed call: unreachable, timed out, or refused."""
        if _unreachable(err):
            return AgentUnavailableError(self.socket_path, call, err.code, err.details)
        if err.code is grpc.StatusCode.DEADLINE_EXCEEDED and err.agent_reason is None:
            return AgentTimeoutError(call, self._timeout, err.code, err.details)
        return AgentRefusedError(call, err.code, err.details, err.agent_reason)

    def _close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def stage(
    name: str,
    *,
    pipeline: str | None = None,
    inputs: Sequence[ArtifactLike] = (),
    outputs: Sequence[ArtifactLike] = (),
    licence: str | None = None,
    tags: Sequence[str] = (),
    previous: PreviousLike = None,
    run_id: str = "",
    attestation_path: str | os.PathLike[str] | None = None,
    socket: str | os.PathLike[str] | None = None,
    allow_unattested: bool = False,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> StageHandle:
    """A stage of ``pipeline`` to run in a ``with`` block: begun on entry, ended or aborted on exit.

    ``with stage("train", pipeline="llm", inputs=["/srv/data"], outputs=["/srv/model"],
    licence="Apache-2.0", previous="prepare.json", attestation_path="train.json") as s:``

    - ``inputs``, ``outputs``: paths (made absolute here) or :class:`Artifact`;
      a plain path takes ``licence`` (an SPDX expression) and ``tags``. Inputs
      are measured on entry, outputs on a clean exit; every output must exist then.
    - ``previous``: the previous stage's attestation (bytes, a file, or its
      handle); the agent links this stage to it and takes its run id.
    - ``attestation_path``: removed on entry, written atomically on a clean
      exit: it exists afterwards only if this stage ended attested.
    - ``socket``: default ``$ATTESTD_SOCKET``, else ``/run/attestd/attestd.sock``;
      ``pipeline``: default ``$ATTESTD_PIPELINE``.
    - ``allow_unattested``: run the block even when no agent answers (or the
      previous stage left no attestation), attesting nothing; see docs/pipeline-api.md.
    """
    return StageHandle(
        name,
        pipeline=pipeline,
        inputs=inputs,
        outputs=outputs,
        licence=licence,
        tags=tags,
        previous=previous,
        run_id=run_id,
        attestation_path=attestation_path,
        socket=socket,
        allow_unattested=allow_unattested,
        timeout=timeout,
    )


def attested_stage(
    name: str | None = None,
    *,
    pipeline: str | None = None,
    inputs: Sequence[ArtifactLike] = (),
    outputs: Sequence[ArtifactLike] = (),
    licence: str | None = None,
    tags: Sequence[str] = (),
    previous: str | os.PathLike[str] | None = None,
    run_id: str = "",
    attestation_path: str | os.PathLike[str] | None = None,
    socket: str | os.PathLike[str] | None = None,
    allow_unattested: bool = False,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run each call of a function as one stage, as :func:`stage` would (default name: its own).

    ``@attested_stage(pipeline="llm", outputs=["/srv/model"], attestation_path="train.json")``
    over ``def train() -> None``. Inside, :func:`current_stage` is the stage's
    handle. The function's result is returned unchanged; the attestation is
    handed on through ``attestation_path``, which the next stage names as
    ``previous``. Each call is a new stage: a function that raises aborts its
    stage, and the exception goes on.
    """

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        stage_name = name or function.__name__
        if inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function):
            # Calling one only makes a coroutine: the stage would end before any work ran.
            raise StageUsageError(
                f"{function.__qualname__} is async; use `with stage(...)` inside it instead"
            )
        if inspect.isgeneratorfunction(function):
            raise StageUsageError(
                f"{function.__qualname__} is a generator; its work runs after the call returns, "
                "outside the stage: use `with stage(...)` inside it instead"
            )

        @functools.wraps(function)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            with stage(
                stage_name,
                pipeline=pipeline,
                inputs=inputs,
                outputs=outputs,
                licence=licence,
                tags=tags,
                previous=previous,
                run_id=run_id,
                attestation_path=attestation_path,
                socket=socket,
                allow_unattested=allow_unattested,
                timeout=timeout,
            ):
                return function(*args, **kwargs)

        return run

    return decorate


# -- helpers -------------------------------------------------------------------------


def abort_reason(exc: BaseException) -> str:
    """The abort reason for ``exc``: its type's qualified name only.

    The message is left out on purpose: exception messages routinely carry
    secrets (a connection string, a token in a URL, a row of the data), and the
    reason is written into the runtime log, which every verifier reads.
    ``abort_reason(ValueError("password=x"))`` is ``"exception builtins.ValueError"``.
    """
    kind = type(exc)
    name = f"{kind.__module__}.{kind.__qualname__}"
    # Within the agent's rule (docs/api.md: at most 1024 bytes, no control characters).
    printable = "".join(c if c.isprintable() and c.isascii() else "?" for c in name)
    return (ABORT_REASON_PREFIX + printable)[:1024]


def _tag_tuple(tags: Sequence[str], where: str) -> tuple[str, ...]:
    """``tags`` as a tuple; a bare string is refused, as it would be split into characters."""
    if isinstance(tags, str):
        raise StageUsageError(f"{where}: tags must be a list of strings, not the string {tags!r}")
    return tuple(tags)


def _content_bytes(content: Content) -> bytes:
    if isinstance(content, bytes):
        return content
    if isinstance(content, str):
        return content.encode("utf-8")
    return canonical_json(dict(content))


def _unreachable(err: AgentCallError) -> bool:
    """gRPC could not reach the agent: UNAVAILABLE without the agent's reason.

    The agent's own UNAVAILABLE refusals (a TEE error) carry an
    ``attestd-reason``, so they are refusals, not absence (docs/api.md).
    """
    return err.code is grpc.StatusCode.UNAVAILABLE and err.agent_reason is None
