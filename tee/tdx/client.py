"""The TDX guest backend: quotes through configfs-tsm, RTMRs through sysfs.

    >>> from attestd.tee.tdx.client import TdxGuestBackend
    >>> backend = TdxGuestBackend.open()            # configfs-tsm, else /dev/tdx_guest
    >>> quote = backend.get_quote(report_data)       # TDX quote (needs the host's QGS)
    >>> backend.extend_runtime_register(digest)      # RTMR3 = SHA-384(RTMR3 || digest)
    >>> backend.rtmrs()                              # RTMR0..3, 48 bytes each

Quotes come from configfs-tsm (Linux 6.7+, provider ``tdx_guest``). On older
kernels only ``/dev/tdx_guest`` exists; its TDX_CMD_GET_REPORT0 ioctl yields a
TDREPORT (:meth:`TdxGuestBackend.get_td_report`), which is MAC'ed for this
platform only and is no quote, so :meth:`~TdxGuestBackend.get_quote` refuses
there. RTMRs are read and extended through the tdx_guest sysfs measurements
directory (Linux 6.16+).
"""

from __future__ import annotations

import errno
import logging
from functools import cached_property
from pathlib import Path

from attestd.tee import backend as tee_backend
from attestd.tee._linux import DeviceIoctl as DeviceIoctl
from attestd.tee._linux import linux_ioctl as linux_ioctl
from attestd.tee.errors import DeviceError, InvalidArgumentError, TeeError, TeeUnavailableError
from attestd.tee.tdx import linuxabi, rtmr
from attestd.tee.tdx.abi import parse_quote
from attestd.tee.tdx.ccel import ACPI_TABLES, read_ccel
from attestd.tee.tsm import (
    DEFAULT_TSM_ROOT,
    KernelFilesystem,
    OsFilesystem,
    TsmReportClient,
)

PROVIDER = "tdx_guest"
ROOT_OF_TRUST = "intel-sgx-root-ca"
BACKEND_CONFIGFS = "tdx-configfs-tsm"
BACKEND_LEGACY = "tdx-legacy-ioctl"
DEFAULT_DEVICE = Path("/dev/tdx_guest")
DEFAULT_SYSFS_ROOTS = (
    Path("/sys/devices/virtual/misc/tdx_guest"),
    Path("/sys/class/misc/tdx_guest"),
)

log = logging.getLogger("attestd.tee")


class TdxQuoteUnavailableError(TeeUnavailableError):
    """Only the legacy device is present: it gives a TDREPORT, never a quote."""

    reason = "tdx_quote_needs_configfs_tsm"


class RtmrUnavailableError(TeeUnavailableError):
    """The kernel offers no sysfs measurement files to read or extend RTMRs."""

    reason = "tdx_rtmr_unavailable"


class TdxGuestBackend:
    """The TeeBackend of a real TD; open it with :meth:`open`."""

    def __init__(
        self,
        *,
        tsm: TsmReportClient | None,
        device: Path,
        measurements: Path | None,
        sysfs: KernelFilesystem,
        ioctl: DeviceIoctl,
        acpi_tables: Path = ACPI_TABLES,
    ) -> None:
        self._tsm = tsm
        self._device = device
        self._measurements = measurements
        self._sysfs = sysfs
        self._ioctl = ioctl
        self._acpi_tables = acpi_tables

    @classmethod
    def open(
        cls,
        *,
        tsm_root: Path = DEFAULT_TSM_ROOT,
        sysfs_roots: tuple[Path, ...] = DEFAULT_SYSFS_ROOTS,
        device: Path = DEFAULT_DEVICE,
        tsm_filesystem: KernelFilesystem | None = None,
        sysfs: KernelFilesystem | None = None,
        ioctl: DeviceIoctl = linux_ioctl,
        acpi_tables: Path = ACPI_TABLES,
    ) -> TdxGuestBackend:
        """Find this TD's interfaces: configfs-tsm answering as ``tdx_guest``, else the device."""
        client = TsmReportClient(tsm_root, filesystem=tsm_filesystem)
        tsm = client.find_guest(PROVIDER, device, tee="TDX", guest="a TDX guest (TD)")
        fs = sysfs if sysfs is not None else OsFilesystem()
        measurements = next(
            (r / "measurements" for r in sysfs_roots if fs.is_dir(r / "measurements")), None
        )
        return cls(
            tsm=tsm,
            device=device,
            measurements=measurements,
            sysfs=fs,
            ioctl=ioctl,
            acpi_tables=acpi_tables,
        )

    @property
    def measurements_directory(self) -> Path | None:
        """The sysfs directory the RTMRs are read from, or None where the kernel has none."""
        return self._measurements

    def describe(self) -> tee_backend.TeeDescription:
        return tee_backend.TeeDescription(
            tee=tee_backend.TeeType.TDX,
            simulated=False,
            root_of_trust=ROOT_OF_TRUST,
            backend=BACKEND_CONFIGFS if self._tsm is not None else BACKEND_LEGACY,
        )

    def get_quote(self, report_data: bytes) -> bytes:
        """A TDX quote with REPORTDATA = ``report_data``, from configfs-tsm."""
        tee_backend.check_report_data(report_data)
        if self._tsm is None:
            raise TdxQuoteUnavailableError(
                "a TDX quote needs configfs-tsm (Linux 6.7+) and a quote generation service "
                f"(QGS) on the host; {self._device} gives only a TDREPORT (get_td_report)"
            )
        return self._tsm.get_report(report_data, expected_provider=PROVIDER).outblob

    def attest(self, report_data: bytes) -> tee_backend.Attestation:
        """A quote and this machine's CC event log; the verifier fetches the collateral."""
        quote = self.get_quote(report_data)
        runtime_register = parse_quote(quote).body.rtmrs[rtmr.RUNTIME_LOG_RTMR]
        return tee_backend.Attestation(quote, ccel=self._ccel, runtime_register=runtime_register)

    @cached_property
    def _ccel(self) -> tee_backend.Ccel | None:
        """The CCEL, read once: the firmware wrote it at boot and it does not change."""
        try:
            found = read_ccel(self._acpi_tables)
        except TeeError as err:
            # Evidence without a CCEL is still evidence; the verifier decides whether it needs one.
            log.error(
                "cannot read the CC event log; evidence will carry none", extra={"error": str(err)}
            )
            return None
        return tee_backend.Ccel(table=found[0], log=found[1]) if found is not None else None

    def get_td_report(self, report_data: bytes) -> bytes:
        """The 1024-byte TDREPORT with REPORTDATA = ``report_data``, via TDX_CMD_GET_REPORT0."""
        tee_backend.check_report_data(report_data)
        buffer = linuxabi.pack_report_req(report_data)
        try:
            self._ioctl(self._device, linuxabi.TDX_CMD_GET_REPORT0, buffer)
        except OSError as e:
            raise _ioctl_error(e, self._device) from e
        report = linuxabi.unpack_tdreport(bytes(buffer))
        if report[linuxabi.TDREPORT_TYPE_OFFSET] != linuxabi.TDREPORT_TYPE_TDX:
            kind = report[linuxabi.TDREPORT_TYPE_OFFSET]
            raise DeviceError(
                f"{self._device} returned a report of type {kind:#x}, "
                f"not TDX ({linuxabi.TDREPORT_TYPE_TDX:#x})"
            )
        at = linuxabi.TDREPORT_REPORTDATA_OFFSET
        if report[at : at + linuxabi.TDX_REPORTDATA_LEN] != report_data:
            raise DeviceError(f"{self._device} returned a TDREPORT over other report data")
        return report

    def extend_runtime_register(self, digest: bytes) -> None:
        """Extend the runtime-log register (:data:`rtmr.RUNTIME_LOG_RTMR`) by ``digest``."""
        self.extend_rtmr(rtmr.RUNTIME_LOG_RTMR, digest)

    def read_runtime_register(self) -> bytes:
        return self._read_rtmr(rtmr.RUNTIME_LOG_RTMR)

    def rtmrs(self) -> tuple[bytes, bytes, bytes, bytes]:
        """RTMR0..3 as the kernel reports them now."""
        return (self._read_rtmr(0), self._read_rtmr(1), self._read_rtmr(2), self._read_rtmr(3))

    def extend_rtmr(self, index: int, digest: bytes) -> None:
        """RTMR[index] = SHA-384(RTMR[index] || digest); only RTMR2 and RTMR3 are ours to extend."""
        if index not in linuxabi.GUEST_EXTENDABLE_RTMRS:
            raise InvalidArgumentError(
                f"RTMR{index} cannot be extended by attestd: only RTMR2 and RTMR3 may be "
                "(RTMR0 and RTMR1 hold the firmware's and boot loader's measurements)"
            )
        if not isinstance(digest, bytes) or len(digest) != rtmr.RTMR_SIZE:
            raise InvalidArgumentError(
                f"an RTMR extension is a {rtmr.RTMR_SIZE}-byte SHA-384 digest"
            )
        path = self._rtmr_path(index)
        try:
            self._sysfs.write(path, digest)
        except OSError as e:
            raise _sysfs_error(e, "extend", path) from e

    def _read_rtmr(self, index: int) -> bytes:
        path = self._rtmr_path(index)
        try:
            value = self._sysfs.read(path)
        except OSError as e:
            raise _sysfs_error(e, "read", path) from e
        if len(value) != rtmr.RTMR_SIZE:
            raise DeviceError(f"{path} gave {len(value)} bytes, not {rtmr.RTMR_SIZE}")
        return value

    def _rtmr_path(self, index: int) -> Path:
        if index not in range(rtmr.RTMR_COUNT):
            raise InvalidArgumentError(f"RTMR index must be 0..3, not {index!r}")
        if self._measurements is None:
            raise RtmrUnavailableError(
                "RTMRs are read and extended through the tdx_guest sysfs measurements "
                "directory (Linux 6.16+), and this kernel has none"
            )
        return self._measurements / linuxabi.rtmr_file(index)


def _ioctl_error(e: OSError, device: Path) -> TeeUnavailableError | DeviceError:
    where = f"TDX_CMD_GET_REPORT0 on {device}"
    if e.errno == errno.ENOENT:
        return TeeUnavailableError(f"{device} does not exist; is the tdx_guest module loaded?")
    if e.errno in (errno.EACCES, errno.EPERM):
        return DeviceError(
            f"{where}: {e.strerror}; attestd needs read-write access to {device} "
            "(the attestd group, and DeviceAllow= in systemd/attestd.service)"
        )
    if e.errno == errno.ENOTTY:
        return DeviceError(f"{where}: the device does not know this ioctl (ENOTTY)")
    if e.errno == errno.EIO:
        return DeviceError(f"{where}: the TDCALL TDG.MR.REPORT failed (EIO)")
    return DeviceError(f"{where}: {e.strerror or e} (errno {e.errno})")


def _sysfs_error(e: OSError, action: str, path: Path) -> TeeUnavailableError | DeviceError:
    where = f"cannot {action} {path}"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return DeviceError(
            f"{where}: {e.strerror}; attestd needs write access to {path.parent} "
            "(add it to ReadWritePaths= in systemd/attestd.service)"
        )
    if e.errno == errno.ENOENT:
        return RtmrUnavailableError(f"{where}: the kernel offers no such measurement register")
    if e.errno == errno.EINVAL:
        return DeviceError(f"{where}: the kernel refused the value (EINVAL)")
    return DeviceError(f"{where}: {e.strerror or e} (errno {e.errno})")
