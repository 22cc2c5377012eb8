"""configfs-tsm: the kernel's common report interface for TDX and SEV-SNP guests (Linux 6.7+).

    >>> from attestd.tee.tsm import TsmReportClient
    >>> client = TsmReportClient()                      # /sys/kernel/config/tsm/report
    >>> report = client.get_report(report_data, expected_provider="tdx_guest")
    >>> report.outblob                                  # a TDX quote, or an SNP report
    >>> client.get_report(report_data, expected_provider="sev_guest", privlevel=0,
    ...                   want_auxblob=True).auxblob    # the SNP certificate table

Each request makes its own entry under the report directory and removes it
afterwards, and checks the entry's ``generation`` counter around the exchange,
as Documentation/ABI/testing/configfs-tsm-report asks: a count that moved by
more than our own writes means another writer changed the entry between our
``inblob`` and ``outblob``, so the report may not be ours. Such a request is
retried a bounded number of times, then refused.

All file operations go through a :class:`KernelFilesystem`, so tests can put a
fake of the kernel's behaviour behind the same client code.
"""

from __future__ import annotations

import errno
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from attestd.tee.errors import DeviceError, InvalidArgumentError, TeeUnavailableError

DEFAULT_TSM_ROOT = Path("/sys/kernel/config/tsm/report")
INBLOB_SIZE = 64
PRIVLEVEL_MAX = 3  # TSM_PRIVLEVEL_MAX in include/linux/tsm.h
DEFAULT_ATTEMPTS = 3
ENTRY_PREFIX = "attestd-"

# What the systemd unit must grant; quoted in every permission error.
_PERMISSION_HINT = (
    "attestd needs write access to {root}: run it as a user allowed to create entries there, "
    "and keep {root} in the unit's ReadWritePaths= (systemd/attestd.service)"
)


class TsmUnavailableError(TeeUnavailableError):
    """The configfs-tsm report directory does not exist on this machine."""

    reason = "tsm_unavailable"


class TsmProviderMismatchError(TeeUnavailableError):
    """configfs-tsm answers for another TEE than the one asked for."""

    reason = "tsm_provider_mismatch"


class TsmNoProviderError(DeviceError):
    """configfs-tsm exists but no TEE driver has registered as its provider (ENXIO)."""

    reason = "tsm_no_provider"


class TsmBusyError(DeviceError):
    """The kernel refused with EBUSY; a later attempt may succeed."""

    reason = "tsm_busy"


class TsmPermissionError(DeviceError):
    """The process may not create or write configfs-tsm entries."""

    reason = "tsm_permission_denied"


class TsmGenerationRaceError(DeviceError):
    """Another writer changed our entry during every attempt; no report can be trusted."""

    reason = "tsm_generation_race"


class KernelFilesystem(Protocol):
    """The file operations the configfs-tsm and sysfs clients make, and nothing more.

    Errors are ``OSError`` with the kernel's errno, exactly as the real calls raise them.
    """

    def is_dir(self, path: Path) -> bool: ...

    def mkdir(self, path: Path) -> None: ...

    def rmdir(self, path: Path) -> None: ...

    def read(self, path: Path) -> bytes: ...

    def write(self, path: Path, data: bytes) -> None: ...


class OsFilesystem:
    """:class:`KernelFilesystem` over the real system calls.

    A write is one ``write(2)`` followed by ``close(2)``: configfs commits binary
    attributes such as ``inblob`` on close, so an error may surface there too.
    """

    def is_dir(self, path: Path) -> bool:
        return path.is_dir()

    def mkdir(self, path: Path) -> None:
        os.mkdir(path, 0o700)

    def rmdir(self, path: Path) -> None:
        os.rmdir(path)

    def read(self, path: Path) -> bytes:
        with open(path, "rb", buffering=0) as f:
            return f.read()

    def write(self, path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY)
        try:
            written = os.write(fd, data)
        finally:
            os.close(fd)
        if written != len(data):
            raise OSError(errno.EIO, f"short write: {written} of {len(data)} bytes", str(path))


@dataclass(frozen=True)
class TsmReport:
    """One configfs-tsm answer: the report, the provider's extra data, and its generation."""

    outblob: bytes
    auxblob: bytes | None
    provider: str
    generation: int


class TsmReportClient:
    """Requests reports through ``<root>/<entry>/{inblob,outblob,...}``."""

    def __init__(
        self,
        root: Path = DEFAULT_TSM_ROOT,
        *,
        filesystem: KernelFilesystem | None = None,
        attempts: int = DEFAULT_ATTEMPTS,
    ) -> None:
        if attempts < 1:
            raise InvalidArgumentError("attempts must be at least 1")
        self._root = Path(root)
        self._fs: KernelFilesystem = filesystem if filesystem is not None else OsFilesystem()
        self._attempts = attempts

    @property
    def root(self) -> Path:
        return self._root

    def available(self) -> bool:
        """Whether the report directory exists (configfs mounted, TSM core loaded)."""
        return self._fs.is_dir(self._root)

    def provider(self) -> str:
        """The registered provider's name (``tdx_guest``, ``sev_guest``), via a throwaway entry."""
        with _Entry(self._fs, self._root) as entry:
            return entry.provider()

    def provider_if_any(self) -> str | None:
        """:meth:`provider`, or None where configfs-tsm or its provider is absent."""
        if not self.available():
            return None
        try:
            return self.provider()
        except TsmNoProviderError:
            return None

    def find_guest(
        self, provider: str, device: Path, *, tee: str, guest: str
    ) -> TsmReportClient | None:
        """This client where configfs-tsm answers as ``provider``; None where only ``device`` is.

        ``tee`` and ``guest`` word the errors: "no {tee} guest interface", "this is not
        {guest}". Another provider is refused: a backend never takes quotes from a TEE
        it was not asked for.
        """
        found = self.provider_if_any()
        if found not in (None, provider):
            raise TsmProviderMismatchError(
                f"configfs-tsm at {self.root} is provided by {found!r}, not {provider!r}: "
                f"this is not {guest}"
            )
        if found is None and not device.exists():
            raise TeeUnavailableError(
                f"no {tee} guest interface: configfs-tsm ({self.root}) has no {provider} "
                f"provider and {device} does not exist; is this {guest} with its kernel "
                "module loaded?"
            )
        return self if found == provider else None

    def get_report(
        self,
        inblob: bytes,
        *,
        expected_provider: str,
        privlevel: int | None = None,
        want_auxblob: bool = False,
    ) -> TsmReport:
        """A report over ``inblob`` (64 bytes) from ``expected_provider``, in a fresh entry."""
        if not isinstance(inblob, bytes) or len(inblob) != INBLOB_SIZE:
            raise InvalidArgumentError(f"inblob must be exactly {INBLOB_SIZE} bytes")
        if privlevel is not None and privlevel not in range(PRIVLEVEL_MAX + 1):
            raise InvalidArgumentError(f"privlevel must be 0..{PRIVLEVEL_MAX}, not {privlevel!r}")
        races: list[str] = []
        for _ in range(self._attempts):
            with _Entry(self._fs, self._root) as entry:
                provider = entry.provider()
                if provider != expected_provider:
                    raise TsmProviderMismatchError(
                        f"configfs-tsm at {self._root} is provided by {provider!r}, "
                        f"not {expected_provider!r}: this machine is not the TEE asked for"
                    )
                if privlevel is not None:
                    entry.write("privlevel", str(privlevel).encode())
                before = entry.generation()
                entry.write("inblob", inblob)
                outblob = entry.read("outblob")
                auxblob = entry.read("auxblob") if want_auxblob else None
                after = entry.generation()
            if after == before + 1:
                if not outblob:
                    raise DeviceError(f"{provider} returned an empty outblob")
                return TsmReport(outblob, auxblob or None, provider, after)
            races.append(f"{before}->{after}")
        raise TsmGenerationRaceError(
            f"another writer changed the configfs-tsm entry during each of {self._attempts} "
            f"attempts (generation {', '.join(races)}; expected +1 for our inblob write); "
            f"is another process writing under {self._root}?"
        )


class _Entry:
    """One uniquely named report entry: created on enter, always removed on exit."""

    def __init__(self, fs: KernelFilesystem, root: Path) -> None:
        self._fs = fs
        self._root = root
        self.path = root / f"{ENTRY_PREFIX}{os.getpid()}-{secrets.token_hex(8)}"

    def __enter__(self) -> _Entry:
        try:
            self._fs.mkdir(self.path)
        except FileNotFoundError as e:
            raise TsmUnavailableError(
                f"configfs-tsm not available: {self._root} does not exist; "
                "is configfs mounted and the TSM module loaded?"
            ) from e
        except OSError as e:
            raise _device_error(e, "create", self.path, self._root) from e
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._fs.rmdir(self.path)
        except FileNotFoundError:
            pass
        except OSError as e:
            # Never hide the error that is already on its way out.
            if exc[0] is None:
                raise _device_error(e, "remove", self.path, self._root) from e

    def read(self, name: str) -> bytes:
        try:
            return self._fs.read(self.path / name)
        except OSError as e:
            raise _device_error(e, "read", self.path / name, self._root) from e

    def write(self, name: str, data: bytes) -> None:
        try:
            self._fs.write(self.path / name, data)
        except OSError as e:
            raise _device_error(e, "write", self.path / name, self._root) from e

    def provider(self) -> str:
        return self.read("provider").decode("ascii", "replace").strip()

    def generation(self) -> int:
        text = self.read("generation").decode("ascii", "replace").strip()
        try:
            return int(text)
        except ValueError:
            raise DeviceError(f"{self.path / 'generation'} holds {text!r}, not a count") from None


def _device_error(e: OSError, action: str, path: Path, root: Path) -> DeviceError:
    """The clearest error for an errno the kernel gave while we ``action`` ``path``."""
    where = f"cannot {action} {path}"
    code = e.errno
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return TsmPermissionError(f"{where}: {e.strerror}; " + _PERMISSION_HINT.format(root=root))
    if code == errno.ENXIO:
        return TsmNoProviderError(
            f"{where}: no TEE driver is registered with configfs-tsm "
            "(is the tdx_guest or sev_guest module loaded?)"
        )
    if code == errno.EBUSY:
        return TsmBusyError(f"{where}: the TSM is busy with another request; try again")
    if code == errno.EFBIG:
        return DeviceError(f"{where}: the report exceeds configfs-tsm's size limit (EFBIG)")
    if code == errno.EINVAL and path.name == "inblob":
        return DeviceError(f"{where}: the kernel refused the {INBLOB_SIZE}-byte inblob (EINVAL)")
    if code == errno.EINVAL and path.name == "privlevel":
        return DeviceError(
            f"{where}: privlevel refused (EINVAL); it must lie between the entry's "
            f"privlevel_floor and {PRIVLEVEL_MAX}"
        )
    if code == errno.ENOENT:
        return DeviceError(f"{where}: the provider does not offer {path.name!r}")
    if path.name == "outblob":
        return DeviceError(
            f"{where}: the provider failed to produce a report: {e.strerror or e} "
            f"(errno {code}); a TDX quote also needs the host's quote generation service (QGS)"
        )
    return DeviceError(f"{where}: {e.strerror or e} (errno {code})")
