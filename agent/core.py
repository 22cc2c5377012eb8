"""The agent's logic, free of gRPC: record, measure, and produce evidence.

Ordering rule for every state change (docs/operations.md, "Durability"):
append the event to the log and fsync, then extend the runtime register, then
answer. On start the log is replayed against the register; a crash between
the first two steps is completed (the event was durable, so its extension is
owed), anything else that disagrees stops the agent from serving evidence.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric import ec

import attestd
from attestd.agent.artifacts import ArtifactRoots, HashingConfig, Measurement
from attestd.agent.config import AgentConfig
from attestd.agent.errors import (
    ArtifactNotMeasuredError,
    EvidenceTooLargeError,
    NoStageOpenError,
    NotServingError,
    RequestInvalidError,
    RuntimeLogCorruptError,
    StageAlreadyOpenError,
    echo,
)
from attestd.agent.host import current_boot_id, host_claims
from attestd.agent.runtime_log_store import RuntimeLogStore, rotate_on_new_boot
from attestd.agent.stages import (
    ABORT_OPERATION,
    BEGIN_OPERATION,
    END_OPERATION,
    STAGE_DOMAIN,
    ArtifactSpec,
    OpenStage,
    PreviousStage,
    StageRecoveryError,
    abort_content,
    begin_content,
    check_name,
    check_reason,
    check_specs,
    choose_run_id,
    end_content,
    parse_previous,
    reopen,
    stage_artifact,
)
from attestd.evidence import (
    MAX_ENVELOPE_BYTES,
    Binding,
    CcelBlob,
    EvidencePredicate,
    RuntimeEvent,
    Statement,
    Subject,
    TeeClaims,
    canonical_json,
    event_digest,
    key_id,
    now_rfc3339,
    public_key_pem,
    report_data_for,
    sign_statement,
    subjects_digest,
    validate_event_fields,
    validate_nonce,
)
from attestd.evidence.envelope import sign_json
from attestd.evidence.provenance import (
    MAX_SEGMENT_EVENTS,
    StageArtifact,
    StageAttestation,
    builder_id,
    outputs_as_subjects,
    stage_nonce,
)
from attestd.tee.backend import Attestation, TeeBackend, TeeDescription
from attestd.tee.detect import open_backend

log = logging.getLogger("attestd.agent")

# model_signing's default (sha256, one entry per file), read without mmap: a
# pipeline truncating a file mid-measurement must get an error, not crash the agent.
_DAEMON_HASHING = HashingConfig(use_mmap=False)

#: Domains starting with this prefix are written by the agent itself; pipelines
#: may not forge them (an "artifact measured" event must come from a measurement).
RESERVED_DOMAIN_PREFIX = "attestd."
ARTIFACT_DOMAIN = "attestd.artifact"
ARTIFACT_OPERATION = "measured"
GPU_ARTIFACT_OPERATION = "measured-gpu"


@dataclass(frozen=True)
class MeasuredArtifact:
    measurement: Measurement
    log_sequence: int


@dataclass(frozen=True)
class AgentInfo:
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
    ) -> None:
        self._config = config
        self._backend = backend
        self._store = store
        self._key = signing_key
        self._key_id = key_id(signing_key.public_key())
        self._roots = ArtifactRoots(config.artifact_roots) if config.artifact_roots else None
        # Serialises log append + register extension + evidence, so a quote's
        # RTMR3 always equals the head of the log it is delivered with.
        self._lock = threading.Lock()
        self._problem = ""
        self._has_register = True
        self._artifacts: dict[str, MeasuredArtifact] = {}
        # The open stage is rebuilt from the log on start, so it outlives a restart
        # (docs/lifecycle.md). ``_stage_busy`` marks a BeginStage or EndStage in
        # progress, which may hash for minutes outside ``_lock``.
        self._stage_lock = threading.Lock()
        self._stage_busy = False
        last_stage_event: RuntimeEvent | None = None
        for event in store.events():
            self._remember_artifact(event)
            if event.domain == STAGE_DOMAIN:
                last_stage_event = event
        self._stage: OpenStage | None = _recover_stage(last_stage_event)
        self._reconcile()

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
        if length and register == self._store.head_at(length - 1):
            # Crashed after fsyncing the last event but before extending: finish the job.
            last = self._store.events(length - 1)[0]
            self._backend.extend_runtime_register(event_digest(last))
            log.warning(
                "completed the register extension of the last logged event",
                extra={"sequence": last.sequence},
            )
            return
        self._problem = (
            f"runtime log ({length} events, head {self._store.head.hex()}) does not replay "
            f"to the runtime register ({register.hex()}); refusing to serve evidence"
        )
        log.error(self._problem)

    def _remember_artifact(self, event: RuntimeEvent) -> None:
        if event.domain != ARTIFACT_DOMAIN or event.operation != ARTIFACT_OPERATION:
            return
        measurement = _measurement_from_content(event)
        self._artifacts[measurement.name] = MeasuredArtifact(measurement, event.sequence)

    # -- operations ----------------------------------------------------------

    def record_event(
        self, domain: str, operation: str, content: bytes
    ) -> tuple[RuntimeEvent, bytes]:
        """Durably log one pipeline event and extend the register; returns (event, head)."""
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
        return self._append(domain, operation, content)

    def _append(self, domain: str, operation: str, content: bytes) -> tuple[RuntimeEvent, bytes]:
        with self._lock:
            self._require_serving()
            event = RuntimeEvent(
                sequence=len(self._store),
                domain=domain,
                operation=operation,
                content=content,
                recorded_at=now_rfc3339(),
            )
            head = self._store.append(event)
            if not self._has_register:
                self._remember_artifact(event)
                return event, head
            try:
                self._backend.extend_runtime_register(event_digest(event))
            except Exception:
                self._problem = (
                    f"event {event.sequence} is logged but extending the register failed; "
                    "restart the agent to complete the extension"
                )
                log.exception(self._problem)
                raise
            self._remember_artifact(event)
            return event, head

    def measure(self, paths: Sequence[str], *, use_gpu: bool = False) -> list[MeasuredArtifact]:
        """Hash each path (inside the artifact roots) and log each measurement.

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
            return self._measure_on_gpu(paths)
        measured: list[MeasuredArtifact] = []
        for path in paths:
            m = self._roots.measure(path, config=_DAEMON_HASHING)
            event, _ = self._append(ARTIFACT_DOMAIN, ARTIFACT_OPERATION, _measurement_content(m))
            measured.append(MeasuredArtifact(m, event.sequence))
            log.info("artifact measured", extra={"artifact": m.name, "digest": dict(m.digest)})
        return measured

    def _measure_on_gpu(self, paths: Sequence[str]) -> list[MeasuredArtifact]:
        from attestd.agent.artifacts.gpu import cuda

        assert self._roots is not None
        cuda.require()  # before anything is hashed or logged
        measured: list[MeasuredArtifact] = []
        for path in paths:
            real = self._roots.resolve(path)
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
            try:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode):
                    raise RequestInvalidError(
                        f"{echo(path)}: GPU measurement takes regular files only"
                    )
                # Hash exactly the inode opened above, whatever happens to the path.
                digest = cuda.blake3_file(f"/proc/self/fd/{fd}").hex()
            finally:
                os.close(fd)
            m = Measurement(
                name=str(real), kind="file", digest={"blake3": digest},
                size_bytes=info.st_size, file_count=1,
            )  # fmt: skip
            event, _ = self._append(
                ARTIFACT_DOMAIN, GPU_ARTIFACT_OPERATION, _measurement_content(m)
            )
            measured.append(MeasuredArtifact(m, event.sequence))
            log.info("artifact measured on the GPU", extra={"artifact": m.name, "blake3": digest})
        return measured

    def evidence(self, nonce: bytes, artifact_names: Sequence[str]) -> bytes:
        """Signed, hardware-bound evidence for ``nonce`` (a DSSE envelope, JSON bytes)."""
        validate_nonce(nonce)
        if len(artifact_names) > self._config.limits.max_artifacts_per_call:
            raise RequestInvalidError(
                f"{len(artifact_names)} artifacts asked for; the limit is "
                f"{self._config.limits.max_artifacts_per_call}"
            )
        return self._evidence(nonce, lambda: self._subjects(artifact_names))

    def _evidence(self, nonce: bytes, choose: Callable[[], list[Subject]]) -> bytes:
        """Evidence whose subjects ``choose`` picks, under the lock that pins the log head."""
        with self._lock:
            self._require_serving()
            subjects = choose()
            events = self._store.events()
            if len(events) > self._config.limits.max_log_events_in_evidence:
                raise EvidenceTooLargeError(
                    f"the runtime log has {len(events)} events, more than the "
                    f"{self._config.limits.max_log_events_in_evidence} evidence may carry"
                )
            binding = Binding(
                nonce=nonce,
                subjects_digest=subjects_digest(subjects),
                log_head=self._store.head,  # the store keeps the head replay() would give
                agent_key_id=self._key_id,
                issued_at=datetime.now(UTC),
            )
            attestation = self._backend.attest(report_data_for(binding))
        predicate = EvidencePredicate(
            binding=binding,
            tee=TeeClaims.of(self._backend.describe()),
            quote=attestation.quote,
            runtime_log=tuple(events),
            agent_key_pem=public_key_pem(self._key.public_key()),
            agent_version=attestd.__version__,
            host=host_claims(),
            certificates=attestation.certificates,
            collateral=attestation.collateral,
            ccel=_ccel_blob(attestation),
        )
        envelope = sign_statement(
            Statement(subjects=tuple(subjects), predicate=predicate), self._key
        )
        if len(envelope) > MAX_ENVELOPE_BYTES:
            # Verifiers refuse larger envelopes; say so here rather than ship unreadable evidence.
            raise EvidenceTooLargeError(
                f"the evidence would be {len(envelope)} bytes, over the {MAX_ENVELOPE_BYTES} "
                "bytes verifiers accept; the runtime log is too large to carry whole"
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

    # -- stages --------------------------------------------------------------

    def begin_stage(
        self,
        pipeline: str,
        run_id: str,
        stage: str,
        inputs: Sequence[ArtifactSpec],
        previous_attestation: bytes,
    ) -> tuple[OpenStage, PreviousStage | None]:
        """Open a stage: measure its inputs, then log the ``attestd.stage`` ``begin`` event."""
        check_name("pipeline", pipeline)
        check_name("stage", stage)
        check_specs("inputs", inputs)
        previous = parse_previous(previous_attestation) if previous_attestation else None
        run = choose_run_id(run_id, previous)
        link = previous.digest if previous else None
        # Refuse an oversized begin event before hashing anything (names may still grow).
        draft = [StageArtifact(s.path, {"sha256": "0" * 64}, s.license, s.tags) for s in inputs]
        self._check_stage_content(begin_content(pipeline, run, stage, draft, link))
        with self._stage_lock:
            if self._stage is not None:
                raise StageAlreadyOpenError(
                    f"stage {self._stage.stage!r} of run {self._stage.run_id!r} is open; "
                    "end it before beginning another"
                )
            if self._stage_busy:
                raise StageAlreadyOpenError("another BeginStage or EndStage is in progress")
            self._stage_busy = True
        try:
            artifacts = self._measure_specs("inputs", inputs)
            content = begin_content(pipeline, run, stage, artifacts, link)
            self._check_stage_content(content)
            event, _ = self._append(STAGE_DOMAIN, BEGIN_OPERATION, content)
        except BaseException:
            with self._stage_lock:
                self._stage_busy = False
            raise
        opened = OpenStage(pipeline, run, stage, tuple(artifacts), link, event)
        with self._stage_lock:
            self._stage, self._stage_busy = opened, False
        log.info(
            "stage begun",
            extra={"pipeline": pipeline, "run_id": run, "stage": stage, "sequence": event.sequence},
        )
        return opened, previous

    def end_stage(self, outputs: Sequence[ArtifactSpec]) -> bytes:
        """Close the open stage; returns its stage attestation (JSON bytes).

        A failure before the ``end`` event is logged (a bad output path) leaves
        the stage open for another try; once the event is logged, the stage is over.
        """
        check_specs("outputs", outputs)
        with self._stage_lock:
            if self._stage is None:
                busy = " (another BeginStage is in progress)" if self._stage_busy else ""
                raise NoStageOpenError(f"no stage is open{busy}; call BeginStage first")
            if self._stage_busy:
                raise NoStageOpenError("the open stage is being closed by another EndStage")
            self._stage_busy = True
            opened = self._stage
        ended = False
        try:
            artifacts = self._measure_specs("outputs", outputs)
            content = end_content(opened.run_id, opened.stage, artifacts)
            self._check_stage_content(content)
            end, _ = self._append(STAGE_DOMAIN, END_OPERATION, content)
            ended = True
        finally:
            with self._stage_lock:
                self._stage_busy = False
                if ended:
                    self._stage = None
        log.info(
            "stage ended",
            extra={"run_id": opened.run_id, "stage": opened.stage, "sequence": end.sequence},
        )
        return self._attest_stage(opened, artifacts, end)

    def abort_stage(self, reason: str) -> RuntimeEvent:
        """Close the open stage without an attestation: log an ``abort`` event with ``reason``."""
        check_reason(reason)
        with self._stage_lock:
            if self._stage is None:
                busy = " (another BeginStage is in progress)" if self._stage_busy else ""
                raise NoStageOpenError(f"no stage is open{busy}; nothing to abort")
            if self._stage_busy:
                raise NoStageOpenError("the open stage is being closed by an EndStage")
            self._stage_busy = True
            opened = self._stage
        aborted = False
        try:
            event, _ = self._append(STAGE_DOMAIN, ABORT_OPERATION, abort_content(opened, reason))
            aborted = True
        finally:
            with self._stage_lock:
                self._stage_busy = False
                if aborted:
                    self._stage = None
        log.info(
            "stage aborted",
            extra={
                "run_id": opened.run_id,
                "stage": opened.stage,
                "sequence": event.sequence,
                "reason": reason,
            },
        )
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

    def _measure_specs(self, label: str, specs: Sequence[ArtifactSpec]) -> list[StageArtifact]:
        if not specs:
            return []
        if self._roots is not None:
            real = [str(self._roots.resolve(s.path)) for s in specs]
            if len(set(real)) != len(real):
                raise RequestInvalidError(f"{label}: two paths name the same artifact")
        measured = self.measure([s.path for s in specs])
        return [stage_artifact(s, m.measurement) for s, m in zip(specs, measured, strict=True)]

    def _check_stage_content(self, content: bytes) -> None:
        limit = self._config.limits.max_event_content_bytes
        if len(content) > limit:
            raise RequestInvalidError(
                f"the stage event would be {len(content)} bytes, over the {limit}-byte limit "
                "on event content; declare fewer artifacts, tags or shorter licences"
            )

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
        self._store.close()


def _recover_stage(last: RuntimeEvent | None) -> OpenStage | None:
    """The stage still open in the log: its last stage event is a ``begin``."""
    if last is None or last.operation != BEGIN_OPERATION:
        return None  # never begun, or closed by an "end" or "abort" event
    try:
        opened = reopen(last)
    except StageRecoveryError as err:
        # An older agent's begin event, or a damaged one: EndStage cannot be
        # attested from it, so the stage stays closed and a new one may begin.
        log.warning(
            "the runtime log ends in an open stage that cannot be recovered; "
            "EndStage will be refused and a new BeginStage accepted",
            extra={"sequence": last.sequence, "error": str(err)},
        )
        return None
    log.info(
        "recovered the open stage from the runtime log",
        extra={
            "pipeline": opened.pipeline,
            "run_id": opened.run_id,
            "stage": opened.stage,
            "sequence": last.sequence,
        },
    )
    return opened


def _ccel_blob(attestation: Attestation) -> CcelBlob | None:
    """The backend's CC event log in the evidence format's terms."""
    ccel = attestation.ccel
    return CcelBlob(table=ccel.table, log=ccel.log) if ccel is not None else None


def _measurement_content(m: Measurement) -> bytes:
    """The content of an ``attestd.artifact`` event: what was measured, as canonical JSON."""
    return canonical_json(
        {
            "name": m.name,
            "kind": m.kind,
            "digest": dict(m.digest),
            "sizeBytes": m.size_bytes,
            "fileCount": m.file_count,
        }
    )


def _measurement_from_content(event: RuntimeEvent) -> Measurement:
    """The measurement an ``attestd.artifact`` event of our own log records."""
    try:
        data = json.loads(event.content)
        return Measurement(
            name=str(data["name"]),
            kind=data["kind"],
            digest={str(k): str(v) for k, v in dict(data["digest"]).items()},
            size_bytes=int(data["sizeBytes"]),
            file_count=int(data["fileCount"]),
        )
    except (ValueError, TypeError, KeyError) as err:
        # Only the agent writes this domain, so damage here is damage to the log.
        raise RuntimeLogCorruptError(
            f"runtime log event {event.sequence}: unreadable artifact measurement ({err!r})"
        ) from err
