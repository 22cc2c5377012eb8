"""Fake /dev/tdx_guest and /dev/sev-guest: ioctl handlers that do what the kernel drivers do.

Each fake is a :class:`~attestd.tee.tdx.client.DeviceIoctl`: it gets the device
path, the request number and the argument buffer. The SEV fake dereferences the
user addresses in ``struct snp_guest_request_ioctl`` with ctypes, as the driver's
``copy_from_user``/``copy_to_user`` would, and writes ``exitinfo2`` back even on
failure, as the driver does. Also here: the deterministic SNP report and GHCB
certificate table the fakes (and the configfs-tsm fake) hand out.

    device = FakeSevGuestDevice(cert_table=snp_cert_table({VCEK_GUID: b"vcek"}))
    device.busy = True                   # host answers SNP_GUEST_VMM_ERR_BUSY
    backend = SnpGuestBackend.open(tsm_root=missing, device=path, ioctl=device)
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import struct
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from attestd.tee.snp import linuxabi as snp_abi
from attestd.tee.tdx import linuxabi as tdx_abi

VCEK_GUID = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd")
ASK_GUID = uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782")
ARK_GUID = uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae")
FAKE_MEASUREMENT = hashlib.sha384(b"attestd fake SNP launch measurement").digest()


def fake_snp_report(report_data: bytes, vmpl: int = 0) -> bytes:
    """A 1184-byte ATTESTATION_REPORT: version 3, VMPL at 0x30, REPORT_DATA at 0x50; unsigned."""
    report = bytearray(snp_abi.SNP_REPORT_SIZE)
    struct.pack_into("<I", report, 0x00, 3)
    struct.pack_into("<I", report, snp_abi.REPORT_VMPL_OFFSET, vmpl)
    report[snp_abi.REPORT_DATA_OFFSET : snp_abi.REPORT_DATA_OFFSET + 64] = report_data
    report[0x90 : 0x90 + 48] = FAKE_MEASUREMENT
    return bytes(report)


def snp_cert_table(certs: Mapping[uuid.UUID, bytes]) -> bytes:
    """A GHCB certificate table: {GUID, offset, length} entries, a zero entry, then the certs."""
    entry = struct.Struct("<16sII")
    offset = entry.size * (len(certs) + 1)
    head, body = b"", b""
    for guid, der in certs.items():
        head += entry.pack(guid.bytes_le, offset + len(body), len(der))
        body += der
    return head + bytes(entry.size) + body


def _fail(code: int, device: Path) -> OSError:
    return OSError(code, os.strerror(code), str(device))


@dataclass
class FakeTdxGuestDevice:
    """/dev/tdx_guest: TDX_CMD_GET_REPORT0 fills a TDREPORT over the given report data."""

    rtmrs: Callable[[], tuple[bytes, ...]] = lambda: (bytes(48),) * 4
    fail_errno: int | None = None
    calls: list[int] = field(default_factory=list)

    def __call__(self, device: Path, request: int, buffer: bytearray) -> None:
        self.calls.append(request)
        if self.fail_errno is not None:
            raise _fail(self.fail_errno, device)
        if request != tdx_abi.TDX_CMD_GET_REPORT0:
            raise _fail(errno.ENOTTY, device)
        if len(buffer) != tdx_abi.TDX_REPORT_REQ.size:
            raise _fail(errno.EFAULT, device)
        report_data = bytes(buffer[: tdx_abi.TDX_REPORTDATA_LEN])
        report = bytearray(tdx_abi.TDX_REPORT_LEN)
        report[tdx_abi.TDREPORT_TYPE_OFFSET] = tdx_abi.TDREPORT_TYPE_TDX
        at = tdx_abi.TDREPORT_REPORTDATA_OFFSET
        report[at : at + 64] = report_data
        at = tdx_abi.TDREPORT_RTMR_OFFSET
        report[at : at + 4 * 48] = b"".join(self.rtmrs())
        buffer[tdx_abi.TDX_REPORTDATA_LEN :] = report


@dataclass
class FakeSevGuestDevice:
    """/dev/sev-guest: SNP_GET_REPORT and SNP_GET_EXT_REPORT, with the host's answers as switches.

    ``cert_table`` is what the host holds; a certificate buffer smaller than it
    (rounded up to pages) fails with EIO and SNP_GUEST_VMM_ERR_INVALID_LEN and
    the size needed written back to ``certs_len``, as the driver does.
    """

    cert_table: bytes = b""
    guest_vmpl: int = 0  # requests for a more privileged (lower) VMPL get INVALID_PARAM
    busy: bool = False  # the host keeps answering BUSY until the driver gives up
    fw_error: int = 0  # the firmware rejects the guest message itself
    status: int = 0  # MSG_REPORT_RSP.status the firmware writes
    report_size: int = snp_abi.SNP_REPORT_SIZE
    fail_errno: int | None = None
    calls: list[int] = field(default_factory=list)
    certs_lens: list[int] = field(default_factory=list)

    @property
    def cert_pages_needed(self) -> int:
        return -(-len(self.cert_table) // snp_abi.PAGE_SIZE) * snp_abi.PAGE_SIZE

    def __call__(self, device: Path, request: int, buffer: bytearray) -> None:
        self.calls.append(request)
        if self.fail_errno is not None:
            raise _fail(self.fail_errno, device)
        if request not in (snp_abi.SNP_GET_REPORT, snp_abi.SNP_GET_EXT_REPORT):
            raise _fail(errno.ENOTTY, device)
        version, req_addr, resp_addr, _ = snp_abi.unpack_guest_request(bytes(buffer))
        if version == 0 or not req_addr or not resp_addr:
            raise _fail(errno.EINVAL, device)
        size = (
            snp_abi.SNP_EXT_REPORT_REQ.size
            if request == snp_abi.SNP_GET_EXT_REPORT
            else snp_abi.SNP_REPORT_REQ.size
        )
        request_bytes = ctypes.string_at(req_addr, size)
        user_data, vmpl, reserved = snp_abi.SNP_REPORT_REQ.unpack(
            request_bytes[: snp_abi.SNP_REPORT_REQ.size]
        )
        if any(reserved):
            raise _fail(errno.EINVAL, device)
        if request == snp_abi.SNP_GET_EXT_REPORT:
            _, certs_address, certs_len = snp_abi.unpack_ext_report_req(request_bytes)
            self.certs_lens.append(certs_len)
            if certs_len > snp_abi.SEV_FW_BLOB_MAX_SIZE or certs_len % snp_abi.PAGE_SIZE:
                raise _fail(errno.EINVAL, device)
            if certs_len and certs_address and certs_len < len(self.cert_table):
                needed = struct.pack("<I", self.cert_pages_needed)
                ctypes.memmove(req_addr + 104, needed, 4)  # offsetof(certs_len)
                self._exitinfo2(buffer, 0, snp_abi.SNP_GUEST_VMM_ERR_INVALID_LEN)
                raise _fail(errno.EIO, device)
        if self.busy:
            self._exitinfo2(buffer, 0, snp_abi.SNP_GUEST_VMM_ERR_BUSY)
            raise _fail(errno.ETIMEDOUT, device)
        if self.fw_error:
            self._exitinfo2(buffer, self.fw_error, 0)
            raise _fail(errno.EIO, device)
        status = self.status or (0x16 if vmpl < self.guest_vmpl else 0)
        report = b"" if status else fake_snp_report(user_data, vmpl)[: self.report_size]
        response = snp_abi.pack_report_resp(status, report)
        ctypes.memmove(resp_addr, response, len(response))
        if request == snp_abi.SNP_GET_EXT_REPORT and certs_len and certs_address:
            ctypes.memmove(certs_address, self.cert_table, len(self.cert_table))
        self._exitinfo2(buffer, 0, 0)

    @staticmethod
    def _exitinfo2(buffer: bytearray, fw_error: int, vmm_error: int) -> None:
        struct.pack_into("<Q", buffer, 24, (vmm_error << 32) | fw_error)
