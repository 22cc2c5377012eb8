"""The simulated TD's measurement registers on disk: ``registers.bin``.

    >>> from attestd.tee.tdx import _simulated_registers as registers_file
    >>> registers_file.prepare(directory, defaults, imposed)   # under the state lock, at open
    >>> device = registers_file.RegisterDevice(directory)      # one per backend
    >>> device.extend("rtmr3", digest)                         # one pread, one pwrite
    >>> with device.batch():                                   # many extensions, one pwrite
    ...     for digest in digests: device.extend("rtmr3", digest)
    >>> device.read_all()["rtmr3"]

An extension used to cost a lock-file open, a parse of ``registers.json`` and a
rewrite of all of it (116 µs alone, about 185 µs under contention, some 30 % of
the agent's CPU per recorded event). Here each register is a fixed 64-byte
record at a fixed offset, so an extension reads and writes only its own record.

The format, version 2 (no integers; every offset a multiple of 64)::

    offset 0     64 bytes   MAGIC ("attestd-simulated-tdx-registers/2\\n", zero-padded)
    offset 64*k  64 bytes   record of FIELDS[k-1], k = 1 .. len(FIELDS):
                            value (its width), zeros up to 48 bytes, then
                            tag = SHA-256(TAG_LABEL || name || 0x00 || value)[:16]

so the file is 832 bytes, all of it in the first page.

Why a record is never seen torn:

* **By another thread or process.** Every reader and writer holds the state
  directory's lock (``flock`` of ``.lock``, plus a thread lock because threads
  share a ``flock``), so a read never overlaps a write.
* **After a SIGKILL.** A record is written by one ``pwrite`` of 64 bytes into
  one page. Linux copies a buffered write page by page and checks for a fatal
  signal only between pages, so a killed writer leaves the whole record old or
  whole new, never part of each. A killed process loses no ``pwrite`` that
  returned: the data is in the page cache, as an RTMR outlives a process crash.
* **Anything else** (power loss mid-sector, a hand edit) is what the tag is
  for: a record whose tag does not match is refused with
  :class:`SimulatedRegistersDamagedError`, never read as a register value.
  Registers need not survive power loss (hardware ones are reset), so there is
  no fsync per extension; the file is fsynced only when it is created.

The file is created once (atomically, by rename) and from then on written only
in place, so its inode never changes and every opening's descriptor keeps
naming the registers that quotes read.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import threading
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path

from attestd.tee import _state
from attestd.tee.errors import DeviceError
from attestd.tee.tdx import rtmr

REGISTERS_FILE = "registers.bin"
#: The version 1 state, one JSON document rewritten whole on every extension.
LEGACY_REGISTERS_FILE = "registers.json"
_LEGACY_FORMAT = "attestd-simulated-tdx-registers/1"

MAGIC = b"attestd-simulated-tdx-registers/2\n".ljust(64, b"\0")
TAG_LABEL = b"attestd simulated TDX register\0"
RECORD_SIZE = 64
_VALUE_SPACE = 48
_TAG_SIZE = 16

#: The registers in file order, with their widths in bytes. This order is the
#: format: append new registers (and bump MAGIC), never reorder.
FIELDS: tuple[tuple[str, int], ...] = (
    ("mr_td", 48),
    ("rtmr0", 48),
    ("rtmr1", 48),
    ("rtmr2", 48),
    ("rtmr3", 48),
    ("mr_config_id", 48),
    ("mr_owner", 48),
    ("mr_owner_config", 48),
    ("td_attributes", 8),
    ("xfam", 8),
    ("tee_tcb_svn", 16),
    ("mr_seam", 48),
)
_WIDTHS = dict(FIELDS)
_OFFSETS = {name: RECORD_SIZE * (k + 1) for k, (name, _) in enumerate(FIELDS)}
FILE_SIZE = RECORD_SIZE * (len(FIELDS) + 1)


class SimulatedRegistersDamagedError(DeviceError):
    """The simulated registers' file is unreadable, cut short, or a record fails its tag."""

    reason = "simulated_registers_damaged"


class SimulatedRegistersFormatError(DeviceError):
    """The simulated registers are kept in a format this attestd does not know.

    Raised, not guessed at, for a ``registers.bin`` of another version: its
    offsets and widths may mean something else.
    """

    reason = "simulated_registers_format_unknown"


def record(name: str, value: bytes) -> bytes:
    """The 64 bytes that hold register ``name`` = ``value``."""
    tag = hashlib.sha256(TAG_LABEL + name.encode() + b"\0" + value).digest()[:_TAG_SIZE]
    return value.ljust(_VALUE_SPACE, b"\0") + tag


def _value(name: str, raw: bytes, path: Path) -> bytes:
    """The value in ``raw``, the 64-byte record of ``name``; damage is refused."""
    width = _WIDTHS[name]
    value, padding, tag = raw[:width], raw[width:_VALUE_SPACE], raw[_VALUE_SPACE:]
    if len(raw) != RECORD_SIZE or any(padding) or record(name, value)[_VALUE_SPACE:] != tag:
        raise SimulatedRegistersDamagedError(
            f"simulated TDX registers in {path}: the record of {name} is damaged"
        )
    return value


def encode(values: Mapping[str, bytes]) -> bytes:
    """The whole file for ``values`` (every name of :data:`FIELDS`, each of its width)."""
    for name, width in FIELDS:
        if len(values[name]) != width:
            raise ValueError(f"{name} must be {width} bytes, not {len(values[name])}")
    return MAGIC + b"".join(record(name, values[name]) for name, _ in FIELDS)


def decode(data: bytes, path: Path) -> dict[str, bytes]:
    """The registers in ``data``, the bytes of ``path``; anything else is refused by name."""
    if data[: len(MAGIC)] != MAGIC:
        if data.startswith(b"attestd-simulated-tdx-registers/"):
            version = data[: len(MAGIC)].split(b"\n", 1)[0].decode("ascii", "replace")
            raise SimulatedRegistersFormatError(
                f"simulated TDX registers in {path} are in format {version!r}; "
                f"this attestd reads only {MAGIC.rstrip(bytes(1)).decode().strip()!r}"
            )
        raise SimulatedRegistersDamagedError(
            f"simulated TDX registers in {path} are damaged: no format header"
        )
    if len(data) != FILE_SIZE:
        raise SimulatedRegistersDamagedError(
            f"simulated TDX registers in {path} are damaged: {len(data)} bytes, not {FILE_SIZE}"
        )
    return {
        name: _value(name, data[offset : offset + RECORD_SIZE], path)
        for name, offset in _OFFSETS.items()
    }


def _load_legacy(path: Path) -> dict[str, bytes]:
    """The registers of a version 1 ``registers.json``; damage is refused."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SimulatedRegistersDamagedError(
            f"simulated TDX registers in {path} are unreadable: {e}"
        ) from e
    try:
        if document["format"] != _LEGACY_FORMAT:
            raise ValueError(f"unknown format {document['format']!r}")
        values = {name: bytes.fromhex(document["registers"][name]) for name, _ in FIELDS}
        for name, value in values.items():
            if len(value) != _WIDTHS[name]:
                raise ValueError(f"{name} has {len(value)} bytes")
    except (KeyError, TypeError, ValueError) as e:
        raise SimulatedRegistersDamagedError(
            f"simulated TDX registers in {path} are damaged: {e}"
        ) from e
    return values


def _read_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise SimulatedRegistersDamagedError(
            f"simulated TDX registers in {path} are unreadable: {e}"
        ) from e


def prepare(directory: Path, defaults: Mapping[str, bytes], imposed: Mapping[str, bytes]) -> None:
    """Make ``registers.bin`` hold the TD's registers, with ``imposed`` ones set.

    Called holding the state directory's lock. The first time, the file is
    made from ``defaults``, or from a version 1 ``registers.json``, which is
    then removed (a crash between the two leaves both, and the next open
    removes the JSON: the binary file was complete before it was renamed into
    place). Later, imposed values are written in place, keeping the inode.
    """
    path = directory / REGISTERS_FILE
    legacy = directory / LEGACY_REGISTERS_FILE
    data = _read_file(path)
    if data is None:
        values = _load_legacy(legacy) if legacy.exists() else dict(defaults)
        values.update(imposed)
        try:
            _state.write_atomic(path, encode(values), 0o600)
        except OSError as e:
            raise DeviceError(f"cannot create simulated TDX registers in {path}: {e}") from e
    else:
        current = decode(data, path)
        changed = {name: value for name, value in imposed.items() if current[name] != value}
        if changed:
            device = RegisterDevice(directory)
            try:
                for name, value in changed.items():
                    device.write_record(name, value)
            finally:
                device.close()
    with contextlib.suppress(FileNotFoundError):
        legacy.unlink()


class RegisterDevice:
    """Reads and extends ``registers.bin`` in place; the file must exist (:func:`prepare`).

    Each instance holds two descriptors (the file and the state lock) until
    :meth:`close` or garbage collection.
    """

    def __init__(self, directory: Path) -> None:
        self._path = directory / REGISTERS_FILE
        # flock excludes other open file descriptions (processes, other openings), not
        # threads sharing this one: the thread lock covers those.
        self._threads = threading.Lock()
        flags = os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            self._lock_fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT | flags, 0o600)
        except OSError as e:
            raise DeviceError(f"cannot open the simulated TDX lock in {directory}: {e}") from e
        try:
            self._fd = os.open(self._path, os.O_RDWR | flags)
        except OSError as e:
            os.close(self._lock_fd)
            raise SimulatedRegistersDamagedError(
                f"simulated TDX registers in {self._path} are unreadable: {e}"
            ) from e
        self._closer = weakref.finalize(self, _close_all, self._fd, self._lock_fd)
        # While a thread runs a batch: that thread, and the values its extensions reached.
        self._batch_thread: int | None = None
        self._batched: dict[str, bytes] = {}

    def close(self) -> None:
        self._closer()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold the device: no other thread or process reads or writes a register meanwhile."""
        with self._threads:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def read(self, name: str) -> bytes:
        """Register ``name``; the caller holds the device."""
        return _value(name, os.pread(self._fd, RECORD_SIZE, _OFFSETS[name]), self._path)

    def read_all(self) -> dict[str, bytes]:
        """Every register, by name, read whole at one instant."""
        with self.held():
            data = os.pread(self._fd, FILE_SIZE + 1, 0)
        return decode(data, self._path)

    def write_record(self, name: str, value: bytes) -> None:
        """Set register ``name`` by one pwrite; the caller holds the device or the state lock."""
        data = record(name, value)
        try:
            written = os.pwrite(self._fd, data, _OFFSETS[name])
        except OSError as e:
            raise DeviceError(f"cannot write simulated TDX register {name}: {e}") from e
        if written != RECORD_SIZE:
            # Not seen on a local file system; the tag makes the torn record refused on read.
            raise DeviceError(f"simulated TDX register {name}: short write of {written} bytes")

    def extend(self, name: str, digest: bytes) -> None:
        """Register ``name`` = SHA-384(register ‖ ``digest``), in place, before this returns.

        Inside this thread's :meth:`batch`, in place when the batch ends.
        """
        if self._batch_thread == threading.get_ident():
            current = self._batched.get(name)
            self._batched[name] = rtmr.extend(
                self.read(name) if current is None else current, digest
            )
            return
        with self.held():
            self.write_record(name, rtmr.extend(self.read(name), digest))

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Hold the device while this thread extends, and write each register once at the end.

        A group commit extends RTMR3 by every event of its group in order; one
        pwrite of the last value costs what one extension did, and nobody can
        see the values in between: other threads and processes wait for the
        device meanwhile, as for one extension. The writes at the end are what
        makes the extensions happen; if one fails, it raises from here, and the
        caller must treat every extension of the batch as not made. Not
        re-entrant; inside it this thread may only :meth:`extend`.
        """
        with self.held():
            self._batch_thread = threading.get_ident()
            try:
                yield
            finally:
                self._batch_thread = None
                batched, self._batched = self._batched, {}
            for name, value in batched.items():
                self.write_record(name, value)


def _close_all(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
