"""The Linux TDX guest driver's binary interface: ioctl numbers and struct layouts, no I/O.

From include/uapi/linux/tdx-guest.h (Linux 6.2+)::

    #define TDX_REPORTDATA_LEN 64
    #define TDX_REPORT_LEN     1024
    struct tdx_report_req {
        __u8 reportdata[TDX_REPORTDATA_LEN];
        __u8 tdreport[TDX_REPORT_LEN];
    };
    #define TDX_CMD_GET_REPORT0 _IOWR('T', 1, struct tdx_report_req)

The device is ``/dev/tdx_guest``. The measurement registers are files under
``/sys/devices/virtual/misc/tdx_guest/measurements`` (Documentation/ABI/testing/
sysfs-devices-virtual-misc-tdx_guest, Linux 6.16+): ``rtmr{0..3}:sha384`` read
as 48 raw bytes, and a 48-byte write extends the register.
"""

from __future__ import annotations

import struct

from attestd.tee._linux import iowr as iowr

TDX_REPORTDATA_LEN = 64
TDX_REPORT_LEN = 1024

# struct tdx_report_req: two byte arrays, no padding.
TDX_REPORT_REQ = struct.Struct(f"<{TDX_REPORTDATA_LEN}s{TDX_REPORT_LEN}s")

TDX_CMD_GET_REPORT0 = iowr("T", 1, TDX_REPORT_REQ.size)  # 0xC4405401

# TDREPORT_STRUCT (Intel TDX Module ABI): REPORTMACSTRUCT (256 bytes), TEE_TCB_INFO
# (239), reserved (17), TDINFO (512). Only the fields the client checks are named.
TDREPORT_TYPE_OFFSET = 0  # REPORTMACSTRUCT.REPORTTYPE.TYPE: 0x81 for TDX
TDREPORT_TYPE_TDX = 0x81
TDREPORT_REPORTDATA_OFFSET = 128  # REPORTMACSTRUCT.REPORTDATA
TDREPORT_RTMR_OFFSET = 720  # TDINFO.RTMR[0..3], 48 bytes each (rtmr.RTMR_SIZE)

#: The RTMRs a guest's software may extend; 0 and 1 hold the firmware's and boot loader's.
GUEST_EXTENDABLE_RTMRS = (2, 3)


def rtmr_file(index: int) -> str:
    """The sysfs file name of RTMR[index] (its hash algorithm is part of the name)."""
    return f"rtmr{index}:sha384"


def pack_report_req(report_data: bytes) -> bytearray:
    """A ``struct tdx_report_req`` with ``reportdata`` set and ``tdreport`` zeroed."""
    return bytearray(TDX_REPORT_REQ.pack(report_data, bytes(TDX_REPORT_LEN)))


def unpack_tdreport(buffer: bytes) -> bytes:
    """The ``tdreport`` member of a ``struct tdx_report_req``."""
    return TDX_REPORT_REQ.unpack(buffer)[1]  # type: ignore[no-any-return]
