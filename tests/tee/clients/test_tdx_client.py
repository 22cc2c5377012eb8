"""The TDX guest backend over fakes of configfs-tsm, the sysfs measurements and /dev/tdx_guest."""

from __future__ import annotations

import errno
import hashlib
from pathlib import Path

import pytest

from attestd.tee.backend import Ccel, TeeBackend, TeeDescription, TeeType
from attestd.tee.errors import DeviceError, InvalidArgumentError, TeeUnavailableError
from attestd.tee.tdx import linuxabi
from attestd.tee.tdx.abi import parse_quote
from attestd.tee.tdx.client import (
    RtmrUnavailableError,
    TdxGuestBackend,
    TdxQuoteUnavailableError,
)
from attestd.tee.tsm import TsmProviderMismatchError
from tests.fakes.configfs_tsm import FakeConfigfsTsm
from tests.fakes.devices import FakeTdxGuestDevice
from tests.fakes.tdx_sysfs import FakeTdxSysfs

NONCE = hashlib.sha512(b"nonce").digest()
DIGEST = hashlib.sha384(b"event").digest()


def open_tdx(
    tsm: FakeConfigfsTsm,
    sysfs: FakeTdxSysfs | None,
    *,
    sysfs_roots: tuple[Path, ...] | None = None,
    device: Path | None = None,
    ioctl: FakeTdxGuestDevice | None = None,
) -> TdxGuestBackend:
    roots = sysfs_roots if sysfs_roots is not None else ((sysfs.root,) if sysfs else ())
    return TdxGuestBackend.open(
        tsm_root=tsm.root,
        sysfs_roots=roots,
        device=device if device is not None else tsm.root.parent / "no-such-device",
        tsm_filesystem=tsm,
        sysfs=sysfs,
        ioctl=ioctl or FakeTdxGuestDevice(),
    )


@pytest.fixture
def absent_tsm(tmp_path: Path) -> FakeConfigfsTsm:
    """A kernel without configfs-tsm (before Linux 6.7)."""
    return FakeConfigfsTsm(
        tmp_path / "no-tsm",
        provider="tdx_guest",
        make_report=lambda i, p: (i, None),
        create_root=False,
    )


def test_configfs_backend_describes_real_tdx(
    tdx_tsm: FakeConfigfsTsm, tdx_sysfs: FakeTdxSysfs
) -> None:
    backend = open_tdx(tdx_tsm, tdx_sysfs)
    assert isinstance(backend, TeeBackend)
    assert backend.describe() == TeeDescription(
        tee=TeeType.TDX,
        simulated=False,
        root_of_trust="intel-sgx-root-ca",
        backend="tdx-configfs-tsm",
    )
    assert tdx_tsm.live_entries() == []  # the provider probe cleaned up too


def test_quote_comes_from_configfs_tsm_over_the_report_data(
    tdx_tsm: FakeConfigfsTsm, tdx_sysfs: FakeTdxSysfs
) -> None:
    quote = open_tdx(tdx_tsm, tdx_sysfs).get_quote(NONCE)
    assert parse_quote(quote).body.report_data == NONCE
    assert tdx_tsm.inblobs == [NONCE]
    assert tdx_tsm.live_entries() == []


@pytest.mark.parametrize("report_data", [bytes(32), bytes(65), b""])
def test_quote_needs_64_bytes_of_report_data(
    tdx_tsm: FakeConfigfsTsm, tdx_sysfs: FakeTdxSysfs, report_data: bytes
) -> None:
    with pytest.raises(InvalidArgumentError):
        open_tdx(tdx_tsm, tdx_sysfs).get_quote(report_data)


def test_runtime_register_is_rtmr3_and_extends_by_sha384_of_old_and_digest(
    tdx_tsm: FakeConfigfsTsm, tdx_sysfs: FakeTdxSysfs
) -> None:
    backend = open_tdx(tdx_tsm, tdx_sysfs)
    before = backend.read_runtime_register()
    assert before == tdx_sysfs.value(3)

    backend.extend_runtime_register(DIGEST)

    assert backend.read_runtime_register() == hashlib.sha384(before + DIGEST).digest()
    assert tdx_sysfs.extensions == [("rtmr3:sha384", DIGEST)]


def test_rtmrs_reads_all_four(tdx_tsm: FakeConfigfsTsm, tdx_sysfs: FakeTdxSysfs) -> None:
    backend = open_tdx(tdx_tsm, tdx_sysfs)
    assert backend.rtmrs() == tuple(tdx_sysfs.value(i) for i in range(4))


def test_rtmr2_is_extendable(tdx_tsm: FakeConfigfsTsm, tdx_sysfs: FakeTdxSysfs) -> None:
    backend = open_tdx(tdx_tsm, tdx_sysfs)
    old = backend.rtmrs()
    backend.extend_rtmr(2, DIGEST)
    assert backend.rtmrs() == (old[0], old[1], hashlib.sha384(old[2] + DIGEST).digest(), old[3])


@pytest.mark.parametrize("index", [0, 1])
def test_firmware_rtmrs_are_refused_before_any_write(
    tdx_tsm: FakeConfigfsTsm, tdx_sysfs: FakeTdxSysfs, index: int
) -> None:
    backend = open_tdx(tdx_tsm, tdx_sysfs)
    with pytest.raises(InvalidArgumentError, match="only RTMR2 and RTMR3"):
        backend.extend_rtmr(index, DIGEST)
    assert tdx_sysfs.extensions == []


@pytest.mark.parametrize("index", [-1, 4])
def test_rtmr_index_out_of_range_is_refused(
    tdx_tsm: FakeConfigfsTsm, tdx_sysfs: FakeTdxSysfs, index: int
) -> None:
    with pytest.raises(InvalidArgumentError):
        open_tdx(tdx_tsm, tdx_sysfs).extend_rtmr(index, DIGEST)


@pytest.mark.parametrize("digest", [bytes(32), bytes(49), hashlib.sha512().digest()])
def test_extension_must_be_a_sha384_digest(
    tdx_tsm: FakeConfigfsTsm, tdx_sysfs: FakeTdxSysfs, digest: bytes
) -> None:
    with pytest.raises(InvalidArgumentError, match="48-byte"):
        open_tdx(tdx_tsm, tdx_sysfs).extend_runtime_register(digest)
    assert tdx_sysfs.extensions == []


def test_second_sysfs_root_is_used_when_the_first_is_absent(
    tdx_tsm: FakeConfigfsTsm, tmp_path: Path
) -> None:
    sysfs = FakeTdxSysfs(tmp_path / "sys/class/misc/tdx_guest")
    roots = (tmp_path / "sys/devices/virtual/misc/tdx_guest", sysfs.root)
    backend = open_tdx(tdx_tsm, sysfs, sysfs_roots=roots)
    assert backend.measurements_directory == sysfs.root / "measurements"
    assert backend.read_runtime_register() == sysfs.value(3)


def test_first_sysfs_root_wins_when_both_exist(tdx_tsm: FakeConfigfsTsm, tmp_path: Path) -> None:
    first = FakeTdxSysfs(tmp_path / "first")
    second = FakeTdxSysfs(tmp_path / "second", initial=(bytes(48),) * 4)
    backend = open_tdx(tdx_tsm, first, sysfs_roots=(first.root, second.root))
    assert backend.measurements_directory == first.root / "measurements"


def test_without_sysfs_measurements_rtmrs_are_unavailable_but_quotes_work(
    tdx_tsm: FakeConfigfsTsm,
) -> None:
    backend = open_tdx(tdx_tsm, None)
    assert backend.measurements_directory is None
    with pytest.raises(RtmrUnavailableError, match=r"Linux 6\.16"):
        backend.read_runtime_register()
    with pytest.raises(RtmrUnavailableError):
        backend.extend_runtime_register(DIGEST)
    assert parse_quote(backend.get_quote(NONCE)).body.report_data == NONCE


def test_sysfs_permission_denied_names_read_write_paths(
    tdx_tsm: FakeConfigfsTsm, tdx_sysfs: FakeTdxSysfs
) -> None:
    tdx_sysfs.errors["write:rtmr3:sha384"] = errno.EACCES
    with pytest.raises(DeviceError, match="ReadWritePaths=") as caught:
        open_tdx(tdx_tsm, tdx_sysfs).extend_runtime_register(DIGEST)
    assert str(tdx_sysfs.measurements) in str(caught.value)


def test_a_register_of_the_wrong_size_is_a_device_error(
    tdx_tsm: FakeConfigfsTsm, tdx_sysfs: FakeTdxSysfs
) -> None:
    (tdx_sysfs.measurements / "rtmr3:sha384").write_bytes(bytes(32))
    with pytest.raises(DeviceError, match="32 bytes, not 48"):
        open_tdx(tdx_tsm, tdx_sysfs).read_runtime_register()


def test_sysfs_einval_is_explained(tdx_tsm: FakeConfigfsTsm, tdx_sysfs: FakeTdxSysfs) -> None:
    tdx_sysfs.errors["write:rtmr3:sha384"] = errno.EINVAL
    with pytest.raises(DeviceError, match="EINVAL"):
        open_tdx(tdx_tsm, tdx_sysfs).extend_runtime_register(DIGEST)


# -- the legacy device -----------------------------------------------------------


def test_without_configfs_tsm_the_legacy_device_is_used(
    absent_tsm: FakeConfigfsTsm, tdx_sysfs: FakeTdxSysfs, device_node: Path
) -> None:
    backend = open_tdx(absent_tsm, tdx_sysfs, device=device_node)
    assert backend.describe().backend == "tdx-legacy-ioctl"
    assert backend.describe().root_of_trust == "intel-sgx-root-ca"


def test_legacy_get_quote_explains_that_a_quote_needs_configfs_tsm_and_a_qgs(
    absent_tsm: FakeConfigfsTsm, device_node: Path
) -> None:
    backend = open_tdx(absent_tsm, None, device=device_node)
    with pytest.raises(TdxQuoteUnavailableError) as caught:
        backend.get_quote(NONCE)
    message = str(caught.value)
    assert "configfs-tsm (Linux 6.7+)" in message
    assert "QGS" in message
    assert "get_td_report" in message
    assert isinstance(caught.value, TeeUnavailableError)


def test_legacy_td_report_comes_from_the_get_report0_ioctl(
    absent_tsm: FakeConfigfsTsm, device_node: Path
) -> None:
    rtmrs = tuple(hashlib.sha384(bytes([i])).digest() for i in range(4))
    device = FakeTdxGuestDevice(rtmrs=lambda: rtmrs)
    backend = open_tdx(absent_tsm, None, device=device_node, ioctl=device)

    report = backend.get_td_report(NONCE)

    assert len(report) == 1024
    assert report[0] == 0x81
    assert report[128:192] == NONCE
    assert report[720:912] == b"".join(rtmrs)
    assert device.calls == [0xC4405401]


def test_td_report_is_available_beside_configfs_tsm(
    tdx_tsm: FakeConfigfsTsm, tdx_sysfs: FakeTdxSysfs, device_node: Path
) -> None:
    backend = open_tdx(tdx_tsm, tdx_sysfs, device=device_node)
    assert backend.describe().backend == "tdx-configfs-tsm"
    assert backend.get_td_report(NONCE)[128:192] == NONCE


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (errno.EACCES, "DeviceAllow="),
        (errno.EPERM, "DeviceAllow="),
        (errno.ENOTTY, "ENOTTY"),
        (errno.EIO, "TDG.MR.REPORT"),
        (errno.EFAULT, "errno 14"),
    ],
)
def test_legacy_ioctl_errors_are_explained(
    absent_tsm: FakeConfigfsTsm, device_node: Path, code: int, text: str
) -> None:
    backend = open_tdx(
        absent_tsm, None, device=device_node, ioctl=FakeTdxGuestDevice(fail_errno=code)
    )
    with pytest.raises(DeviceError, match=text):
        backend.get_td_report(NONCE)


def test_a_vanished_device_is_unavailable(absent_tsm: FakeConfigfsTsm, device_node: Path) -> None:
    device = FakeTdxGuestDevice(fail_errno=errno.ENOENT)
    backend = open_tdx(absent_tsm, None, device=device_node, ioctl=device)
    with pytest.raises(TeeUnavailableError, match="tdx_guest module"):
        backend.get_td_report(NONCE)


def test_a_report_that_is_not_tdx_is_refused(
    absent_tsm: FakeConfigfsTsm, device_node: Path
) -> None:
    def sgx_device(device: Path, request: int, buffer: bytearray) -> None:
        FakeTdxGuestDevice()(device, request, buffer)
        buffer[64] = 0x00  # REPORTTYPE.TYPE 0: SGX

    backend = TdxGuestBackend.open(
        tsm_root=absent_tsm.root,
        sysfs_roots=(),
        device=device_node,
        tsm_filesystem=absent_tsm,
        ioctl=sgx_device,
    )
    with pytest.raises(DeviceError, match="not TDX"):
        backend.get_td_report(NONCE)


def test_a_report_over_other_data_is_refused(
    absent_tsm: FakeConfigfsTsm, device_node: Path
) -> None:
    def confused_device(device: Path, request: int, buffer: bytearray) -> None:
        buffer[:64] = bytes(64)
        FakeTdxGuestDevice()(device, request, buffer)

    backend = TdxGuestBackend.open(
        tsm_root=absent_tsm.root,
        sysfs_roots=(),
        device=device_node,
        tsm_filesystem=absent_tsm,
        ioctl=confused_device,
    )
    with pytest.raises(DeviceError, match="other report data"):
        backend.get_td_report(NONCE)


# -- choosing the interface ------------------------------------------------------


def test_no_interface_at_all_is_unavailable(absent_tsm: FakeConfigfsTsm, tmp_path: Path) -> None:
    with pytest.raises(TeeUnavailableError, match="no TDX guest interface"):
        open_tdx(absent_tsm, None, device=tmp_path / "dev" / "tdx_guest")


def test_an_sev_provider_is_not_a_tdx_guest(snp_tsm: FakeConfigfsTsm, device_node: Path) -> None:
    with pytest.raises(TsmProviderMismatchError, match="not a TDX guest"):
        open_tdx(snp_tsm, None, device=device_node)
    assert snp_tsm.live_entries() == []


def test_configfs_tsm_without_a_provider_falls_back_to_the_device(
    tdx_tsm: FakeConfigfsTsm, device_node: Path
) -> None:
    tdx_tsm.no_provider = True
    backend = open_tdx(tdx_tsm, None, device=device_node)
    assert backend.describe().backend == "tdx-legacy-ioctl"
    assert tdx_tsm.live_entries() == []


def test_configfs_tsm_permission_problems_are_not_hidden_by_the_fallback(
    tdx_tsm: FakeConfigfsTsm, device_node: Path
) -> None:
    tdx_tsm.errors["mkdir"] = errno.EACCES
    with pytest.raises(DeviceError, match="ReadWritePaths="):
        open_tdx(tdx_tsm, None, device=device_node)


def test_ioctl_number_and_struct_size_match_the_uapi_header() -> None:
    assert linuxabi.TDX_REPORT_REQ.size == 64 + 1024
    assert linuxabi.TDX_CMD_GET_REPORT0 == 0xC4405401


def test_the_real_ioctl_path_reaches_the_kernel(tmp_path: Path) -> None:
    """A regular file stands for the device: the kernel answers ENOTTY, as a wrong device would."""
    node = tmp_path / "tdx_guest"
    node.write_bytes(b"")
    backend = TdxGuestBackend.open(tsm_root=tmp_path / "no-tsm", sysfs_roots=(), device=node)
    with pytest.raises(DeviceError, match="ENOTTY"):
        backend.get_td_report(NONCE)


# -- attest ------------------------------------------------------------------------


def test_attest_carries_the_quote_and_the_machines_ccel(
    tdx_tsm: FakeConfigfsTsm, tdx_sysfs: FakeTdxSysfs, tmp_path: Path
) -> None:
    acpi = tmp_path / "acpi"
    (acpi / "data").mkdir(parents=True)
    (acpi / "CCEL").write_bytes(b"table")
    (acpi / "data" / "CCEL").write_bytes(b"log")
    backend = TdxGuestBackend.open(
        tsm_root=tdx_tsm.root,
        sysfs_roots=(tdx_sysfs.root,),
        device=tmp_path / "no-such-device",
        tsm_filesystem=tdx_tsm,
        sysfs=tdx_sysfs,
        acpi_tables=acpi,
    )
    attestation = backend.attest(NONCE)
    assert parse_quote(attestation.quote).body.report_data == NONCE
    assert attestation.ccel == Ccel(table=b"table", log=b"log")
    assert attestation.certificates == () and attestation.collateral is None


def test_attest_without_a_ccel_or_with_an_unreadable_one_carries_none(
    tdx_tsm: FakeConfigfsTsm, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def backend(acpi: Path) -> TdxGuestBackend:
        return TdxGuestBackend.open(
            tsm_root=tdx_tsm.root,
            sysfs_roots=(),
            device=tmp_path / "no-such-device",
            tsm_filesystem=tdx_tsm,
            acpi_tables=acpi,
        )

    assert backend(tmp_path / "no-acpi").attest(NONCE).ccel is None
    table_only = tmp_path / "table-only"
    table_only.mkdir()
    (table_only / "CCEL").write_bytes(b"table")  # its log is missing: a DeviceError, logged
    assert backend(table_only).attest(NONCE).ccel is None
    assert "cannot read the CC event log" in caplog.text
