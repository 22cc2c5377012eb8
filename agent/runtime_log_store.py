"""The agent's durable, append-only runtime log: the store on disk.

What an event is, how it is encoded and how the head is chained is the shared
format in attestd.evidence.runtime_log_format; this module only keeps it.

One JSON line per event after a header line. Events reach the file in groups
(:class:`GroupCommitter`): concurrent callers share one ``write`` and one
``fsync``, and none is answered before its group is on disk and the runtime
register is extended by each of its events, in order. So an acknowledged event
survives ``kill -9`` and power loss. A crash can leave the last group partly
written: complete lines of events never acknowledged, and at most one torn
final line (no newline), which opening the log cuts off. Any other damage is
corruption and is refused, never repaired silently.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from attestd._files import fsync_directory, write_atomic
from attestd.agent.errors import NotServingError, RuntimeLogCorruptError
from attestd.evidence import (
    INITIAL_LOG_HEAD,
    Caller,
    EvidenceError,
    RuntimeEvent,
    canonical_json,
    encode_event,
    event_digest,
    event_from_json,
    extend_head,
    now_rfc3339,
)

LOG_FORMAT = "attestd-runtime-log/1"
_HEADER = canonical_json({"format": LOG_FORMAT}) + b"\n"

#: The most events one group commit writes. It bounds how far the runtime
#: register may lag the log after a crash (fsynced, not yet all extended), and
#: so how far back a restart looks to roll the register forward.
MAX_GROUP_EVENTS = 256
_MARKER_BYTES = 32  # "<first> <count>\n", space-padded so a shorter record leaves no tail


class RuntimeLogStore:
    """The events on disk, their running head, and group writes that fsync once.

    Two steps make an event visible. :meth:`write` puts a group of events on
    disk with one ``write`` and one ``fsync``; :meth:`publish` then shows them
    to readers (``len``, :attr:`head`, :meth:`events`), one at a time, after
    the caller has extended the runtime register by each. :meth:`append` does
    both for one event.

    :attr:`lock` is the **head + register lock**: whoever extends the runtime
    register and publishes events holds it, so whoever holds it reads a head
    (and log) that the register agrees with. It is never held across an fsync.
    """

    def __init__(
        self,
        path: Path,
        fd: int,
        events: list[RuntimeEvent],
        heads: list[bytes],
        marker_fd: int | None = None,
    ):
        self._path = path
        self._fd = fd
        # The file's length, kept here: a failed group is cut back to it, and reading it
        # from the kernel would be one more system call (a GIL release) per group.
        self._size = os.fstat(fd).st_size
        self._marker_fd = marker_fd
        self._last_group = _read_group_marker(marker_fd, len(events))
        # Every durable event; only the first ``_visible`` are published.
        self._events = events
        # heads[i] is the head after i events; heads[0] is the initial head.
        self._heads = heads
        self._visible = len(events)
        self._groups_written = 0
        #: The head + register lock (see the class docstring).
        self.lock = threading.Lock()
        # One group on disk at a time; held across write and fsync, never needed by readers.
        self._write_lock = threading.Lock()

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
        marker = os.open(
            group_marker_path(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600
        )
        return cls(path, fd, events, heads, marker)

    @property
    def path(self) -> Path:
        return self._path

    def __len__(self) -> int:
        """The number of published events."""
        return self._visible

    @property
    def head(self) -> bytes:
        """The head after the published events."""
        return self._heads[self._visible]

    def head_at(self, length: int) -> bytes:
        """The head after the first ``length`` published events."""
        if not 0 <= length <= self._visible:
            raise IndexError(f"no head at {length}: {self._visible} events are published")
        return self._heads[length]

    def events(self, start: int = 0, stop: int | None = None) -> Sequence[RuntimeEvent]:
        """Published events ``start`` to ``stop``, as slicing counts them."""
        first, last, _ = slice(start, stop).indices(self._visible)
        return tuple(self._events[first:last])

    @property
    def last_group(self) -> range:
        """The sequences of the last group written before this store was opened.

        Empty unless the group marker names a group that ends the log. Only
        that group may have been fsynced and left partly unextended by a crash,
        so it bounds what a restart may roll forward.
        """
        return self._last_group

    @property
    def next_sequence(self) -> int:
        """The sequence number the next written event must carry (published or not)."""
        return len(self._events)

    @property
    def groups_written(self) -> int:
        """How many groups :meth:`write` has put on disk: one ``fsync`` each."""
        return self._groups_written

    def write(self, events: Sequence[RuntimeEvent]) -> tuple[Written, ...]:
        """Put ``events`` on disk with one write and one fsync; returns them as :class:`Written`.

        They are not yet published: the caller extends the register by each and
        then calls :meth:`publish`. On an error nothing of the group stays in
        the file (no half line for the next group to glue onto) and the error
        is raised.
        """
        with self._write_lock:
            expected = len(self._events)
            for offset, event in enumerate(events):
                if event.sequence != expected + offset:
                    raise ValueError(
                        f"event sequence {event.sequence} != log length {expected + offset}"
                    )
            # Each event encoded once: its line is its canonical encoding, its digest that hashed.
            encoded = [encode_event(e) for e in events]
            data = b"".join(line + b"\n" for line in encoded)
            if self._marker_fd is not None and events:
                # Before the log write, without fsync: the page cache outlives a SIGKILL,
                # and a marker that power loss left stale names a group not ending the log.
                record = f"{events[0].sequence} {len(events)}\n".encode().ljust(_MARKER_BYTES)
                os.pwrite(self._marker_fd, record, 0)
            try:
                _write_all(self._fd, data)
                os.fsync(self._fd)
            except OSError:
                os.ftruncate(self._fd, self._size)
                raise
            self._size += len(data)
            self._groups_written += 1
            written: list[Written] = []
            head = self._heads[-1]
            for event, line in zip(events, encoded, strict=True):
                digest = hashlib.sha384(line).digest()
                head = extend_head(head, digest)
                written.append(Written(event, digest, head))
            # Appended after the fsync: a reader of _events never sees an event not on disk.
            self._heads.extend(w.head for w in written)
            self._events.extend(events)
            return tuple(written)

    def publish(self, count: int = 1) -> None:
        """Show the next ``count`` written events to readers; the caller holds :attr:`lock`."""
        if not 0 <= count <= len(self._events) - self._visible:
            raise ValueError(
                f"cannot publish {count} events: {len(self._events) - self._visible} are written"
            )
        self._visible += count

    def append(self, event: RuntimeEvent) -> bytes:
        """Write ``event`` durably, publish it, and return the new head.

        For callers without a runtime register to extend between the two steps.
        """
        (written,) = self.write((event,))
        with self.lock:
            self.publish(1)
        return written.head

    def close(self) -> None:
        os.close(self._fd)
        if self._marker_fd is not None:
            os.close(self._marker_fd)


@dataclass(frozen=True)
class Written:
    """An event :meth:`RuntimeLogStore.write` put on disk, its digest, and the head after it."""

    event: RuntimeEvent
    digest: bytes
    head: bytes


class _Waiter:
    """One caller's event, waiting for the group that commits it; its future is its outcome."""

    __slots__ = ("caller", "content", "domain", "future", "operation")

    def __init__(self, domain: str, operation: str, content: bytes, caller: Caller | None) -> None:
        self.domain = domain
        self.operation = operation
        self.content = content
        self.caller = caller
        self.future: Future[Written] = Future()


class GroupCommitter:
    """Concurrent appends share one write and one fsync (group commit).

        committer = GroupCommitter(store, apply=extend_register, admit=require_serving)
        event, head = committer.commit("pipeline", "train.step", b"...")   # from any thread
        future = committer.submit("pipeline", "train.step", b"...")        # without blocking
        written = await asyncio.wrap_future(future)     # e.g. in a servicer: event, digest, head
        committer.close()

    Callers queue their events. Whoever finds no group in progress leads the
    next one: it takes every queued event (up to ``max_group``), numbers them,
    writes them with one write and one fsync, then, holding the store's head +
    register lock, calls ``apply`` on each event and its digest in order (extend
    the register) and publishes it. Only then is each caller answered. So an
    answered event is on disk and in the register, as with one fsync per event.

    A blocking :meth:`commit` leads from its own thread (no wake-up of another
    thread when nobody else is committing). A :meth:`submit` does not block:
    its event is led by the committer's own thread (started on first use), or
    by a blocking caller that takes the queue first; either way it joins the
    next group. While one group is written the next one gathers, so under load
    a group holds everything that arrived during the previous fsync.

    ``batch``, when given, is entered around a group's ``apply`` calls (under
    the same lock): a register that can take the group's extensions as one
    write makes them there. If leaving it raises, none of the group's
    extensions happened: every caller of the group gets that error, the events
    are published (they are on disk), and ``batch`` is expected to have stopped
    the agent from serving, as a failed ``apply`` does. Every event of a group
    is recorded at the same moment, read once when the group is written.

    ``admit`` runs before a group is written and may refuse it (the agent is
    not serving). A failed write or fsync fails every caller of the group and
    leaves nothing of it on disk. A failed ``apply`` fails its event's caller
    and every later one of the group; those events are durable, so they are
    published anyway (the log is what is on disk) and ``apply`` is expected to
    stop the agent from serving until a restart rolls the register forward.
    A submitted event whose future was cancelled before its group was cut
    (its caller left) is dropped, never written: nobody would be answered.
    """

    def __init__(
        self,
        store: RuntimeLogStore,
        *,
        apply: Callable[[RuntimeEvent, bytes], None],
        admit: Callable[[], None],
        batch: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
        max_group: int = MAX_GROUP_EVENTS,
        clock: Callable[[], str] = now_rfc3339,
    ) -> None:
        if max_group < 1:
            raise ValueError(f"max_group must be at least 1, not {max_group}")
        self._store = store
        self._apply = apply
        self._admit = admit
        self._batch = batch
        self._max_group = max_group
        self._clock = clock
        lock = threading.Lock()
        # Blocking callers wait here for the group in progress to end.
        self._turn = threading.Condition(lock)
        # The committer thread waits here for submitted events.
        self._work = threading.Condition(lock)
        self._queue: deque[_Waiter] = deque()
        self._leading = False
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        """Whether a group is being committed or events wait for one (read without the lock:
        a hint for work that should step aside, never a decision about the log)."""
        return self._leading or bool(self._queue)

    @property
    def queued(self) -> int:
        """Callers waiting for a group to take their event (not those being committed)."""
        with self._turn:
            return len(self._queue)

    def commit(
        self, domain: str, operation: str, content: bytes, caller: Caller | None = None
    ) -> tuple[RuntimeEvent, bytes]:
        """Log one event durably, extend the register by it; returns (event, head).

        ``caller`` is the process that asked for the event (from the kernel, never
        the request); it is part of the event and so of its digest.
        """
        waiter = _Waiter(domain, operation, content, caller)
        future = waiter.future
        with self._turn:
            self._require_open()
            self._queue.append(waiter)
        while True:
            with self._turn:
                while not future.done() and self._leading:
                    self._turn.wait()
                if future.done():
                    break
                group = self._cut()
            self._lead(group)
        written = future.result()
        return written.event, written.head

    def submit(
        self, domain: str, operation: str, content: bytes, caller: Caller | None = None
    ) -> Future[Written]:
        """:meth:`commit` without blocking: the future settles with the :class:`Written`
        event (its digest and the head after it), or the error.

        Cancelling the future before its group is cut withdraws the event.
        """
        waiter = _Waiter(domain, operation, content, caller)
        with self._work:
            self._require_open()
            self._queue.append(waiter)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="attestd-group-commit", daemon=True
                )
                self._thread.start()
            elif not self._leading:
                self._work.notify()
        return waiter.future

    def close(self) -> None:
        """Commit what is queued, then stop the committer thread; later calls are refused."""
        with self._work:
            self._closed = True
            self._work.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _require_open(self) -> None:
        if self._closed:
            raise NotServingError("the agent is shutting down")

    def _run(self) -> None:
        """The committer thread: lead a group whenever submitted events wait and nobody leads."""
        while True:
            with self._work:
                while (self._leading or not self._queue) and not self._closed:
                    self._work.wait()
                if self._leading or not self._queue:
                    return  # closed, and nothing (more) of ours to commit
                group = self._cut()
            self._lead(group)

    def _cut(self) -> list[_Waiter]:
        """Take the next group off the queue and lead it; the caller holds the lock."""
        self._leading = True
        group: list[_Waiter] = []
        while self._queue and len(group) < self._max_group:
            waiter = self._queue.popleft()
            # From here on the future cannot be cancelled; a cancelled one is dropped.
            if waiter.future.set_running_or_notify_cancel():
                group.append(waiter)
        return group

    def _lead(self, group: list[_Waiter]) -> None:
        try:
            if group:
                self._commit(group)
        finally:
            with self._turn:
                self._leading = False
                self._turn.notify_all()
                if self._queue:
                    self._work.notify()

    def _commit(self, group: list[_Waiter]) -> None:
        """Write, fsync, extend and publish one group; settle each waiter's future."""
        try:
            self._admit()
            first = self._store.next_sequence
            recorded_at = self._clock()
            events = [
                RuntimeEvent(
                    sequence=first + i,
                    domain=w.domain,
                    operation=w.operation,
                    content=w.content,
                    recorded_at=recorded_at,
                    caller=w.caller,
                )
                for i, w in enumerate(group)
            ]
            written = self._store.write(events)
        except BaseException as err:
            for w in group:
                w.future.set_exception(err)
            return
        results: list[tuple[_Waiter, Written]] = []
        failure: BaseException | None = None
        with self._store.lock:
            try:
                with self._batch():
                    for index, (w, done) in enumerate(zip(group, written, strict=True)):
                        try:
                            self._apply(done.event, done.digest)
                        except BaseException as err:
                            # Durable but not in the register: published (the log is what
                            # is on disk) and refused; ``apply`` stopped the agent serving.
                            self._store.publish(len(group) - index)
                            failure = err
                            break
                        self._store.publish(1)
                        results.append((w, done))
            except BaseException as err:
                # The batch's write failed: none of its extensions happened. Whatever
                # was not published yet is (it is on disk); nobody is answered success.
                self._store.publish(len(group) - len(results) if failure is None else 0)
                failure = err
                results.clear()
        # Answered outside the lock: a future's callbacks (an event loop's wake-up) run here.
        for w, result in results:
            w.future.set_result(result)
        if failure is not None:
            for w in group[len(results) :]:
                w.future.set_exception(failure)


def group_marker_path(path: Path) -> Path:
    """Where the log at ``path`` notes its last group: ``<log>.group``."""
    return path.with_name(path.name + ".group")


def _read_group_marker(fd: int | None, length: int) -> range:
    """The last group's sequences, if the marker names one that ends a log of ``length``."""
    if fd is None:
        return range(0)
    text = os.pread(fd, _MARKER_BYTES, 0).decode("ascii", "replace").split()
    if len(text) != 2 or not all(part.isdigit() for part in text):
        return range(0)
    first, count = int(text[0]), int(text[1])
    if first + count != length or not 0 < count <= MAX_GROUP_EVENTS:
        return range(0)
    return range(first, length)


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
        # The group marker speaks of the archived log; the fresh one has no group yet.
        group_marker_path(path).unlink(missing_ok=True)
    if owner != boot_id:
        # Also makes the rename of the old log durable: both are in this directory.
        write_atomic(marker, boot_id.encode("ascii") + b"\n", mode=0o600)
    return archived


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
