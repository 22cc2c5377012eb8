"""The runtime log's format: events, their canonical encoding, and the hash chain over them.

The agent's durable copy of the log is attestd.agent.runtime_log_store; this
module is what both sides agree on, with no I/O.

The chain is the TDX RTMR extend rule, so the same digest that extends the log
head also extends RTMR3 and a verifier can replay the log against the quote::

    event = RuntimeEvent(0, "pipeline", "stage.start", b"train", now_rfc3339())
    head = extend_head(INITIAL_LOG_HEAD, event_digest(event))
    assert head == replay([event])

A checkpoint is a log's length and its head there. Evidence may carry only
the events after a checkpoint the verifier holds; the verifier replays from it,
and earlier events, fetched page by page, must chain to it::

    start = LogCheckpoint(1, head)
    assert replay_from(start, later_events) == replay(all_events)
    verify_log_prefix(pages, start)          # LogPrefixError unless pages reach it
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from attestd.evidence import _json
from attestd.evidence.canonical import canonical_json
from attestd.evidence.errors import (
    EventFormatError,
    EvidenceFormatError,
    LogPrefixError,
    LogReplayError,
)
from attestd.tee import _cache
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
    if moment.tzinfo is UTC and moment.year >= 1000:
        # What strftime writes below, without the conversion and the format parser: every
        # binding's leaf formats its issuedAt, which parse_rfc3339 made UTC.
        m = moment
        return (
            f"{m.year:04d}-{m.month:02d}-{m.day:02d}T"
            f"{m.hour:02d}:{m.minute:02d}:{m.second:02d}.{m.microsecond:06d}Z"
        )
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
    line = _encode_plain_event(event)
    if line is not None:
        return line
    return canonical_json(event_to_json(event))


def _encode_plain_event(event: RuntimeEvent) -> bytes | None:
    """The JCS bytes of a plain event written directly, or None for canonical_json to write.

    The group committer encodes every event on the thread that answers all of
    them, so this skips building the JSON object and walking it. Plain means:
    ``domain``, ``operation`` and ``recordedAt`` are printable ASCII without
    ``"`` or ``\\`` (JCS writes such a string as is, between quotes; a pipeline's
    names always are, see validate_event_fields), and every integer is exact
    within +-(2**53 - 1). Members in JCS order: caller, content, domain,
    operation, recordedAt, sequence; caller's gid, pid, uid. Base64 needs no
    escaping. tests/evidence/test_runtime_log_format.py holds this to
    canonical_json byte for byte.
    """
    strings = (event.domain, event.operation, event.recorded_at)
    numbers: tuple[object, ...] = (event.sequence,)
    caller = event.caller
    if caller is not None:
        numbers = (event.sequence, caller.gid, caller.pid, caller.uid)
    for number in numbers:
        if type(number) is not int or not -_MAX_SAFE_INTEGER <= number <= _MAX_SAFE_INTEGER:
            return None
    for text in strings:
        if (
            type(text) is not str
            or not (text.isascii() and text.isprintable())
            or '"' in text
            or "\\" in text
        ):
            return None
    if type(event.content) is not bytes:
        return None
    members = (
        f'"content":"{_json.b64_encode(event.content)}","domain":"{event.domain}",'
        f'"operation":"{event.operation}","recordedAt":"{event.recorded_at}",'
        f'"sequence":{event.sequence}}}'
    )
    if caller is None:
        return ("{" + members).encode("ascii")
    return (
        f'{{"caller":{{"gid":{caller.gid},"pid":{caller.pid},"uid":{caller.uid}}},' + members
    ).encode("ascii")


_MAX_SAFE_INTEGER = 2**53 - 1


def event_digest(event: RuntimeEvent) -> bytes:
    """SHA-384 of the canonical encoding: what extends the log head and RTMR3.

    Computed once per event object: the fields are frozen, so the digest is
    remembered on the event (content that is not ``bytes``, hence mutable, never).
    """
    remembered: bytes | None = event.__dict__.get(_DIGEST_ATTRIBUTE)
    if remembered is not None:
        return remembered
    digest = hashlib.sha384(encode_event(event)).digest()
    if type(event.content) is bytes:
        event.__dict__[_DIGEST_ATTRIBUTE] = digest
    return digest


_DIGEST_ATTRIBUTE = "_attestd_digest"
_EVENT_FIELDS = ("sequence", "domain", "operation", "content", "recordedAt")
_CALLER_FIELDS = ("pid", "uid", "gid")

# Every piece of evidence from an agent carries the same events (the whole log, or the
# events since the verifier's checkpoint): a parsed event is remembered by its exact JSON
# values, so it is read, and its digest computed (event_digest), once. Keys hold only
# exact str and int values (True == 1, but a JSON true is no sequence), content up to
# _CACHED_CONTENT_CHARS; only events that parsed are kept. Bounded LRU.
_CACHED_CONTENT_CHARS = 1024
_EVENTS: _cache.ValidityCache[tuple[object, ...], RuntimeEvent] = _cache.ValidityCache(
    "evidence.events", maxsize=8192
)


def _event_key(members: Mapping[str, object]) -> tuple[object, ...] | None:
    """The cache key of an event object, or None where it may not be cached."""
    size = len(members)
    caller = members.get("caller")
    if size != len(_EVENT_FIELDS) + (caller is not None):
        return None
    key: list[object] = []
    for name in _EVENT_FIELDS:
        value = members.get(name)
        if type(value) is not (int if name == "sequence" else str):
            return None
        key.append(value)
    if len(key[3]) > _CACHED_CONTENT_CHARS:  # type: ignore[arg-type]
        return None
    if caller is not None:
        if type(caller) is not dict or len(caller) != len(_CALLER_FIELDS):
            return None
        for name in _CALLER_FIELDS:
            value = caller.get(name)
            if type(value) is not int:
                return None
            key.append(value)
    return tuple(key)


def event_from_json(obj: object, path: str = "$") -> RuntimeEvent:
    """Strictly read an event object; EvidenceFormatError names the failing member."""
    if type(obj) is dict:
        key = _event_key(obj)
        if key is not None:
            start, end = _cache.ALWAYS
            event = _EVENTS.get(key, start)
            if event is None:
                event = _event_from_json(obj, path)
                _EVENTS.put(key, event, not_before=start, not_after=end)
            return event
    return _event_from_json(obj, path)


def _event_from_json(obj: object, path: str) -> RuntimeEvent:
    fields = _EVENT_FIELDS
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


@dataclass(frozen=True)
class LogCheckpoint:
    """A point in the runtime log: its first ``length`` events replay to ``head``.

    ``LogCheckpoint(0, INITIAL_LOG_HEAD)`` (:data:`LOG_START`) is the beginning.
    A verifier keeps the checkpoint an affirming appraisal reached and sends it
    with its next ``GetEvidence``; the evidence then carries only later events
    (``predicate.logStart``, docs/evidence-format.md section 9).
    """

    length: int
    head: bytes

    def __post_init__(self) -> None:
        if isinstance(self.length, bool) or not isinstance(self.length, int):
            raise EvidenceFormatError("a checkpoint's length must be an integer")
        if not 0 <= self.length <= _json.MAX_SAFE_INTEGER:
            raise EvidenceFormatError(f"a checkpoint's length {self.length} is out of range")
        if len(self.head) != LOG_HEAD_SIZE:
            raise EvidenceFormatError(
                f"a checkpoint's head is {LOG_HEAD_SIZE} bytes, not {len(self.head)}"
            )
        if self.length == 0 and self.head != INITIAL_LOG_HEAD:
            # Only one head is possible at length 0; any other is a forgery or a mix-up.
            raise EvidenceFormatError("a checkpoint at length 0 has the initial head (zeros)")

    @property
    def is_start(self) -> bool:
        """True for the beginning of the log (evidence from it carries the whole log)."""
        return self.length == 0

    def to_json(self) -> dict[str, object]:
        """``{"length": n, "head": {"sha384": hex}}``: the predicate's ``logStart``."""
        return {"length": self.length, "head": {"sha384": self.head.hex()}}

    @classmethod
    def from_json(cls, obj: object, path: str) -> LogCheckpoint:
        members = _json.obj(obj, path, fields=("length", "head"))
        length = _json.integer(members["length"], f"{path}.length")
        head_obj = _json.obj(members["head"], f"{path}.head", fields=("sha384",))
        head = _json.hex_bytes(head_obj["sha384"], f"{path}.head.sha384", size=LOG_HEAD_SIZE)
        try:
            return cls(length, head)
        except EvidenceFormatError as exc:
            raise EvidenceFormatError(exc.message, path=path) from exc

    def __str__(self) -> str:
        """``LENGTH:HEXHEAD``, the form :func:`parse_checkpoint` reads (and ``attestctl``)."""
        return f"{self.length}:{self.head.hex()}"


LOG_START = LogCheckpoint(0, INITIAL_LOG_HEAD)
"""The checkpoint before the first event: replaying from it is replaying the whole log."""


def parse_checkpoint(text: str) -> LogCheckpoint:
    """Read ``LENGTH:HEXHEAD`` (96 lowercase hex digits) or the JSON of :meth:`to_json`."""
    text = text.strip()
    if text.startswith("{"):
        obj = _json.loads(text.encode(), what="checkpoint", max_bytes=4096)
        return LogCheckpoint.from_json(obj, "$")
    length, sep, head = text.partition(":")
    if not sep or not length.isdigit() or len(length) > 16:
        raise EvidenceFormatError(f"{text[:40]!r} is not a checkpoint LENGTH:HEXHEAD")
    return LogCheckpoint(int(length), _json.hex_bytes(head, "checkpoint", size=LOG_HEAD_SIZE))


def replay_from(start: LogCheckpoint, events: Iterable[RuntimeEvent]) -> bytes:
    """The head after extending ``start.head`` by every event's digest, in order.

    The events must be the ones after ``start``: sequences run ``start.length``,
    ``start.length + 1``, ... without gaps or repeats (LogReplayError).
    """
    head = start.head
    for offset, event in enumerate(events):
        expected = start.length + offset
        if event.sequence != expected:
            raise LogReplayError(
                f"event at position {offset} has sequence {event.sequence}, expected {expected}"
            )
        head = extend_head(head, event_digest(event))
    return head


def checkpoint_after(start: LogCheckpoint, events: Sequence[RuntimeEvent]) -> LogCheckpoint:
    """The checkpoint ``events`` (the ones after ``start``) reach: what to send next time."""
    return LogCheckpoint(start.length + len(events), replay_from(start, events))


def verify_log_prefix(
    pages: Iterable[Sequence[RuntimeEvent]], checkpoint: LogCheckpoint
) -> tuple[RuntimeEvent, ...]:
    """The first ``checkpoint.length`` events, read from ``pages``, if they chain to it.

    ``pages`` are consecutive pages of the log from event 0 (``GetRuntimeLog``
    answers, in order; a page may run past the checkpoint, the excess is
    ignored). Iteration stops as soon as the checkpoint's length is reached,
    so a lazy iterable fetches no more pages than needed. A gap, a repeat, a
    short log or a head other than ``checkpoint.head`` raises LogPrefixError:
    the agent's log is not the one the checkpoint (which the quote vouched
    for) was taken from.
    """
    events: list[RuntimeEvent] = []
    head = INITIAL_LOG_HEAD
    if checkpoint.length:
        for page in pages:
            if not page:
                break  # the agent has no more events: the log is shorter than the checkpoint
            for event in page:
                if event.sequence != len(events):
                    raise LogPrefixError(
                        f"the log page holds sequence {event.sequence} where {len(events)} "
                        "was expected (a gap or repeat between pages)"
                    )
                head = extend_head(head, event_digest(event))
                events.append(event)
                if len(events) == checkpoint.length:
                    break
            if len(events) == checkpoint.length:
                break
    if len(events) != checkpoint.length:
        raise LogPrefixError(
            f"the agent's log ended after {len(events)} events, before the checkpoint's "
            f"{checkpoint.length}"
        )
    if head != checkpoint.head:
        raise LogPrefixError(
            f"the first {checkpoint.length} events replay to {head.hex()}, not to the "
            f"checkpoint's head {checkpoint.head.hex()}"
        )
    return tuple(events)
