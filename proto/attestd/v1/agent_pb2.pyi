from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetEvidenceRequest(_message.Message):
    __slots__ = ("nonce", "artifact_names", "checkpoint")
    NONCE_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_NAMES_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    nonce: bytes
    artifact_names: _containers.RepeatedScalarFieldContainer[str]
    checkpoint: LogCheckpoint
    def __init__(self, nonce: _Optional[bytes] = ..., artifact_names: _Optional[_Iterable[str]] = ..., checkpoint: _Optional[_Union[LogCheckpoint, _Mapping]] = ...) -> None: ...

class LogCheckpoint(_message.Message):
    __slots__ = ("length", "head")
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    length: int
    head: bytes
    def __init__(self, length: _Optional[int] = ..., head: _Optional[bytes] = ...) -> None: ...

class GetEvidenceResponse(_message.Message):
    __slots__ = ("envelope",)
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    envelope: bytes
    def __init__(self, envelope: _Optional[bytes] = ...) -> None: ...

class MeasureArtifactsRequest(_message.Message):
    __slots__ = ("paths", "use_gpu")
    PATHS_FIELD_NUMBER: _ClassVar[int]
    USE_GPU_FIELD_NUMBER: _ClassVar[int]
    paths: _containers.RepeatedScalarFieldContainer[str]
    use_gpu: bool
    def __init__(self, paths: _Optional[_Iterable[str]] = ..., use_gpu: _Optional[bool] = ...) -> None: ...

class Artifact(_message.Message):
    __slots__ = ("name", "kind", "digest", "size_bytes", "file_count", "log_sequence")
    class DigestEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    FILE_COUNT_FIELD_NUMBER: _ClassVar[int]
    LOG_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    digest: _containers.ScalarMap[str, str]
    size_bytes: int
    file_count: int
    log_sequence: int
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., digest: _Optional[_Mapping[str, str]] = ..., size_bytes: _Optional[int] = ..., file_count: _Optional[int] = ..., log_sequence: _Optional[int] = ...) -> None: ...

class MeasureArtifactsResponse(_message.Message):
    __slots__ = ("artifacts",)
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    artifacts: _containers.RepeatedCompositeFieldContainer[Artifact]
    def __init__(self, artifacts: _Optional[_Iterable[_Union[Artifact, _Mapping]]] = ...) -> None: ...

class RecordEventRequest(_message.Message):
    __slots__ = ("domain", "operation", "content")
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    domain: str
    operation: str
    content: bytes
    def __init__(self, domain: _Optional[str] = ..., operation: _Optional[str] = ..., content: _Optional[bytes] = ...) -> None: ...

class RuntimeEvent(_message.Message):
    __slots__ = ("sequence", "domain", "operation", "content", "recorded_at", "digest", "caller")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    RECORDED_AT_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    domain: str
    operation: str
    content: bytes
    recorded_at: str
    digest: bytes
    caller: Caller
    def __init__(self, sequence: _Optional[int] = ..., domain: _Optional[str] = ..., operation: _Optional[str] = ..., content: _Optional[bytes] = ..., recorded_at: _Optional[str] = ..., digest: _Optional[bytes] = ..., caller: _Optional[_Union[Caller, _Mapping]] = ...) -> None: ...

class Caller(_message.Message):
    __slots__ = ("pid", "uid", "gid")
    PID_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    pid: int
    uid: int
    gid: int
    def __init__(self, pid: _Optional[int] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ...) -> None: ...

class RecordEventResponse(_message.Message):
    __slots__ = ("event", "log_head")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    LOG_HEAD_FIELD_NUMBER: _ClassVar[int]
    event: RuntimeEvent
    log_head: bytes
    def __init__(self, event: _Optional[_Union[RuntimeEvent, _Mapping]] = ..., log_head: _Optional[bytes] = ...) -> None: ...

class GetRuntimeLogRequest(_message.Message):
    __slots__ = ("start", "limit")
    START_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    start: int
    limit: int
    def __init__(self, start: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class GetRuntimeLogResponse(_message.Message):
    __slots__ = ("events", "head", "length")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[RuntimeEvent]
    head: bytes
    length: int
    def __init__(self, events: _Optional[_Iterable[_Union[RuntimeEvent, _Mapping]]] = ..., head: _Optional[bytes] = ..., length: _Optional[int] = ...) -> None: ...

class GetAgentInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetAgentInfoResponse(_message.Message):
    __slots__ = ("version", "tee", "simulated", "root_of_trust", "backend", "agent_key_id", "agent_public_key_pem", "log_length", "log_head", "serving", "serving_problem")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TEE_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_FIELD_NUMBER: _ClassVar[int]
    ROOT_OF_TRUST_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    AGENT_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_PUBLIC_KEY_PEM_FIELD_NUMBER: _ClassVar[int]
    LOG_LENGTH_FIELD_NUMBER: _ClassVar[int]
    LOG_HEAD_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    SERVING_PROBLEM_FIELD_NUMBER: _ClassVar[int]
    version: str
    tee: str
    simulated: bool
    root_of_trust: str
    backend: str
    agent_key_id: str
    agent_public_key_pem: bytes
    log_length: int
    log_head: bytes
    serving: bool
    serving_problem: str
    def __init__(self, version: _Optional[str] = ..., tee: _Optional[str] = ..., simulated: _Optional[bool] = ..., root_of_trust: _Optional[str] = ..., backend: _Optional[str] = ..., agent_key_id: _Optional[str] = ..., agent_public_key_pem: _Optional[bytes] = ..., log_length: _Optional[int] = ..., log_head: _Optional[bytes] = ..., serving: _Optional[bool] = ..., serving_problem: _Optional[str] = ...) -> None: ...

class ArtifactSpec(_message.Message):
    __slots__ = ("path", "license", "tags")
    PATH_FIELD_NUMBER: _ClassVar[int]
    LICENSE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    path: str
    license: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, path: _Optional[str] = ..., license: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class BeginStageRequest(_message.Message):
    __slots__ = ("pipeline", "run_id", "stage", "inputs", "previous_attestation")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_ATTESTATION_FIELD_NUMBER: _ClassVar[int]
    pipeline: str
    run_id: str
    stage: str
    inputs: _containers.RepeatedCompositeFieldContainer[ArtifactSpec]
    previous_attestation: bytes
    def __init__(self, pipeline: _Optional[str] = ..., run_id: _Optional[str] = ..., stage: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[ArtifactSpec, _Mapping]]] = ..., previous_attestation: _Optional[bytes] = ...) -> None: ...

class BeginStageResponse(_message.Message):
    __slots__ = ("run_id", "previous_digest", "event")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_DIGEST_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    previous_digest: bytes
    event: RuntimeEvent
    def __init__(self, run_id: _Optional[str] = ..., previous_digest: _Optional[bytes] = ..., event: _Optional[_Union[RuntimeEvent, _Mapping]] = ...) -> None: ...

class EndStageRequest(_message.Message):
    __slots__ = ("outputs",)
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    outputs: _containers.RepeatedCompositeFieldContainer[ArtifactSpec]
    def __init__(self, outputs: _Optional[_Iterable[_Union[ArtifactSpec, _Mapping]]] = ...) -> None: ...

class EndStageResponse(_message.Message):
    __slots__ = ("attestation",)
    ATTESTATION_FIELD_NUMBER: _ClassVar[int]
    attestation: bytes
    def __init__(self, attestation: _Optional[bytes] = ...) -> None: ...

class AbortStageRequest(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class AbortStageResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: RuntimeEvent
    def __init__(self, event: _Optional[_Union[RuntimeEvent, _Mapping]] = ...) -> None: ...
