"""The agent service, free of gRPC: record events, measure artifacts, produce evidence.

    agent = Agent.open(config)                       # or Agent(config, backend, store, key)
    event, head = agent.record_event("pipeline", "train.start", b"...", caller=caller)
    [artifact] = agent.measure(["/srv/models/base"])
    envelope = agent.evidence(nonce, [artifact.measurement.name])
    envelope = agent.evidence(nonce, [], LogCheckpoint(length, head))   # later events only
    opened, previous = agent.begin_stage(...)        # stages: attestd.agent.stage_machine

The runtime log's store is attestd.agent.runtime_log_store, the encoding of
measurement events attestd.agent.measurement_events.

Ordering rule for every state change (docs/operations.md, "Durability"):
append the event to the log and fsync, then extend the runtime register, then
answer. Concurrent events share the append and the fsync (group commit,
attestd.agent.runtime_log_store.GroupCommitter) and are extended in order. On
start the log is replayed against the register; a crash between the first two
steps is completed (the events were durable, so their extensions are owed; at
most one group's worth), anything else that disagrees stops the agent from
serving evidence.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import logging
import os
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

import attestd
from attestd.agent.artifacts import ArtifactRoots, HashingConfig, Measurement
from attestd.agent.config import AgentConfig
from attestd.agent.errors import (
    ArtifactNotMeasuredError,
    CheckpointUnknownError,
    EvidenceTooLargeError,
    NotServingError,
    RequestInvalidError,
    echo,
)
from attestd.agent.evidence_batcher import EvidenceBatcher, Pending
from attestd.agent.host import current_boot_id, host_claims
from attestd.agent.measurement_events import (
    ARTIFACT_DOMAIN,
    ARTIFACT_OPERATION,
    GPU_ARTIFACT_OPERATION,
    MeasuredArtifact,
    measurement_content,
    subject_measurement,
)
from attestd.agent.metrics import AgentMetrics
from attestd.agent.runtime_log_store import (
    GroupCommitter,
    RuntimeLogStore,
    Written,
    rotate_on_new_boot,
)
from attestd.agent.stage_machine import StageMachine, recover_open_stage
from attestd.agent.stages import (
    STAGE_DOMAIN,
    ArtifactSpec,
    OpenStage,
    PreviousStage,
    stage_artifact,
)
from attestd.errors import AttestdError
from attestd.evidence import (
    LOG_START,
    MAX_ENVELOPE_BYTES,
    BatchMembership,
    Binding,
    Caller,
    CcelBlob,
    EvidencePredicate,
    LogCheckpoint,
    RuntimeEvent,
    Subject,
    TeeClaims,
    canonical_json,
    event_digest,
    key_id,
    leaf_bytes,
    public_key_pem,
    report_data_for_root,
    subjects_digest,
    validate_event_fields,
    validate_nonce,
)
from attestd.evidence.envelope import sign_json, sign_payload
from attestd.evidence.merkle import inclusion_proofs, tree_root
from attestd.evidence.provenance import (
    MAX_SEGMENT_EVENTS,
    StageArtifact,
    StageAttestation,
    builder_id,
    outputs_as_subjects,
    stage_nonce,
)
from attestd.evidence.statement import StatementTemplate
from attestd.evidence.subjects import statement_subjects
from attestd.tee.backend import Attestation, BatchedRuntimeRegister, TeeBackend, TeeDescription
from attestd.tee.detect import open_backend

log = logging.getLogger("attestd.agent")

# model_signing's default (sha256, one entry per file), read without mmap: a
# pipeline truncating a file mid-measurement must get an error, not crash the agent.
_DAEMON_HASHING = HashingConfig(use_mmap=False)

#: Domains starting with this prefix are written by the agent itself; pipelines
#: may not forge them (an "artifact measured" event must come from a measurement).
RESERVED_DOMAIN_PREFIX = "attestd."

#: How long signing waits, between two members, for a runtime-log group being committed.
_PIPELINE_FIRST_S = 0.005
#: How often it looks while it waits.
_PIPELINE_POLL_S = 0.0002


@dataclass(frozen=True)
class _EvidenceRequest:
    """A GetEvidence waiting for its batch: the nonce, how to pick its subjects then, and
    the log checkpoint (known to this agent) whose later events its evidence carries."""

    nonce: bytes
    choose: Callable[[], list[Subject]]
    start: LogCheckpoint = LOG_START


@dataclass(frozen=True)
class AgentInfo:
    """What GetAgentInfo reports: who this agent is and whether it serves evidence."""

    version: str
    tee: TeeDescription
    key_id: str
    public_key_pem: str
    log_length: int
    log_head: bytes
    serving: bool
    serving_problem: str


class Agent:
    """One agent: a TEE backend, a runtime log, artifact roots and a signing key."""

    def __init__(
        self,
        config: AgentConfig,
        backend: TeeBackend,
        store: RuntimeLogStore,
        signing_key: ec.EllipticCurvePrivateKey,
        metrics: AgentMetrics | None = None,
    ) -> None:
        self.metrics = metrics if metrics is not None else AgentMetrics()
        self._config = config
        self._backend = backend
        self._store = store
        self._key = signing_key
        self._key_id = key_id(signing_key.public_key())
        self._roots = ArtifactRoots(config.artifact_roots) if config.artifact_roots else None
        # The head + register lock (RuntimeLogStore.lock): the committer holds it
        # while it extends the register and publishes events (never across an
        # fsync), so whoever holds it sees a log head that RTMR3 agrees with.
        self._lock = store.lock
        self._problem = ""
        self._has_register = True
        # Checked once: a runtime-checkable protocol's isinstance is slow for every group.
        self._batching = backend if isinstance(backend, BatchedRuntimeRegister) else None
        self._extended = Counter[str]()  # the current group's extended events, by domain
        self._artifacts: dict[str, MeasuredArtifact] = {}
        events = store.events()
        for event in events:
            self._remember_artifact(event)
        self._stages = StageMachine(
            recover_open_stage(events),
            max_content_bytes=config.limits.max_event_content_bytes,
            measure=self._measure_specs,
            log=self._log_stage_event,
            attest=self._attest_stage,
        )
        self._reconcile()
        batching = config.evidence.batching
        self._batcher: EvidenceBatcher[_EvidenceRequest] = EvidenceBatcher(
            self._serve_batch,
            max_batch=config.evidence.max_batch if batching else 1,
            signing_share=config.evidence.signing_percent / 100,
        )
        # Concurrent appends (RecordEvent, measurements, stage events) share one write and fsync.
        self._committer = GroupCommitter(
            store, apply=self._apply, admit=self._require_serving, batch=self._extensions
        )

    @classmethod
    def open(cls, config: AgentConfig) -> Agent:
        """Prepare the state directory, open the backend and the log, reconcile them."""
        if config.artifact_roots:
            ArtifactRoots(config.artifact_roots)  # a bad root fails before anything is created
        state = config.state_dir
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(state, 0o700)
        backend = open_backend(
            config.tee.backend,
            state,
            simulated_measurements=config.tee.simulated.values,
            vmpl=config.tee.vmpl,
        )
        if config.tee.quote_latency_ms:
            set_latency = getattr(backend, "set_quote_latency", None)
            if callable(set_latency):  # simulated backends; the config refuses it for hardware
                set_latency(config.tee.quote_latency_ms)
        log_path = state / "runtime-log.jsonl"
        boot_id = current_boot_id()
        if not backend.describe().simulated and boot_id:
            # A simulator's registers live in its state file and outlast reboots; hardware's don't.
            archived = rotate_on_new_boot(log_path, boot_id)
            if archived is not None:
                log.warning(
                    "a new boot: the runtime log of the previous boot was set aside",
                    extra={"archived": str(archived)},
                )
        store = RuntimeLogStore.open(log_path)
        # The evidence key lives only in this process: a restarted agent is a new signer.
        key = ec.generate_private_key(ec.SECP256R1())
        return cls(config, backend, store, key)

    # -- state -------------------------------------------------------------

    @property
    def serving(self) -> bool:
        return not self._problem

    @property
    def serving_problem(self) -> str:
        return self._problem

    def _reconcile(self) -> None:
        register = self._backend.read_runtime_register()
        self._has_register = register is not None
        if register is None:
            return  # No runtime register (SNP): the head is bound through report_data only.
        length = len(self._store)
        if register == self._store.head:
            log.info("runtime log replays to the register", extra={"events": length})
            return
        # A crash after a group's fsync, before all of its extensions, leaves the
        # register at the head of a prefix that ends inside that last group (the
        # store's group marker says which): finish the job. Never further back.
        group = self._store.last_group
        behind_limit = max(len(group), 1)  # a log from before group markers: one event
        for behind in range(1, min(length, behind_limit) + 1):
            if register == self._store.head_at(length - behind):
                owed = self._store.events(length - behind)
                for event in owed:
                    self._backend.extend_runtime_register(event_digest(event))
                log.warning(
                    "completed the register extension of the last logged event(s)",
                    extra={"first_sequence": owed[0].sequence, "events": len(owed)},
                )
                return
        self._problem = (
            f"runtime log ({length} events, head {self._store.head.hex()}) does not replay "
            f"to the runtime register ({register.hex()}); refusing to serve evidence"
        )
        log.error(self._problem)

    def _remember_artifact(self, event: RuntimeEvent) -> None:
        artifact = subject_measurement(event)
        if artifact is not None:
            self._artifacts[artifact.measurement.name] = artifact

    # -- operations ----------------------------------------------------------

    def record_event(
        self, domain: str, operation: str, content: bytes, *, caller: Caller | None = None
    ) -> tuple[RuntimeEvent, bytes]:
        """Durably log one pipeline event and extend the register; returns (event, head).

        ``caller`` is the process that asked, from the kernel (attestd.agent.peercred);
        it is part of the event and so of its digest.
        """
        self._check_event(domain, operation, content)
        return self._append(domain, operation, content, caller)

    def record_event_future(
        self, domain: str, operation: str, content: bytes, *, caller: Caller | None = None
    ) -> Future[Written]:
        """:meth:`record_event` without blocking a thread: the future settles with the event
        as :class:`~attestd.agent.runtime_log_store.Written` (event, digest, head).

        An invalid event raises here. The event joins the next group commit, and
        the future settles once it is durable and in the register (or failed).
        Cancelling the future before its group is cut withdraws the event.
        """
        self._check_event(domain, operation, content)
        return self._committer.submit(domain, operation, content, caller)

    def _check_event(self, domain: str, operation: str, content: bytes) -> None:
        """Refuse what a pipeline may not record: a reserved domain, oversized or bad fields."""
        # In any case: "ATTESTD.stage" would read as the agent's own domain to a person.
        if domain.lower().startswith(RESERVED_DOMAIN_PREFIX):
            raise RequestInvalidError(
                f"domain {echo(domain)}: the prefix {RESERVED_DOMAIN_PREFIX!r} "
                "is reserved for the agent (in any letter case)"
            )
        if len(content) > self._config.limits.max_event_content_bytes:
            raise RequestInvalidError(
                f"event content is {len(content)} bytes; the limit is "
                f"{self._config.limits.max_event_content_bytes}"
            )
        validate_event_fields(domain, operation, content)

    def _append(
        self, domain: str, operation: str, content: bytes, caller: Caller | None
    ) -> tuple[RuntimeEvent, bytes]:
        """Log one event through the group committer: write, fsync, extend, then answer."""
        return self._committer.commit(domain, operation, content, caller)

    @contextlib.contextmanager
    def _extensions(self) -> Iterator[None]:
        """Around a group's :meth:`_apply` calls: one register write for the whole group
        where the backend can (the simulated TD), elsewhere each extension its own; then
        the group's extended events are counted, one metric update per domain."""
        self._extended = extended = Counter[str]()
        backend = self._batching
        if backend is None or not self._has_register:
            yield
        else:
            try:
                with backend.runtime_register_batch():
                    yield
            except Exception:
                self._problem = (
                    "a group of events is logged but writing the register failed; "
                    "restart the agent to complete the extension"
                )
                log.exception(self._problem)
                raise
        for domain, count in extended.items():
            self.metrics.event_recorded(domain, count)

    def _apply(self, event: RuntimeEvent, digest: bytes) -> None:
        """Extend the register by a durably written event; the committer holds the head lock
        inside :meth:`_extensions`, which counts the event once the extension is made."""
        if self._has_register:
            try:
                self._backend.extend_runtime_register(digest)
            except Exception:
                self._problem = (
                    f"event {event.sequence} is logged but extending the register failed; "
                    "restart the agent to complete the extension"
                )
                log.exception(self._problem)
                raise
        self._remember_artifact(event)
        self._extended[event.domain] += 1

    def measure(
        self, paths: Sequence[str], *, use_gpu: bool = False, caller: Caller | None = None
    ) -> list[MeasuredArtifact]:
        """Hash each path (inside the artifact roots) and log each measurement.

        Each measurement's event records ``caller``, the process that asked for it.

        With ``use_gpu`` each path must be a regular file, hashed with BLAKE3 on
        the GPU; its event is ``measured-gpu`` and it is not an evidence subject
        (subjects carry sha256). No GPU means a refusal, never the CPU.
        """
        if self._roots is None:
            raise RequestInvalidError("no artifact roots are configured; measuring is disabled")
        self._require_serving()  # before hashing, which may take minutes
        if not paths:
            raise RequestInvalidError("no paths given")
        if len(paths) > self._config.limits.max_artifacts_per_call:
            raise RequestInvalidError(
                f"{len(paths)} paths given; "
                f"the limit is {self._config.limits.max_artifacts_per_call}"
            )
        for path in paths:  # refuse the whole call before hashing anything
            self._roots.resolve(path)
        if use_gpu:
            return self._measure_on_gpu(paths, caller)
        measured: list[MeasuredArtifact] = []
        for path in paths:
            m = self._roots.measure(path, config=_DAEMON_HASHING)
            content = measurement_content(m)
            event, _ = self._append(ARTIFACT_DOMAIN, ARTIFACT_OPERATION, content, caller)
            measured.append(MeasuredArtifact(m, event.sequence))
            self.metrics.hashed("cpu", m.size_bytes)  # no digest cache here: every byte was read
            log.info("artifact measured", extra={"artifact": m.name, "digest": dict(m.digest)})
        return measured

    def _measure_on_gpu(
        self, paths: Sequence[str], caller: Caller | None
    ) -> list[MeasuredArtifact]:
        from attestd.agent.artifacts.gpu import cuda

        assert self._roots is not None
        cuda.require()  # before anything is hashed or logged
        measured: list[MeasuredArtifact] = []
        for path in paths:
            m = _hash_file_on_gpu(self._roots.resolve(path), path)
            content = measurement_content(m)
            event, _ = self._append(ARTIFACT_DOMAIN, GPU_ARTIFACT_OPERATION, content, caller)
            measured.append(MeasuredArtifact(m, event.sequence))
            self.metrics.hashed("gpu", m.size_bytes)
            log.info(
                "artifact measured on the GPU",
                extra={"artifact": m.name, "blake3": m.digest["blake3"]},
            )
        return measured

    def evidence(
        self,
        nonce: bytes,
        artifact_names: Sequence[str],
        checkpoint: LogCheckpoint | None = None,
    ) -> bytes:
        """Signed, hardware-bound evidence for ``nonce`` (a DSSE envelope, JSON bytes).

        With ``checkpoint`` (a point of the log the verifier holds) the evidence
        carries only the events after it, and names it as ``logStart``.
        """
        return self.evidence_future(nonce, artifact_names, checkpoint).result()

    def evidence_future(
        self,
        nonce: bytes,
        artifact_names: Sequence[str],
        checkpoint: LogCheckpoint | None = None,
    ) -> Future[bytes]:
        """:meth:`evidence`, answered when the quote of the batch it joins is signed.

        Validation errors raise here (a checkpoint this log does not contain:
        CheckpointUnknownError); everything after it settles the future.
        """
        validate_nonce(nonce)
        if len(artifact_names) > self._config.limits.max_artifacts_per_call:
            raise RequestInvalidError(
                f"{len(artifact_names)} artifacts asked for; the limit is "
                f"{self._config.limits.max_artifacts_per_call}"
            )
        start = self._known_checkpoint(checkpoint) if checkpoint is not None else LOG_START
        names = list(artifact_names)
        request = _EvidenceRequest(nonce, lambda: self._subjects(names), start)
        return self.metrics.time_evidence(self._batcher.submit(request))

    def _known_checkpoint(self, checkpoint: LogCheckpoint) -> LogCheckpoint:
        """``checkpoint`` if this agent's log has ``checkpoint.head`` at ``checkpoint.length``.

        An unknown checkpoint is refused, never served from the beginning: the
        verifier would replay a log it cannot tie to what it holds, and a
        verifier that asked for a slice must not get a lifetime's log instead.
        The log only grows while the agent runs, so a known checkpoint stays known.
        """
        with self._lock:
            length = len(self._store)
            head = self._store.head_at(checkpoint.length) if checkpoint.length <= length else None
        if head is None:
            raise CheckpointUnknownError(
                f"the checkpoint is at event {checkpoint.length}, but the runtime log has "
                f"{length} events (another agent's log, or one from before a reboot?)"
            )
        if not hmac.compare_digest(head, checkpoint.head):
            raise CheckpointUnknownError(
                f"the runtime log's head after {checkpoint.length} events is {head.hex()}, "
                f"not the checkpoint's {checkpoint.head.hex()}"
            )
        return checkpoint

    def _evidence(self, nonce: bytes, choose: Callable[[], list[Subject]]) -> bytes:
        """Evidence whose subjects ``choose`` picks (when its batch is cut)."""
        return self._batcher.submit(_EvidenceRequest(nonce, choose)).result()

    def _serve_batch(self, batch: Sequence[Pending[_EvidenceRequest]]) -> Callable[[], None] | None:
        """One quote for ``batch``: snapshot the log, build the tree, quote its root.

        Returns the signing of each member's statement, which the batcher runs
        while the next batch's quote is taken. The lock recording needs is held
        only to pick subjects and snapshot the log, never across the quote
        (docs/evidence-format.md section 9).
        """
        issued_at = datetime.now(UTC)
        members: list[tuple[Pending[_EvidenceRequest], list[Subject], Binding]] = []
        cap = self._config.limits.max_log_events_in_evidence
        with self._lock:
            self._require_serving()
            length, head = len(self._store), self._store.head
            for pending in batch:
                # The cap is on the events this evidence carries, those after its checkpoint,
                # so it limits the time between a verifier's looks, not the agent's lifetime.
                carried = length - pending.request.start.length
                if carried > cap:
                    pending.future.set_exception(
                        EvidenceTooLargeError(
                            f"the runtime log has {carried} events after the checkpoint "
                            f"(event {pending.request.start.length}), more than the {cap} "
                            "evidence may carry; ask from a later checkpoint"
                        )
                    )
                    continue
                try:
                    subjects = statement_subjects(pending.request.choose(), self._key_id)
                    digest = subjects_digest(subjects)
                except AttestdError as err:
                    pending.future.set_exception(err)  # this request only; the batch goes on
                    continue
                binding = Binding(pending.request.nonce, digest, head, self._key_id, issued_at)
                members.append((pending, subjects, binding))
        self.metrics.evidence_batch_size.observe(len(batch))
        if not members:
            return None
        leaves = [leaf_bytes(binding) for _, _, binding in members]
        root = tree_root(leaves)
        quote_started = time.perf_counter()
        attestation = self._backend.attest(report_data_for_root(root))
        self.metrics.quote_seconds.observe(time.perf_counter() - quote_started)
        first = min(pending.request.start.length for pending, _, _ in members)
        events = self._log_through_quote(attestation, first, length)

        def sign_each() -> None:
            # The quote and collateral are encoded once for the whole batch, the log once
            # for each checkpoint its members asked from: each carries its own slice.
            templates: dict[LogCheckpoint, StatementTemplate] = {}
            for (pending, subjects, binding), proof in zip(
                members, inclusion_proofs(leaves), strict=True
            ):
                start = pending.request.start
                template = templates.get(start)
                if template is None:
                    since = events[start.length - first :]
                    shared = self._shared_predicate(attestation, since, start)
                    template = templates[start] = StatementTemplate(shared)
                payload = template.encode(subjects, binding, BatchMembership(root, proof))
                try:
                    pending.future.set_result(self._sign(payload))
                except AttestdError as err:
                    pending.future.set_exception(err)
                self._step_aside()

        return sign_each

    def _step_aside(self) -> None:
        """Between two members' signatures: let the record path go first.

        Handing the GIL over lets a thread of the record path that waits for it
        (the group committer after an fsync) run at once, rather than after the
        interpreter's switch interval once for each of its syscalls. While a group
        is being committed, signing waits for it, a few milliseconds at most: a
        batch of a thousand-millisecond quote is signed in one burst, and the
        pipeline's events would otherwise queue behind it (issue 11: verifiers
        never starve the pipeline).
        """
        time.sleep(0)
        deadline = time.monotonic() + _PIPELINE_FIRST_S
        while self._committer.busy and time.monotonic() < deadline:
            time.sleep(_PIPELINE_POLL_S)

    def _log_through_quote(
        self, attestation: Attestation, first: int, length: int
    ) -> tuple[RuntimeEvent, ...]:
        """The log from event ``first`` up to the runtime register the quote carries
        (to ``length`` events without one).

        Events recorded while the quote was in flight may be in the quoted
        register: the log is appended before the register is extended, so the
        length at which the log's head equals the quoted register is in the store.
        """
        quoted = attestation.runtime_register if self._has_register else None
        with self._lock:
            if quoted is None:
                return tuple(self._store.events(first, length))
            for end in range(length, len(self._store) + 1):
                if hmac.compare_digest(self._store.head_at(end), quoted):
                    return tuple(self._store.events(first, end))
        raise NotServingError(
            f"the quoted runtime register {quoted.hex()} is no head of the runtime log "
            f"from event {length} on; the log and the register disagree"
        )

    def _shared_predicate(
        self, attestation: Attestation, events: tuple[RuntimeEvent, ...], start: LogCheckpoint
    ) -> EvidencePredicate:
        """What every statement of a batch shares; binding and batch are replaced per request."""
        placeholder = Binding(b"\0" * 16, "0" * 64, bytes(48), self._key_id, datetime.now(UTC))
        return evidence_predicate(
            placeholder,
            self._tee_claims,
            attestation,
            events,
            self._public_key_pem,
            host=host_claims(),
            log_start=start,
        )

    # Neither the backend's description nor the key changes while the agent runs
    # (a restarted agent is a new signer): encoded once, not once per batch.
    @functools.cached_property
    def _tee_claims(self) -> TeeClaims:
        return TeeClaims.of(self._backend.describe())

    @functools.cached_property
    def _public_key_pem(self) -> str:
        return public_key_pem(self._key.public_key())

    def _sign(self, payload: bytes) -> bytes:
        """The DSSE envelope of a statement's JCS, refused if verifiers would refuse its size."""
        envelope = sign_payload(payload, self._key)
        if len(envelope) > MAX_ENVELOPE_BYTES:
            # Verifiers refuse larger envelopes; say so here rather than ship unreadable evidence.
            raise EvidenceTooLargeError(
                f"the evidence would be {len(envelope)} bytes, over the {MAX_ENVELOPE_BYTES} "
                "bytes verifiers accept; ask from a later log checkpoint"
            )
        return envelope

    def _subjects(self, names: Sequence[str]) -> list[Subject]:
        if not names:
            chosen = list(self._artifacts.values())
        else:
            chosen = []
            for name in dict.fromkeys(names):
                # Subjects are named by real path; accept the path as the pipeline wrote it too.
                found = self._artifacts.get(name) or self._artifacts.get(os.path.realpath(name))
                if found is None:
                    raise ArtifactNotMeasuredError(
                        f"artifact {echo(name)} has not been measured by this agent"
                    )
                chosen.append(found)
            chosen = list({a.measurement.name: a for a in chosen}.values())
        return [Subject(a.measurement.name, dict(a.measurement.digest)) for a in chosen]

    # -- stages (the state machine is attestd.agent.stage_machine) -----------

    def begin_stage(
        self,
        pipeline: str,
        run_id: str,
        stage: str,
        inputs: Sequence[ArtifactSpec],
        previous_attestation: bytes,
        *,
        caller: Caller | None = None,
    ) -> tuple[OpenStage, PreviousStage | None]:
        """Open a stage: measure its inputs, then log the ``attestd.stage`` ``begin`` event.

        Every event the call logs (the inputs' measurements, ``begin``) records ``caller``.
        """
        return self._stages.begin(
            pipeline, run_id, stage, inputs, previous_attestation, caller=caller
        )

    def end_stage(self, outputs: Sequence[ArtifactSpec], *, caller: Caller | None = None) -> bytes:
        """Close the open stage; returns its stage attestation (JSON bytes).

        A failure before the ``end`` event is logged (a bad output path) leaves
        the stage open for another try; once the event is logged, the stage is over.
        """
        return self._stages.end(outputs, caller=caller)

    def abort_stage(self, reason: str, *, caller: Caller | None = None) -> RuntimeEvent:
        """Close the open stage without an attestation: log an ``abort`` event with ``reason``."""
        return self._stages.abort(reason, caller=caller)

    def _log_stage_event(
        self, operation: str, content: bytes, caller: Caller | None
    ) -> RuntimeEvent:
        event, _ = self._append(STAGE_DOMAIN, operation, content, caller)
        return event

    def _attest_stage(
        self, opened: OpenStage, outputs: list[StageArtifact], end: RuntimeEvent
    ) -> bytes:
        """Provenance signed by the agent key, and evidence bound to its payload."""
        count = end.sequence + 1 - opened.begin.sequence
        if count > MAX_SEGMENT_EVENTS:
            raise EvidenceTooLargeError(
                f"the stage recorded {count} events, more than the {MAX_SEGMENT_EVENTS} "
                "a provenance segment may carry"
            )
        with self._lock:
            segment = self._store.events(opened.begin.sequence, end.sequence + 1)
        tee = self._backend.describe()
        provenance = opened.provenance(
            outputs,
            segment,
            builder_id(str(tee.tee), tee.backend, self._key_id),
            attestd.__version__,
        )
        statement = provenance.to_statement()
        payload = canonical_json(statement)  # what sign_json signs, byte for byte
        envelope = sign_json(statement, self._key)
        subjects = outputs_as_subjects(outputs)  # exactly the outputs, not a later measurement
        evidence = self._evidence(stage_nonce(payload), lambda: subjects)
        return StageAttestation(provenance=envelope, evidence=evidence).to_json()

    def _measure_specs(
        self, label: str, specs: Sequence[ArtifactSpec], caller: Caller | None
    ) -> list[StageArtifact]:
        if not specs:
            return []
        if self._roots is not None:
            real = [str(self._roots.resolve(s.path)) for s in specs]
            if len(set(real)) != len(real):
                raise RequestInvalidError(f"{label}: two paths name the same artifact")
        measured = self.measure([s.path for s in specs], caller=caller)
        return [stage_artifact(s, m.measurement) for s, m in zip(specs, measured, strict=True)]

    # -- inspection ------------------------------------------------------------

    def log_page(self, start: int, limit: int) -> tuple[Sequence[RuntimeEvent], bytes, int]:
        page = limit or self._config.limits.log_page_size
        page = min(page, self._config.limits.log_page_size)
        with self._lock:
            return self._store.events(start, start + page), self._store.head, len(self._store)

    def info(self) -> AgentInfo:
        with self._lock:
            return AgentInfo(
                version=attestd.__version__,
                tee=self._backend.describe(),
                key_id=self._key_id,
                public_key_pem=public_key_pem(self._key.public_key()),
                log_length=len(self._store),
                log_head=self._store.head,
                serving=self.serving,
                serving_problem=self._problem,
            )

    def _require_serving(self) -> None:
        if self._problem:
            raise NotServingError(self._problem)

    def close(self) -> None:
        self._batcher.close()
        self._committer.close()  # commits what is queued: those events are owed an answer
        self._store.close()


def _hash_file_on_gpu(real: Path, path: str) -> Measurement:
    """BLAKE3 of the regular file ``real`` (``path`` as the caller wrote it, for errors)."""
    from attestd.agent.artifacts.gpu import cuda

    fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RequestInvalidError(f"{echo(path)}: GPU measurement takes regular files only")
        # Hash exactly the inode opened above, whatever happens to the path.
        digest = cuda.blake3_file(f"/proc/self/fd/{fd}").hex()
    finally:
        os.close(fd)
    return Measurement(
        name=str(real), kind="file", digest={"blake3": digest},
        size_bytes=info.st_size, file_count=1,
    )  # fmt: skip


def evidence_predicate(
    binding: Binding,
    tee: TeeClaims,
    attestation: Attestation,
    runtime_log: tuple[RuntimeEvent, ...],
    agent_key_pem: str,
    *,
    host: Mapping[str, object],
    agent_version: str = attestd.__version__,
    log_start: LogCheckpoint = LOG_START,
) -> EvidencePredicate:
    """The predicate of the evidence over ``binding``: where each part of ``attestation`` goes.

        attestation = backend.attest(report_data_for(binding))
        predicate = evidence_predicate(
            binding, TeeClaims.of(backend.describe()), attestation, events, pem, host=host
        )

    The one layout of the statement: the agent fills it per batch (its binding a
    placeholder, replaced per request), and the conformance suite and the tests
    build their evidence with it, so what they verify is what the agent ships.
    """
    return EvidencePredicate(
        binding=binding,
        tee=tee,
        quote=attestation.quote,
        runtime_log=runtime_log,
        agent_key_pem=agent_key_pem,
        agent_version=agent_version,
        host=host,
        certificates=attestation.certificates,
        collateral=attestation.collateral,
        ccel=_ccel_blob(attestation),
        log_start=log_start,
    )


def _ccel_blob(attestation: Attestation) -> CcelBlob | None:
    """The backend's CC event log in the evidence format's terms."""
    ccel = attestation.ccel
    return CcelBlob(table=ccel.table, log=ccel.log) if ccel is not None else None
