"""ioctl numbers and struct layouts against the uapi headers, and against ctypes' own C layout."""

from __future__ import annotations

import ctypes

from attestd.tee.snp import linuxabi as snp
from attestd.tee.tdx import linuxabi as tdx


class CTdxReportReq(ctypes.Structure):
    _fields_ = (("reportdata", ctypes.c_uint8 * 64), ("tdreport", ctypes.c_uint8 * 1024))


class CSnpReportReq(ctypes.Structure):
    _fields_ = (
        ("user_data", ctypes.c_uint8 * 64),
        ("vmpl", ctypes.c_uint32),
        ("rsvd", ctypes.c_uint8 * 28),
    )


class CSnpGuestRequestIoctl(ctypes.Structure):
    _fields_ = (
        ("msg_version", ctypes.c_uint8),
        ("req_data", ctypes.c_uint64),
        ("resp_data", ctypes.c_uint64),
        ("exitinfo2", ctypes.c_uint64),
    )


class CSnpExtReportReq(ctypes.Structure):
    _fields_ = (
        ("data", CSnpReportReq),
        ("certs_address", ctypes.c_uint64),
        ("certs_len", ctypes.c_uint32),
    )


def test_tdx_get_report0_number_and_struct_size() -> None:
    assert tdx.TDX_REPORT_REQ.size == ctypes.sizeof(CTdxReportReq) == 1088
    assert tdx.TDX_CMD_GET_REPORT0 == 0xC4405401


def test_snp_ioctl_numbers() -> None:
    assert snp.SNP_GUEST_REQUEST_IOCTL.size == ctypes.sizeof(CSnpGuestRequestIoctl) == 32
    assert snp.SNP_GET_REPORT == 0xC0205300
    assert snp.SNP_GET_EXT_REPORT == 0xC0205302


def test_snp_request_structs_have_the_c_layout() -> None:
    assert snp.SNP_REPORT_REQ.size == ctypes.sizeof(CSnpReportReq) == 96
    assert snp.SNP_EXT_REPORT_REQ.size == ctypes.sizeof(CSnpExtReportReq) == 112
    assert CSnpExtReportReq.certs_len.offset == 104
    assert CSnpGuestRequestIoctl.exitinfo2.offset == 24


def test_packed_guest_request_reads_back_through_the_c_struct() -> None:
    packed = snp.pack_guest_request(0x1000, 0x2000)
    c = CSnpGuestRequestIoctl.from_buffer_copy(bytes(packed))
    assert (c.msg_version, c.req_data, c.resp_data, c.exitinfo2) == (1, 0x1000, 0x2000, 0)


def test_packed_ext_report_req_reads_back_through_the_c_struct() -> None:
    packed = snp.pack_ext_report_req(bytes(range(64)), 2, 0xDEAD000, 8192)
    c = CSnpExtReportReq.from_buffer_copy(packed)
    assert bytes(c.data.user_data) == bytes(range(64))
    assert (c.data.vmpl, c.certs_address, c.certs_len) == (2, 0xDEAD000, 8192)


def test_exitinfo2_splits_into_firmware_and_vmm_errors() -> None:
    assert snp.split_exitinfo2((1 << 32) | 0x16) == (0x16, 1)
    assert snp.split_exitinfo2(0) == (0, 0)


def test_report_response_holds_a_msg_report_rsp() -> None:
    report = bytes(range(256)) * 4 + bytes(160)
    response = snp.pack_report_resp(0, report)
    assert len(response) == 4000
    assert snp.unpack_report_resp(response) == (0, 1184, report)
    assert snp.firmware_status_name(0x16) == "INVALID_PARAM"
    assert snp.firmware_status_name(0x99) == "unknown status 0x99"
