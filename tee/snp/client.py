"""The SEV-SNP guest backend: attestation reports through configfs-tsm or /dev/sev-guest.

    >>> from attestd.tee.snp.client import SnpGuestBackend
    >>> backend = SnpGuestBackend.open()            # configfs-tsm, else /dev/sev-guest
    >>> report = backend.get_quote(report_data)      # the 1184-byte ATTESTATION_REPORT
    >>> report, certs = backend.get_report_with_certificates(report_data)
    >>> # certs: the GHCB certificate table (VCEK, ASK, ARK) the host provides, or None

Reports come from configfs-tsm (Linux 6.7+, provider ``sev_guest``, the VMPL
written to ``privlevel``, the certificate table read from ``auxblob``), or on
older kernels from the SNP_GET_REPORT and SNP_GET_EXT_REPORT ioctls. SNP has no
runtime measurement registers: the runtime log's head is bound through
report_data, so :meth:`~SnpGuestBackend.read_runtime_register` returns None.
"""

from __future__ import annotations

import ctypes
import errno
from pathlib import Path

from attestd.tee import backend as tee_backend
from attestd.tee._linux import DeviceIoctl as DeviceIoctl
from attestd.tee._linux import linux_ioctl as linux_ioctl
from attestd.tee.errors import DeviceError, InvalidArgumentError, TeeError, TeeUnavailableError
from attestd.tee.snp import linuxabi
from attestd.tee.snp.abi import CertChain, signing_key_of
from attestd.tee.tsm import (
    DEFAULT_TSM_ROOT,
    PRIVLEVEL_MAX,
    KernelFilesystem,
    TsmProviderMismatchError,
    TsmReportClient,
)

PROVIDER = "sev_guest"
ROOT_OF_TRUST = "amd-ark"
BACKEND_CONFIGFS = "sev-snp-configfs-tsm"
BACKEND_LEGACY = "sev-snp-legacy-ioctl"
DEFAULT_DEVICE = Path("/dev/sev-guest")
SEV_RET_INVALID_PARAM = 0x16


class NoRuntimeRegisterError(TeeError):
    """SEV-SNP has no register to extend; the log head travels in report_data instead."""

    reason = "tee_no_runtime_register"


class SnpFirmwareError(DeviceError):
    """The SNP firmware or the host (VMM) refused a guest request; the codes say why."""

    reason = "snp_firmware_error"

    def __init__(self, message: str, *, fw_error: int, vmm_error: int) -> None:
        super().__init__(message)
        self.fw_error = fw_error
        self.vmm_error = vmm_error


class SnpBusyError(SnpFirmwareError):
    """The host kept answering SNP_GUEST_VMM_ERR_BUSY; a later attempt may succeed."""

    reason = "snp_busy"


class SnpCertificateBufferError(SnpFirmwareError):
    """The host asked for a larger certificate buffer than the kernel or attestd allows."""

    reason = "snp_certificate_buffer"


class SnpGuestBackend:
    """The TeeBackend of a real SEV-SNP guest; open it with :meth:`open`."""

    def __init__(
        self,
        *,
        tsm: TsmReportClient | None,
        device: Path,
        vmpl: int,
        ioctl: DeviceIoctl,
        certs_buffer_size: int,
    ) -> None:
        if vmpl not in range(PRIVLEVEL_MAX + 1):
            raise InvalidArgumentError(f"VMPL must be 0..{PRIVLEVEL_MAX}, not {vmpl!r}")
        if certs_buffer_size <= 0 or certs_buffer_size % linuxabi.PAGE_SIZE:
            raise InvalidArgumentError("the certificate buffer must be whole 4 KiB pages")
        self._tsm = tsm
        self._device = device
        self._vmpl = vmpl
        self._ioctl = ioctl
        self._certs_size = certs_buffer_size

    @classmethod
    def open(
        cls,
        *,
        tsm_root: Path = DEFAULT_TSM_ROOT,
        device: Path = DEFAULT_DEVICE,
        vmpl: int = 0,
        tsm_filesystem: KernelFilesystem | None = None,
        ioctl: DeviceIoctl = linux_ioctl,
        certs_buffer_size: int = linuxabi.SEV_FW_BLOB_MAX_SIZE,
    ) -> SnpGuestBackend:
        """Find this guest's interface: configfs-tsm answering as ``sev_guest``, else the device."""
        client = TsmReportClient(tsm_root, filesystem=tsm_filesystem)
        provider = client.provider_if_any()
        if provider not in (None, PROVIDER):
            raise TsmProviderMismatchError(
                f"configfs-tsm at {tsm_root} is provided by {provider!r}, not {PROVIDER!r}: "
                "this is not an SEV-SNP guest"
            )
        if provider is None and not device.exists():
            raise TeeUnavailableError(
                f"no SEV-SNP guest interface: configfs-tsm ({tsm_root}) has no {PROVIDER} "
                f"provider and {device} does not exist; is this an SNP guest with the "
                "sev-guest module loaded?"
            )
        return cls(
            tsm=client if provider == PROVIDER else None,
            device=device,
            vmpl=vmpl,
            ioctl=ioctl,
            certs_buffer_size=certs_buffer_size,
        )

    @property
    def vmpl(self) -> int:
        return self._vmpl

    def describe(self) -> tee_backend.TeeDescription:
        return tee_backend.TeeDescription(
            tee=tee_backend.TeeType.SEV_SNP,
            simulated=False,
            root_of_trust=ROOT_OF_TRUST,
            backend=BACKEND_CONFIGFS if self._tsm is not None else BACKEND_LEGACY,
        )

    def get_quote(self, report_data: bytes) -> bytes:
        """The 1184-byte attestation report with REPORT_DATA = ``report_data``."""
        return self._report(report_data, with_certificates=False)[0]

    def get_report_with_certificates(self, report_data: bytes) -> tuple[bytes, bytes | None]:
        """The report and the host's GHCB certificate table, raw (None where the host has none)."""
        return self._report(report_data, with_certificates=True)

    def attest(self, report_data: bytes) -> tee_backend.Attestation:
        """The report and the certificate chain the host provided, leaf first (may be none).

        The signer is the table's VCEK or VLEK as the report's SIGNING_KEY names,
        so a host whose table holds both ships the one that signed.
        """
        report, table = self.get_report_with_certificates(report_data)
        chain = CertChain.from_raw_table(table, signing_key_of(report))
        return tee_backend.Attestation(report, chain.ordered())

    def extend_runtime_register(self, digest: bytes) -> None:
        raise NoRuntimeRegisterError(
            "SEV-SNP has no runtime measurement register to extend; "
            "the runtime log's head is bound through report_data instead"
        )

    def read_runtime_register(self) -> bytes | None:
        """Always None: SEV-SNP has no runtime measurement register."""
        return None

    def _report(self, report_data: bytes, *, with_certificates: bool) -> tuple[bytes, bytes | None]:
        tee_backend.check_report_data(report_data)
        if self._tsm is not None:
            answer = self._tsm.get_report(
                report_data,
                expected_provider=PROVIDER,
                privlevel=self._vmpl,
                want_auxblob=with_certificates,
            )
            report, certs = answer.outblob, answer.auxblob
        elif with_certificates:
            report, certs = self._legacy_ext_report(report_data)
        else:
            report, certs = self._legacy_report(report_data), None
        self._check_report(report, report_data)
        return report, certs

    def _legacy_report(self, report_data: bytes) -> bytes:
        request = ctypes.create_string_buffer(
            linuxabi.pack_report_req(report_data, self._vmpl), linuxabi.SNP_REPORT_REQ.size
        )
        response = ctypes.create_string_buffer(linuxabi.SNP_REPORT_RESP_SIZE)
        guest = linuxabi.pack_guest_request(ctypes.addressof(request), ctypes.addressof(response))
        self._call(linuxabi.SNP_GET_REPORT, "SNP_GET_REPORT", guest)
        return self._report_of(response.raw)

    def _legacy_ext_report(self, report_data: bytes) -> tuple[bytes, bytes | None]:
        size = self._certs_size
        # At most one retry: the host says how large its table is when ours is too small.
        for _ in range(2):
            certs = ctypes.create_string_buffer(size)
            request = ctypes.create_string_buffer(
                linuxabi.pack_ext_report_req(
                    report_data, self._vmpl, ctypes.addressof(certs), size
                ),
                linuxabi.SNP_EXT_REPORT_REQ.size,
            )
            response = ctypes.create_string_buffer(linuxabi.SNP_REPORT_RESP_SIZE)
            guest = linuxabi.pack_guest_request(
                ctypes.addressof(request), ctypes.addressof(response)
            )
            try:
                self._call(linuxabi.SNP_GET_EXT_REPORT, "SNP_GET_EXT_REPORT", guest)
            except SnpCertificateBufferError as e:
                needed = linuxabi.unpack_ext_report_req(request.raw)[2]
                if needed <= size or needed > linuxabi.SEV_FW_BLOB_MAX_SIZE:
                    raise SnpCertificateBufferError(
                        f"{e.message}; the host asks for {needed} bytes of certificate buffer "
                        f"(had {size}, the kernel allows at most "
                        f"{linuxabi.SEV_FW_BLOB_MAX_SIZE})",
                        fw_error=e.fw_error,
                        vmm_error=e.vmm_error,
                    ) from e
                size = needed
                continue
            table = certs.raw
            return self._report_of(response.raw), table if any(table) else None
        raise SnpCertificateBufferError(
            f"the host asked for a larger certificate buffer twice (last {size} bytes)",
            fw_error=0,
            vmm_error=linuxabi.SNP_GUEST_VMM_ERR_INVALID_LEN,
        )

    def _call(self, request: int, name: str, guest: bytearray) -> None:
        try:
            self._ioctl(self._device, request, guest)
        except OSError as e:
            exitinfo2 = linuxabi.unpack_guest_request(bytes(guest))[3]
            raise _ioctl_error(e, f"{name} on {self._device}", exitinfo2) from e

    def _report_of(self, response: bytes) -> bytes:
        status, size, report = linuxabi.unpack_report_resp(response)
        if status:
            hint = " - is the VMPL asked for below this guest's?"
            raise SnpFirmwareError(
                "the SNP firmware refused the report request: "
                f"{linuxabi.firmware_status_name(status)} ({status:#x})"
                + (hint if status == SEV_RET_INVALID_PARAM else ""),
                fw_error=status,
                vmm_error=0,
            )
        if size != linuxabi.SNP_REPORT_SIZE:
            raise DeviceError(
                f"the SNP firmware returned a {size}-byte report, not {linuxabi.SNP_REPORT_SIZE}"
            )
        return report

    def _check_report(self, report: bytes, report_data: bytes) -> None:
        """The cheap checks that the report is the one asked for; signatures are verify's."""
        if len(report) != linuxabi.SNP_REPORT_SIZE:
            raise DeviceError(
                f"an SNP report is {linuxabi.SNP_REPORT_SIZE} bytes; got {len(report)}"
            )
        at = linuxabi.REPORT_DATA_OFFSET
        if report[at : at + linuxabi.SNP_REPORT_USER_DATA_SIZE] != report_data:
            raise DeviceError("the SNP report carries other report data than was asked for")
        vmpl = int.from_bytes(report[linuxabi.REPORT_VMPL_OFFSET :][:4], "little")
        if vmpl != self._vmpl:
            raise DeviceError(f"the SNP report is for VMPL {vmpl}, not {self._vmpl}")


def _ioctl_error(e: OSError, where: str, exitinfo2: int) -> TeeError:
    fw_error, vmm_error = linuxabi.split_exitinfo2(exitinfo2)
    codes = f"fw_error {fw_error:#x}, vmm_error {vmm_error:#x}"
    if vmm_error == linuxabi.SNP_GUEST_VMM_ERR_INVALID_LEN:
        return SnpCertificateBufferError(
            f"{where}: the certificate buffer is too small ({codes})",
            fw_error=fw_error,
            vmm_error=vmm_error,
        )
    if vmm_error == linuxabi.SNP_GUEST_VMM_ERR_BUSY or e.errno == errno.EAGAIN:
        return SnpBusyError(
            f"{where}: the host is busy with other guest requests; try again ({codes})",
            fw_error=fw_error,
            vmm_error=vmm_error,
        )
    if fw_error or (vmm_error and vmm_error != linuxabi.SNP_GUEST_VMM_ERR_GENERIC):
        return SnpFirmwareError(
            f"{where}: the firmware said {linuxabi.firmware_status_name(fw_error)} ({codes})",
            fw_error=fw_error,
            vmm_error=vmm_error,
        )
    if e.errno == errno.ENOENT:
        return TeeUnavailableError(f"{where}: the device does not exist; is sev-guest loaded?")
    if e.errno in (errno.EACCES, errno.EPERM):
        return DeviceError(
            f"{where}: {e.strerror}; attestd needs read-write access to the device "
            "(the attestd group, and DeviceAllow= in systemd/attestd.service)"
        )
    if e.errno == errno.ENOTTY:
        return DeviceError(f"{where}: the device does not know this ioctl (ENOTTY)")
    if e.errno == errno.EINVAL:
        return DeviceError(f"{where}: the driver refused the request (EINVAL)")
    return DeviceError(f"{where}: {e.strerror or e} (errno {e.errno}; {codes})")
