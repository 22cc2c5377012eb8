"""The agent's durable, append-only runtime log: the store on disk.

What an event is, how it is encoded and how the head is chained is the shared
format in attestd.evidence.runtime_log_format; this module only keeps it.

One JSON line per event after a header line. ``append`` returns only after the
line is on disk (``fsync``), so an acknowledged event survives ``kill -9`` and
power loss. A crash can leave at most one torn final line (no newline): that
event was never acknowledged, and opening the log cuts it off. Any other damage
is corruption and is refused, never repaired silently.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from attestd._files import fsync_directory, write_atomic
from attestd.agent.errors import RuntimeLogCorruptError
from attestd.evidence import (
    INITIAL_LOG_HEAD,
    EvidenceError,
    RuntimeEvent,
    canonical_json,
    event_digest,
    event_from_json,
    event_to_json,
    extend_head,
)

LOG_FORMAT = "attestd-runtime-log/1"
_HEADER = canonical_json({"format": LOG_FORMAT}) + b"\n"


class RuntimeLogStore:
    """The events on disk, their running head, and an append that fsyncs."""

    def __init__(self, path: Path, fd: int, events: list[RuntimeEvent], heads: list[bytes]):
        self._path = path
        self._fd = fd
        self._events = events
        # heads[i] is the head after i events; heads[0] is the initial head.
        self._heads = heads
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> RuntimeLogStore:
        """Open (or create) the log at ``path``, cutting off a torn final line."""
        created = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            if created:
                _write_all(fd, _HEADER)
                os.fsync(fd)
                fsync_directory(path.parent)
            events = _load(path, fd)
        except BaseException:
            os.close(fd)
            raise
        heads = [INITIAL_LOG_HEAD]
        for event in events:
            heads.append(extend_head(heads[-1], event_digest(event)))
        return cls(path, fd, events, heads)

    @property
    def path(self) -> Path:
        return self._path

    def __len__(self) -> int:
        return len(self._events)

    @property
    def head(self) -> bytes:
        return self._heads[-1]

    def head_at(self, length: int) -> bytes:
        """The head after the first ``length`` events."""
        return self._heads[length]

    def events(self, start: int = 0, stop: int | None = None) -> Sequence[RuntimeEvent]:
        return tuple(self._events[start:stop])

    def append(self, event: RuntimeEvent) -> bytes:
        """Write ``event`` durably and return the new head.

        The caller serialises appends with register extension; this lock only
        keeps the in-memory view consistent with the file.
        """
        with self._lock:
            if event.sequence != len(self._events):
                raise ValueError(
                    f"event sequence {event.sequence} != log length {len(self._events)}"
                )
            line = canonical_json(event_to_json(event)) + b"\n"
            size_before = os.fstat(self._fd).st_size
            try:
                _write_all(self._fd, line)
                os.fsync(self._fd)
            except OSError:
                # Leave no half line behind for the next append to glue onto.
                os.ftruncate(self._fd, size_before)
                raise
            self._events.append(event)
            self._heads.append(extend_head(self._heads[-1], event_digest(event)))
            return self._heads[-1]

    def close(self) -> None:
        os.close(self._fd)


def _load(path: Path, fd: int) -> list[RuntimeEvent]:
    data = path.read_bytes()
    # Check what the file is before cutting anything off it.
    if not (data.startswith(_HEADER) or _HEADER.startswith(data)):
        raise RuntimeLogCorruptError(
            f"{path}: not an attestd runtime log: missing or unknown header (expected {LOG_FORMAT})"
        )
    complete, _, torn = data.rpartition(b"\n")
    if torn:
        # A final line without its newline was never fsynced whole, so never acknowledged.
        os.ftruncate(fd, len(complete) + 1 if complete else 0)
        os.fsync(fd)
    if not complete:
        # Crashed while creating the file: nothing was ever acknowledged.
        _write_all(fd, _HEADER)
        os.fsync(fd)
        return []
    lines = complete.split(b"\n")
    if lines[0] != _HEADER.rstrip(b"\n"):
        raise RuntimeLogCorruptError(f"{path}: missing or unknown header (expected {LOG_FORMAT})")
    events: list[RuntimeEvent] = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            event = event_from_json(json.loads(line))
        except (ValueError, EvidenceError) as err:
            raise RuntimeLogCorruptError(f"{path}:{number}: unreadable event: {err}") from err
        if event.sequence != len(events):
            raise RuntimeLogCorruptError(
                f"{path}:{number}: event sequence {event.sequence}, expected {len(events)}"
            )
        events.append(event)
    return events


def rotate_on_new_boot(path: Path, boot_id: str) -> Path | None:
    """Set the log at ``path`` aside when it was written during another boot.

    Hardware runtime registers (TDX RTMR3) start from zero at every boot, so a
    log from an earlier boot can never replay to them again: it is kept, renamed
    after the boot that wrote it, and the agent starts a fresh log. The boot
    that owns the log is recorded beside it. Returns the archived path, if any.
    """
    marker = path.with_name(path.name + ".boot")
    try:
        owner = marker.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        owner = None
    except (OSError, UnicodeDecodeError) as err:
        raise RuntimeLogCorruptError(f"{marker}: unreadable boot marker: {err}") from err
    archived: Path | None = None
    if owner is not None and owner != boot_id and path.exists():
        archived = path.with_name(f"{path.stem}.{owner or 'unknown'}{path.suffix}")
        os.replace(path, archived)
    if owner != boot_id:
        # Also makes the rename of the old log durable: both are in this directory.
        write_atomic(marker, boot_id.encode("ascii") + b"\n", mode=0o600)
    return archived


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
