"""The runtime log's format: events, their canonical encoding, and the hash chain over them.

The agent's durable copy of the log is attestd.agent.runtime_log_store; this
module is what both sides agree on, with no I/O.

The chain is the TDX RTMR extend rule, so the same digest that extends the log
head also extends RTMR3 and a verifier can replay the log against the quote::

    event = RuntimeEvent(0, "pipeline", "stage.start", b"train", now_rfc3339())
    head = extend_head(INITIAL_LOG_HEAD, event_digest(event))
    assert head == replay([event])
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from attestd.evidence import _json
from attestd.evidence.canonical import canonical_json
from attestd.evidence.errors import EventFormatError, EvidenceFormatError, LogReplayError
from attestd.tee.tdx import rtmr

LOG_HEAD_SIZE = rtmr.RTMR_SIZE
"""Bytes in a log head and in an event digest (SHA-384), the size of a TDX RTMR."""

INITIAL_LOG_HEAD = rtmr.INITIAL_VALUE
"""The head of an empty log: 48 zero bytes, the reset value of an RTMR."""

MAX_EVENT_CONTENT_BYTES = 64 * 1024
"""The largest ``content`` an event may carry."""

MAX_NAME_LENGTH = 128
"""The longest ``domain`` or ``operation``."""

MAX_RECORDED_AT_LENGTH = 32

_NAME = re.compile(r"[A-Za-z0-9._:/-]{1,128}")
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?Z"
)


MAX_PID = 2**31 - 1
"""The largest process id (``pid_t`` is a signed 32-bit integer)."""

MAX_ID = 2**32 - 2
"""The largest uid or gid (``uid_t`` is 32 bits, and all ones means "no id")."""


@dataclass(frozen=True)
class Caller:
    """The process that asked for an event, as the agent's kernel reported it.

    The agent reads it from ``SO_PEERCRED`` of the caller's connection to its
    Unix socket, never from the request. ``gid`` is the effective primary
    group; ``pid`` is 0 when the caller's process is outside the agent's pid
    namespace.
    """

    pid: int
    uid: int
    gid: int


@dataclass(frozen=True)
class RuntimeEvent:
    """One entry of the runtime log.

    ``sequence`` counts from 0 without gaps; ``recorded_at`` is RFC 3339 UTC
    with a ``Z`` (``2026-11-23T10:00:00.123456Z``) and is hashed as written.
    ``caller`` is the pipeline process whose call made the event; None for an
    event of a log written before callers were recorded.
    """

    sequence: int
    domain: str
    operation: str
    content: bytes
    recorded_at: str
    caller: Caller | None = None


def validate_event_fields(domain: str, operation: str, content: bytes) -> None:
    """Check what a caller may choose in an event; EventFormatError says what is wrong."""
    for label, value in (("domain", domain), ("operation", operation)):
        if not isinstance(value, str):
            raise EventFormatError(f"{label} must be a string, not {type(value).__name__}")
        if not value:
            raise EventFormatError(f"{label} is empty")
        if len(value) > MAX_NAME_LENGTH:
            raise EventFormatError(
                f"{label} is {len(value)} characters, more than {MAX_NAME_LENGTH}"
            )
        if not _NAME.fullmatch(value):
            bad = next(c for c in value if not _NAME.fullmatch(c))
            raise EventFormatError(
                f"{label} contains {bad!r}; only letters, digits and . _ : / - are allowed"
            )
    if not isinstance(content, bytes):
        raise EventFormatError(f"content must be bytes, not {type(content).__name__}")
    if len(content) > MAX_EVENT_CONTENT_BYTES:
        raise EventFormatError(
            f"content is {len(content)} bytes, more than {MAX_EVENT_CONTENT_BYTES}"
        )


def format_rfc3339(moment: datetime) -> str:
    """``moment`` (timezone-aware) as UTC, microseconds and ``Z``: the canonical timestamp."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise EvidenceFormatError("timestamp has no time zone; use an aware datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_rfc3339() -> str:
    """The current time in the canonical form, e.g. ``2026-11-23T10:00:00.123456Z``."""
    return format_rfc3339(datetime.now(UTC))


def parse_rfc3339(text: str) -> datetime:
    """Parse ``YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z`` into an aware UTC datetime.

    Only this profile of RFC 3339 is accepted: upper-case ``T`` and ``Z``, no
    offsets, no leap second, at most microsecond precision.
    """
    if not isinstance(text, str):
        raise EvidenceFormatError(f"timestamp must be a string, not {type(text).__name__}")
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise EvidenceFormatError(
            f"{text[:40]!r} is not an RFC 3339 UTC timestamp like 2026-11-23T10:00:00.123456Z"
        )
    year, month, day, hour, minute, second, frac = match.groups()
    try:
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            int((frac or "0").ljust(6, "0")),
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise EvidenceFormatError(f"{text!r} is not a real moment: {exc}") from exc


def event_to_json(event: RuntimeEvent) -> dict[str, object]:
    """The JSON object of an event; its JCS bytes are the event's canonical encoding.

    ``caller`` is a member only when the event has one, so an event without a
    caller encodes, and hashes, exactly as before callers were recorded.
    """
    obj: dict[str, object] = {
        "sequence": event.sequence,
        "domain": event.domain,
        "operation": event.operation,
        "content": _json.b64_encode(event.content),
        "recordedAt": event.recorded_at,
    }
    if event.caller is not None:
        obj["caller"] = caller_to_json(event.caller)
    return obj


def caller_to_json(caller: Caller) -> dict[str, object]:
    """The ``caller`` member of an event: ``{"pid": ..., "uid": ..., "gid": ...}``."""
    return {"pid": caller.pid, "uid": caller.uid, "gid": caller.gid}


def caller_from_json(obj: object, path: str) -> Caller:
    """Strictly read a ``caller`` member: exactly pid, uid and gid, each in its range."""
    members = _json.obj(obj, path, fields=("pid", "uid", "gid"))
    return Caller(
        pid=_json.integer(members["pid"], f"{path}.pid", maximum=MAX_PID),
        uid=_json.integer(members["uid"], f"{path}.uid", maximum=MAX_ID),
        gid=_json.integer(members["gid"], f"{path}.gid", maximum=MAX_ID),
    )


def encode_event(event: RuntimeEvent) -> bytes:
    """The canonical encoding: JCS of ``event_to_json(event)``."""
    if isinstance(event.sequence, bool) or not isinstance(event.sequence, int):
        raise EvidenceFormatError("event sequence must be an integer")
    return canonical_json(event_to_json(event))


def event_digest(event: RuntimeEvent) -> bytes:
    """SHA-384 of the canonical encoding: what extends the log head and RTMR3."""
    return hashlib.sha384(encode_event(event)).digest()


def event_from_json(obj: object, path: str = "$") -> RuntimeEvent:
    """Strictly read an event object; EvidenceFormatError names the failing member."""
    fields = ("sequence", "domain", "operation", "content", "recordedAt")
    members = _json.obj(obj, path)
    # Exactly these members, plus "caller" where there is one (older logs have none).
    _json.obj({k: v for k, v in members.items() if k != "caller"}, path, fields=fields)
    sequence = _json.integer(members["sequence"], f"{path}.sequence")
    names = []
    for name in ("domain", "operation"):
        value = _json.string(members[name], f"{path}.{name}", min_len=1, max_len=MAX_NAME_LENGTH)
        if not _NAME.fullmatch(value):
            _json.fail(f"{path}.{name}", "only letters, digits and . _ : / - are allowed")
        names.append(value)
    content = _json.b64_bytes(
        members["content"], f"{path}.content", max_size=MAX_EVENT_CONTENT_BYTES
    )
    recorded_at = _json.string(
        members["recordedAt"], f"{path}.recordedAt", max_len=MAX_RECORDED_AT_LENGTH
    )
    try:
        parse_rfc3339(recorded_at)
    except EvidenceFormatError as exc:
        raise EvidenceFormatError(exc.message, path=f"{path}.recordedAt") from exc
    caller = caller_from_json(members["caller"], f"{path}.caller") if "caller" in members else None
    return RuntimeEvent(sequence, names[0], names[1], content, recorded_at, caller)


def extend_head(head: bytes, digest: bytes) -> bytes:
    """SHA-384(head || digest): the TDX RTMR extend operation."""
    if len(head) != LOG_HEAD_SIZE or len(digest) != LOG_HEAD_SIZE:
        raise LogReplayError(
            f"extend needs a {LOG_HEAD_SIZE}-byte head and digest, "
            f"got {len(head)} and {len(digest)} bytes"
        )
    return rtmr.extend(head, digest)


def replay(events: Iterable[RuntimeEvent]) -> bytes:
    """The head after extending INITIAL_LOG_HEAD by every event's digest, in order.

    Sequences must run 0, 1, 2, ... without gaps or repeats (LogReplayError).
    """
    head = INITIAL_LOG_HEAD
    for expected, event in enumerate(events):
        if event.sequence != expected:
            raise LogReplayError(
                f"event at position {expected} has sequence {event.sequence}, expected {expected}"
            )
        head = extend_head(head, event_digest(event))
    return head
