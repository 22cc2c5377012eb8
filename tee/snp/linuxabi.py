"""The Linux SEV guest driver's binary interface: ioctl numbers and struct layouts, no I/O.

From include/uapi/linux/sev-guest.h (Linux 5.19+)::

    struct snp_report_req {
        __u8 user_data[64];
        __u32 vmpl;
        __u8 rsvd[28];                      /* must be zero */
    };
    struct snp_report_resp {
        __u8 data[4000];                    /* a MSG_REPORT_RSP, see below */
    };
    struct snp_guest_request_ioctl {
        __u8 msg_version;                   /* must be non-zero */
        __u64 req_data;                     /* user address of the request */
        __u64 resp_data;                    /* user address of the response */
        union {
            __u64 exitinfo2;
            struct { __u32 fw_error; __u32 vmm_error; };
        };
    };
    struct snp_ext_report_req {
        struct snp_report_req data;
        __u64 certs_address;                /* where to copy the certificate table */
        __u32 certs_len;                    /* its size; on INVALID_LEN, the size needed */
    };
    #define SNP_GET_REPORT     _IOWR('S', 0x0, struct snp_guest_request_ioctl)
    #define SNP_GET_EXT_REPORT _IOWR('S', 0x2, struct snp_guest_request_ioctl)
    #define SNP_GUEST_VMM_ERR_INVALID_LEN 1
    #define SNP_GUEST_VMM_ERR_BUSY        2

MSG_REPORT_RSP is table 25 of the SEV-SNP Firmware ABI specification (56860):
``u32 status; u32 report_size; u8 reserved[24]; u8 report[1184]``. The
certificate buffer must be a whole number of pages, at most
SEV_FW_BLOB_MAX_SIZE (16 KiB) in drivers/virt/coco/sev-guest/sev-guest.c.
"""

from __future__ import annotations

import struct

from attestd.tee._linux import iowr as iowr

SNP_REPORT_USER_DATA_SIZE = 64
SNP_REPORT_SIZE = 1184  # ATTESTATION_REPORT, firmware ABI table 22
SNP_REPORT_RESP_SIZE = 4000
SNP_MSG_VERSION = 1
PAGE_SIZE = 4096
SEV_FW_BLOB_MAX_SIZE = 0x4000

# Natural alignment, as the C compiler lays them out on x86-64.
SNP_REPORT_REQ = struct.Struct("<64sI28s")  # 96 bytes
SNP_GUEST_REQUEST_IOCTL = struct.Struct("<B7xQQQ")  # 32 bytes: u8, pad, 3 x u64
SNP_EXT_REPORT_REQ = struct.Struct("<96sQI4x")  # 112 bytes: padded to 8
MSG_REPORT_RSP_HEADER = struct.Struct("<II24s")  # status, report_size, reserved

# Offsets into the 1184-byte report that the client checks.
REPORT_VMPL_OFFSET = 0x30
REPORT_DATA_OFFSET = 0x50

SNP_GET_REPORT = iowr("S", 0x0, SNP_GUEST_REQUEST_IOCTL.size)  # 0xC0205300
SNP_GET_EXT_REPORT = iowr("S", 0x2, SNP_GUEST_REQUEST_IOCTL.size)  # 0xC0205302

# exitinfo2: bits 63:32 the VMM's error, bits 31:0 the firmware's.
SNP_GUEST_VMM_ERR_SHIFT = 32
SNP_GUEST_FW_ERR_MASK = 0xFFFF_FFFF
SNP_GUEST_VMM_ERR_INVALID_LEN = 1
SNP_GUEST_VMM_ERR_BUSY = 2
SNP_GUEST_VMM_ERR_GENERIC = 0xFFFF_FFFF  # the driver failed before the firmware answered

#: SEV firmware status codes (include/uapi/linux/psp-sev.h, enum sev_ret_code), by value.
FIRMWARE_STATUS = {
    0x00: "SUCCESS",
    0x01: "INVALID_PLATFORM_STATE",
    0x02: "INVALID_GUEST_STATE",
    0x03: "INVALID_CONFIG",
    0x04: "INVALID_LEN",
    0x07: "POLICY_FAILURE",
    0x08: "INACTIVE",
    0x09: "INVALID_ADDRESS",
    0x10: "INVALID_GUEST",
    0x11: "INVALID_COMMAND",
    0x15: "UNSUPPORTED",
    0x16: "INVALID_PARAM",
    0x17: "RESOURCE_LIMIT",
    0x27: "INVALID_KEY",
}


def firmware_status_name(code: int) -> str:
    return FIRMWARE_STATUS.get(code, f"unknown status {code:#x}")


def split_exitinfo2(exitinfo2: int) -> tuple[int, int]:
    """(fw_error, vmm_error) of an ``exitinfo2`` value."""
    return exitinfo2 & SNP_GUEST_FW_ERR_MASK, exitinfo2 >> SNP_GUEST_VMM_ERR_SHIFT


def pack_report_req(user_data: bytes, vmpl: int) -> bytes:
    return SNP_REPORT_REQ.pack(user_data, vmpl, bytes(28))


def pack_ext_report_req(user_data: bytes, vmpl: int, certs_address: int, certs_len: int) -> bytes:
    return SNP_EXT_REPORT_REQ.pack(pack_report_req(user_data, vmpl), certs_address, certs_len)


def unpack_ext_report_req(data: bytes) -> tuple[bytes, int, int]:
    """(snp_report_req bytes, certs_address, certs_len) of a ``struct snp_ext_report_req``."""
    req, address, length = SNP_EXT_REPORT_REQ.unpack(data)
    return req, address, length


def pack_guest_request(req_data: int, resp_data: int) -> bytearray:
    """A ``struct snp_guest_request_ioctl`` pointing at the request and response buffers."""
    return bytearray(SNP_GUEST_REQUEST_IOCTL.pack(SNP_MSG_VERSION, req_data, resp_data, 0))


def unpack_guest_request(data: bytes) -> tuple[int, int, int, int]:
    """(msg_version, req_data, resp_data, exitinfo2) of a ``struct snp_guest_request_ioctl``."""
    version, req, resp, exitinfo2 = SNP_GUEST_REQUEST_IOCTL.unpack(data)
    return version, req, resp, exitinfo2


def unpack_report_resp(data: bytes) -> tuple[int, int, bytes]:
    """(status, report_size, report) of the MSG_REPORT_RSP inside ``snp_report_resp.data``."""
    status, size, _ = MSG_REPORT_RSP_HEADER.unpack_from(data)
    start = MSG_REPORT_RSP_HEADER.size
    return status, size, bytes(data[start : start + min(size, SNP_REPORT_RESP_SIZE - start)])


def pack_report_resp(status: int, report: bytes) -> bytes:
    """A ``snp_report_resp.data`` holding a MSG_REPORT_RSP; what the firmware writes."""
    body = MSG_REPORT_RSP_HEADER.pack(status, len(report), bytes(24)) + report
    return body + bytes(SNP_REPORT_RESP_SIZE - len(body))
