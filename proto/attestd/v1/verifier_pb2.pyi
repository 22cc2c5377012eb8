from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetChallengeRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class Challenge(_message.Message):
    __slots__ = ("nonce", "expires_at", "has_checkpoint", "checkpoint_length", "checkpoint_head")
    NONCE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    HAS_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_HEAD_FIELD_NUMBER: _ClassVar[int]
    nonce: bytes
    expires_at: float
    has_checkpoint: bool
    checkpoint_length: int
    checkpoint_head: bytes
    def __init__(self, nonce: _Optional[bytes] = ..., expires_at: _Optional[float] = ..., has_checkpoint: _Optional[bool] = ..., checkpoint_length: _Optional[int] = ..., checkpoint_head: _Optional[bytes] = ...) -> None: ...

class PushEvidenceRequest(_message.Message):
    __slots__ = ("name", "nonce", "evidence")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    nonce: bytes
    evidence: bytes
    def __init__(self, name: _Optional[str] = ..., nonce: _Optional[bytes] = ..., evidence: _Optional[bytes] = ...) -> None: ...

class PushEvidenceResponse(_message.Message):
    __slots__ = ("status", "reason", "ear")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EAR_FIELD_NUMBER: _ClassVar[int]
    status: str
    reason: str
    ear: str
    def __init__(self, status: _Optional[str] = ..., reason: _Optional[str] = ..., ear: _Optional[str] = ...) -> None: ...

class AgentSpec(_message.Message):
    __slots__ = ("name", "address", "cert_path", "key_path", "ca_path", "server_name", "policy_path", "interval_s", "push_pin")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CERT_PATH_FIELD_NUMBER: _ClassVar[int]
    KEY_PATH_FIELD_NUMBER: _ClassVar[int]
    CA_PATH_FIELD_NUMBER: _ClassVar[int]
    SERVER_NAME_FIELD_NUMBER: _ClassVar[int]
    POLICY_PATH_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    PUSH_PIN_FIELD_NUMBER: _ClassVar[int]
    name: str
    address: str
    cert_path: str
    key_path: str
    ca_path: str
    server_name: str
    policy_path: str
    interval_s: float
    push_pin: str
    def __init__(self, name: _Optional[str] = ..., address: _Optional[str] = ..., cert_path: _Optional[str] = ..., key_path: _Optional[str] = ..., ca_path: _Optional[str] = ..., server_name: _Optional[str] = ..., policy_path: _Optional[str] = ..., interval_s: _Optional[float] = ..., push_pin: _Optional[str] = ...) -> None: ...

class Agent(_message.Message):
    __slots__ = ("spec", "status", "status_reason", "registered_at", "last_appraised_at")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUS_REASON_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_APPRAISED_AT_FIELD_NUMBER: _ClassVar[int]
    spec: AgentSpec
    status: str
    status_reason: str
    registered_at: float
    last_appraised_at: float
    def __init__(self, spec: _Optional[_Union[AgentSpec, _Mapping]] = ..., status: _Optional[str] = ..., status_reason: _Optional[str] = ..., registered_at: _Optional[float] = ..., last_appraised_at: _Optional[float] = ...) -> None: ...

class AddAgentRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: AgentSpec
    def __init__(self, spec: _Optional[_Union[AgentSpec, _Mapping]] = ...) -> None: ...

class AddAgentResponse(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: Agent
    def __init__(self, agent: _Optional[_Union[Agent, _Mapping]] = ...) -> None: ...

class RemoveAgentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RemoveAgentResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAgentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAgentsResponse(_message.Message):
    __slots__ = ("agents",)
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[Agent]
    def __init__(self, agents: _Optional[_Iterable[_Union[Agent, _Mapping]]] = ...) -> None: ...

class GetLatestResultRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetLatestResultResponse(_message.Message):
    __slots__ = ("name", "status", "reason", "ear", "appraised_at", "replica", "log_length")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EAR_FIELD_NUMBER: _ClassVar[int]
    APPRAISED_AT_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    LOG_LENGTH_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: str
    reason: str
    ear: str
    appraised_at: float
    replica: str
    log_length: int
    def __init__(self, name: _Optional[str] = ..., status: _Optional[str] = ..., reason: _Optional[str] = ..., ear: _Optional[str] = ..., appraised_at: _Optional[float] = ..., replica: _Optional[str] = ..., log_length: _Optional[int] = ...) -> None: ...

class WatchStatusRequest(_message.Message):
    __slots__ = ("after_id",)
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    after_id: int
    def __init__(self, after_id: _Optional[int] = ...) -> None: ...

class StatusChange(_message.Message):
    __slots__ = ("id", "name", "at", "old_status", "new_status", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    OLD_STATUS_FIELD_NUMBER: _ClassVar[int]
    NEW_STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    at: float
    old_status: str
    new_status: str
    reason: str
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., at: _Optional[float] = ..., old_status: _Optional[str] = ..., new_status: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class GetFleetSummaryRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetFleetSummaryResponse(_message.Message):
    __slots__ = ("agents_by_status", "agents", "last_change_id")
    class AgentsByStatusEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    AGENTS_BY_STATUS_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    LAST_CHANGE_ID_FIELD_NUMBER: _ClassVar[int]
    agents_by_status: _containers.ScalarMap[str, int]
    agents: int
    last_change_id: int
    def __init__(self, agents_by_status: _Optional[_Mapping[str, int]] = ..., agents: _Optional[int] = ..., last_change_id: _Optional[int] = ...) -> None: ...
