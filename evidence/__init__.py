"""The formats the agent and the verifier share: evidence, binding, runtime log.

No I/O and no gRPC: bytes in, values out, and every rule written once. The
agent builds and signs evidence::

    from attestd import evidence as ev

    ev.validate_nonce(nonce)
    binding = ev.Binding(nonce, ev.subjects_digest(subjects), ev.replay(log),
                         ev.key_id(key.public_key()), datetime.now(UTC))
    quote = backend.get_quote(ev.report_data_for(binding))
    tee = ev.TeeClaims.of(backend.describe())
    predicate = ev.EvidencePredicate(binding, tee, quote, tuple(log),
                                     ev.public_key_pem(key.public_key()), "0.1.0", host)
    data = ev.sign_statement(ev.Statement(tuple(subjects), predicate), key)

and the verifier opens it, checks the quote (tee/), then the links::

    envelope, statement = ev.open_evidence(data)
    binding = statement.predicate.binding
    assert quote_report_data == ev.report_data_for(binding)     # after tee verification
    ev.verify_envelope(envelope, ev.load_public_key_pem(statement.predicate.agent_key_pem))
    for broken in (ev.agent_key_link(binding, statement.predicate.agent_key_pem),
                   ev.subjects_link(binding, statement.subjects),
                   ev.log_head_link(binding, statement.predicate.runtime_log)):
        assert broken is None, broken.reason                    # e.g. "subjects_digest_mismatch"

docs/evidence-format.md specifies every byte; errors derive from EvidenceError
and carry a stable ``reason``.
"""

from attestd.evidence.binding import (
    BATCH_ROOT_TAG,
    MAX_NONCE_BYTES,
    MIN_NONCE_BYTES,
    REPORT_DATA_BYTES,
    BatchMembership,
    Binding,
    BrokenLink,
    Subject,
    agent_key_link,
    batch_link,
    leaf_bytes,
    log_head_link,
    replays_through_head,
    report_data_for,
    report_data_for_root,
    subjects_digest,
    subjects_link,
    validate_nonce,
)
from attestd.evidence.canonical import canonical_json
from attestd.evidence.envelope import (
    MAX_ENVELOPE_BYTES,
    PAYLOAD_TYPE,
    open_evidence,
    parse_envelope,
    sign_statement,
    verify_envelope,
)
from attestd.evidence.errors import (
    AgentKeyMismatchError,
    EnvelopeSignatureError,
    EventFormatError,
    EvidenceError,
    EvidenceFormatError,
    LogPrefixError,
    LogReplayError,
    NonceError,
    SubjectsMismatchError,
)
from attestd.evidence.keys import key_id, load_public_key_pem, public_key_pem
from attestd.evidence.runtime_log_format import (
    INITIAL_LOG_HEAD,
    LOG_HEAD_SIZE,
    LOG_START,
    MAX_EVENT_CONTENT_BYTES,
    Caller,
    LogCheckpoint,
    RuntimeEvent,
    checkpoint_after,
    encode_event,
    event_digest,
    event_from_json,
    event_to_json,
    extend_head,
    format_rfc3339,
    now_rfc3339,
    parse_checkpoint,
    parse_rfc3339,
    replay,
    replay_from,
    validate_event_fields,
    verify_log_prefix,
)
from attestd.evidence.statement import (
    EVIDENCE_PREDICATE_TYPE,
    MAX_QUOTE_BYTES,
    MAX_RUNTIME_LOG_EVENTS,
    STATEMENT_TYPE,
    TEE_TYPES,
    CcelBlob,
    EvidencePredicate,
    Statement,
    TeeClaims,
    parse_statement,
)

__all__ = [
    "BATCH_ROOT_TAG",
    "EVIDENCE_PREDICATE_TYPE",
    "INITIAL_LOG_HEAD",
    "LOG_HEAD_SIZE",
    "LOG_START",
    "MAX_ENVELOPE_BYTES",
    "MAX_EVENT_CONTENT_BYTES",
    "MAX_NONCE_BYTES",
    "MAX_QUOTE_BYTES",
    "MAX_RUNTIME_LOG_EVENTS",
    "MIN_NONCE_BYTES",
    "PAYLOAD_TYPE",
    "REPORT_DATA_BYTES",
    "STATEMENT_TYPE",
    "TEE_TYPES",
    "AgentKeyMismatchError",
    "BatchMembership",
    "Binding",
    "BrokenLink",
    "Caller",
    "CcelBlob",
    "EnvelopeSignatureError",
    "EventFormatError",
    "EvidenceError",
    "EvidenceFormatError",
    "EvidencePredicate",
    "LogCheckpoint",
    "LogPrefixError",
    "LogReplayError",
    "NonceError",
    "RuntimeEvent",
    "Statement",
    "Subject",
    "SubjectsMismatchError",
    "TeeClaims",
    "agent_key_link",
    "batch_link",
    "canonical_json",
    "checkpoint_after",
    "encode_event",
    "event_digest",
    "event_from_json",
    "event_to_json",
    "extend_head",
    "format_rfc3339",
    "key_id",
    "leaf_bytes",
    "load_public_key_pem",
    "log_head_link",
    "now_rfc3339",
    "open_evidence",
    "parse_checkpoint",
    "parse_envelope",
    "parse_rfc3339",
    "parse_statement",
    "public_key_pem",
    "replay",
    "replay_from",
    "replays_through_head",
    "report_data_for",
    "report_data_for_root",
    "sign_statement",
    "subjects_digest",
    "subjects_link",
    "validate_event_fields",
    "validate_nonce",
    "verify_envelope",
    "verify_log_prefix",
]
