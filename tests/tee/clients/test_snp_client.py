"""The SEV-SNP guest backend over fakes of configfs-tsm and /dev/sev-guest."""

from __future__ import annotations

import errno
import hashlib
from pathlib import Path

import pytest

from attestd.tee.backend import TeeBackend, TeeDescription, TeeType
from attestd.tee.errors import DeviceError, InvalidArgumentError, TeeError, TeeUnavailableError
from attestd.tee.snp import linuxabi
from attestd.tee.snp.abi import build_cert_table
from attestd.tee.snp.client import (
    NoRuntimeRegisterError,
    SnpBusyError,
    SnpCertificateBufferError,
    SnpFirmwareError,
    SnpGuestBackend,
)
from attestd.tee.tsm import TsmProviderMismatchError
from tests.fakes.configfs_tsm import FakeConfigfsTsm
from tests.fakes.devices import (
    ARK_GUID,
    ASK_GUID,
    VCEK_GUID,
    FakeSevGuestDevice,
    fake_snp_report,
    snp_cert_table,
)

from .conftest import CERT_TABLE

NONCE = hashlib.sha512(b"nonce").digest()
BIG_TABLE = snp_cert_table({VCEK_GUID: b"v" * 1400, ASK_GUID: b"s" * 1700, ARK_GUID: b"r" * 1700})


def open_snp(
    tsm: FakeConfigfsTsm,
    *,
    device: Path | None = None,
    ioctl: FakeSevGuestDevice | None = None,
    vmpl: int = 0,
    certs_buffer_size: int = linuxabi.SEV_FW_BLOB_MAX_SIZE,
) -> SnpGuestBackend:
    return SnpGuestBackend.open(
        tsm_root=tsm.root,
        device=device if device is not None else tsm.root.parent / "no-such-device",
        vmpl=vmpl,
        tsm_filesystem=tsm,
        ioctl=ioctl or FakeSevGuestDevice(),
        certs_buffer_size=certs_buffer_size,
    )


@pytest.fixture
def absent_tsm(tmp_path: Path) -> FakeConfigfsTsm:
    return FakeConfigfsTsm(
        tmp_path / "no-tsm",
        provider="sev_guest",
        make_report=lambda i, p: (i, None),
        create_root=False,
    )


def report_data_of(report: bytes) -> bytes:
    return report[0x50:0x90]


# -- configfs-tsm ------------------------------------------------------------------


def test_configfs_backend_describes_real_snp(snp_tsm: FakeConfigfsTsm) -> None:
    backend = open_snp(snp_tsm)
    assert isinstance(backend, TeeBackend)
    assert backend.describe() == TeeDescription(
        tee=TeeType.SEV_SNP,
        simulated=False,
        root_of_trust="amd-ark",
        backend="sev-snp-configfs-tsm",
    )


def test_quote_is_the_1184_byte_report_over_the_report_data(snp_tsm: FakeConfigfsTsm) -> None:
    report = open_snp(snp_tsm).get_quote(NONCE)
    assert len(report) == 1184
    assert report_data_of(report) == NONCE
    assert snp_tsm.live_entries() == []


def test_vmpl_is_written_to_privlevel(snp_tsm: FakeConfigfsTsm) -> None:
    report = open_snp(snp_tsm, vmpl=2).get_quote(NONCE)
    assert int.from_bytes(report[0x30:0x34], "little") == 2


def test_certificates_come_from_the_auxblob_raw(snp_tsm: FakeConfigfsTsm) -> None:
    report, certs = open_snp(snp_tsm).get_report_with_certificates(NONCE)
    assert report_data_of(report) == NONCE
    assert certs == CERT_TABLE


def test_no_certificate_table_is_none(snp_tsm: FakeConfigfsTsm) -> None:
    snp_tsm.make_report = lambda inblob, vmpl: (fake_snp_report(inblob, vmpl), None)
    assert open_snp(snp_tsm).get_report_with_certificates(NONCE)[1] is None


def test_a_report_over_other_data_is_refused(snp_tsm: FakeConfigfsTsm) -> None:
    snp_tsm.make_report = lambda inblob, vmpl: (fake_snp_report(bytes(64), vmpl), None)
    with pytest.raises(DeviceError, match="other report data"):
        open_snp(snp_tsm).get_quote(NONCE)


def test_a_report_for_another_vmpl_is_refused(snp_tsm: FakeConfigfsTsm) -> None:
    snp_tsm.make_report = lambda inblob, vmpl: (fake_snp_report(inblob, 3), None)
    with pytest.raises(DeviceError, match="VMPL 3, not 0"):
        open_snp(snp_tsm).get_quote(NONCE)


def test_a_report_of_the_wrong_size_is_refused(snp_tsm: FakeConfigfsTsm) -> None:
    snp_tsm.make_report = lambda inblob, vmpl: (fake_snp_report(inblob, vmpl)[:1000], None)
    with pytest.raises(DeviceError, match="1184 bytes; got 1000"):
        open_snp(snp_tsm).get_quote(NONCE)


def test_snp_has_no_runtime_register(snp_tsm: FakeConfigfsTsm) -> None:
    backend = open_snp(snp_tsm)
    assert backend.read_runtime_register() is None
    with pytest.raises(NoRuntimeRegisterError, match="report_data") as caught:
        backend.extend_runtime_register(hashlib.sha384(b"event").digest())
    assert isinstance(caught.value, TeeError)
    assert caught.value.reason == "tee_no_runtime_register"


@pytest.mark.parametrize("report_data", [bytes(32), bytes(65)])
def test_report_data_must_be_64_bytes(snp_tsm: FakeConfigfsTsm, report_data: bytes) -> None:
    with pytest.raises(InvalidArgumentError):
        open_snp(snp_tsm).get_quote(report_data)


@pytest.mark.parametrize("vmpl", [-1, 4])
def test_vmpl_must_be_0_to_3(snp_tsm: FakeConfigfsTsm, vmpl: int) -> None:
    with pytest.raises(InvalidArgumentError, match="VMPL"):
        open_snp(snp_tsm, vmpl=vmpl)


def test_the_certificate_buffer_must_be_whole_pages(snp_tsm: FakeConfigfsTsm) -> None:
    with pytest.raises(InvalidArgumentError, match="pages"):
        open_snp(snp_tsm, certs_buffer_size=5000)


# -- the legacy device -------------------------------------------------------------


def test_without_configfs_tsm_the_legacy_device_is_used(
    absent_tsm: FakeConfigfsTsm, device_node: Path
) -> None:
    device = FakeSevGuestDevice()
    backend = open_snp(absent_tsm, device=device_node, ioctl=device)
    assert backend.describe().backend == "sev-snp-legacy-ioctl"

    report = backend.get_quote(NONCE)

    assert len(report) == 1184
    assert report_data_of(report) == NONCE
    assert device.calls == [0xC0205300]


def test_legacy_vmpl_reaches_the_firmware(absent_tsm: FakeConfigfsTsm, device_node: Path) -> None:
    report = open_snp(absent_tsm, device=device_node, vmpl=1).get_quote(NONCE)
    assert int.from_bytes(report[0x30:0x34], "little") == 1


def test_legacy_certificates_come_from_the_extended_report(
    absent_tsm: FakeConfigfsTsm, device_node: Path
) -> None:
    device = FakeSevGuestDevice(cert_table=CERT_TABLE)
    backend = open_snp(absent_tsm, device=device_node, ioctl=device)

    report, certs = backend.get_report_with_certificates(NONCE)

    assert report_data_of(report) == NONCE
    assert certs is not None
    assert len(certs) == linuxabi.SEV_FW_BLOB_MAX_SIZE
    assert certs.startswith(CERT_TABLE)
    assert device.calls == [0xC0205302]


def test_legacy_without_host_certificates_is_none(
    absent_tsm: FakeConfigfsTsm, device_node: Path
) -> None:
    backend = open_snp(absent_tsm, device=device_node, ioctl=FakeSevGuestDevice())
    assert backend.get_report_with_certificates(NONCE)[1] is None


def test_too_small_a_certificate_buffer_is_retried_with_the_size_the_host_asks(
    absent_tsm: FakeConfigfsTsm, device_node: Path
) -> None:
    device = FakeSevGuestDevice(cert_table=BIG_TABLE)
    assert len(BIG_TABLE) > linuxabi.PAGE_SIZE
    backend = open_snp(
        absent_tsm, device=device_node, ioctl=device, certs_buffer_size=linuxabi.PAGE_SIZE
    )

    report, certs = backend.get_report_with_certificates(NONCE)

    assert device.certs_lens == [4096, 8192]
    assert certs is not None and certs.startswith(BIG_TABLE)
    assert report_data_of(report) == NONCE


def test_a_host_asking_for_more_than_the_kernel_allows_is_refused(
    absent_tsm: FakeConfigfsTsm, device_node: Path
) -> None:
    device = FakeSevGuestDevice(cert_table=bytes([1]) * (linuxabi.SEV_FW_BLOB_MAX_SIZE + 1))
    backend = open_snp(absent_tsm, device=device_node, ioctl=device)
    with pytest.raises(SnpCertificateBufferError, match="at most 16384") as caught:
        backend.get_report_with_certificates(NONCE)
    assert caught.value.vmm_error == linuxabi.SNP_GUEST_VMM_ERR_INVALID_LEN
    assert device.certs_lens == [linuxabi.SEV_FW_BLOB_MAX_SIZE]


def test_a_busy_host_is_a_busy_error(absent_tsm: FakeConfigfsTsm, device_node: Path) -> None:
    backend = open_snp(absent_tsm, device=device_node, ioctl=FakeSevGuestDevice(busy=True))
    with pytest.raises(SnpBusyError, match="busy") as caught:
        backend.get_quote(NONCE)
    assert caught.value.vmm_error == linuxabi.SNP_GUEST_VMM_ERR_BUSY
    assert caught.value.reason == "snp_busy"


def test_a_firmware_error_names_the_code(absent_tsm: FakeConfigfsTsm, device_node: Path) -> None:
    device = FakeSevGuestDevice(fw_error=0x16)
    backend = open_snp(absent_tsm, device=device_node, ioctl=device)
    with pytest.raises(SnpFirmwareError, match="INVALID_PARAM") as caught:
        backend.get_report_with_certificates(NONCE)
    assert (caught.value.fw_error, caught.value.vmm_error) == (0x16, 0)


def test_a_vmpl_more_privileged_than_the_guest_is_explained(
    absent_tsm: FakeConfigfsTsm, device_node: Path
) -> None:
    device = FakeSevGuestDevice(guest_vmpl=2)
    backend = open_snp(absent_tsm, device=device_node, ioctl=device, vmpl=0)
    with pytest.raises(SnpFirmwareError, match="VMPL asked for below this guest's"):
        backend.get_quote(NONCE)


def test_a_firmware_report_of_the_wrong_size_is_refused(
    absent_tsm: FakeConfigfsTsm, device_node: Path
) -> None:
    device = FakeSevGuestDevice(report_size=1000)
    backend = open_snp(absent_tsm, device=device_node, ioctl=device)
    with pytest.raises(DeviceError, match="1000-byte report"):
        backend.get_quote(NONCE)


@pytest.mark.parametrize(
    ("code", "error", "text"),
    [
        (errno.EACCES, DeviceError, "DeviceAllow="),
        (errno.ENOTTY, DeviceError, "ENOTTY"),
        (errno.EINVAL, DeviceError, "EINVAL"),
        (errno.ENOENT, TeeUnavailableError, "sev-guest loaded"),
        (errno.EAGAIN, SnpBusyError, "busy"),
    ],
)
def test_legacy_ioctl_errors_are_explained(
    absent_tsm: FakeConfigfsTsm,
    device_node: Path,
    code: int,
    error: type[Exception],
    text: str,
) -> None:
    backend = open_snp(absent_tsm, device=device_node, ioctl=FakeSevGuestDevice(fail_errno=code))
    with pytest.raises(error, match=text):
        backend.get_quote(NONCE)


# -- choosing the interface --------------------------------------------------------


def test_no_interface_at_all_is_unavailable(absent_tsm: FakeConfigfsTsm, tmp_path: Path) -> None:
    with pytest.raises(TeeUnavailableError, match="no SEV-SNP guest interface"):
        open_snp(absent_tsm, device=tmp_path / "sev-guest")


def test_a_tdx_provider_is_not_an_snp_guest(tdx_tsm: FakeConfigfsTsm, device_node: Path) -> None:
    with pytest.raises(TsmProviderMismatchError, match="not an SEV-SNP guest"):
        open_snp(tdx_tsm, device=device_node)


def test_configfs_tsm_without_a_provider_falls_back_to_the_device(
    snp_tsm: FakeConfigfsTsm, device_node: Path
) -> None:
    snp_tsm.no_provider = True
    backend = open_snp(snp_tsm, device=device_node)
    assert backend.describe().backend == "sev-snp-legacy-ioctl"
    assert report_data_of(backend.get_quote(NONCE)) == NONCE


def test_the_real_ioctl_path_reaches_the_kernel(tmp_path: Path) -> None:
    """A regular file stands for the device: the kernel answers ENOTTY, as a wrong device would."""
    node = tmp_path / "sev-guest"
    node.write_bytes(b"")
    backend = SnpGuestBackend.open(tsm_root=tmp_path / "no-tsm", device=node)
    with pytest.raises(DeviceError, match="ENOTTY"):
        backend.get_quote(NONCE)


# -- attest ------------------------------------------------------------------------


def test_attest_gives_the_host_chain_signer_first(snp_tsm: FakeConfigfsTsm) -> None:
    # The table lists the ARK first; evidence carries VCEK, ASK, ARK whatever the host's order.
    table = build_cert_table({"ark": b"ark", "vcek": b"vcek", "ask": b"ask"})
    snp_tsm.make_report = lambda inblob, vmpl: (fake_snp_report(inblob, vmpl), table)
    attestation = open_snp(snp_tsm).attest(NONCE)
    assert report_data_of(attestation.quote) == NONCE
    assert attestation.certificates == (b"vcek", b"ask", b"ark")
    assert attestation.collateral is None and attestation.ccel is None


def test_attest_without_a_certificate_table_gives_no_certificates(
    snp_tsm: FakeConfigfsTsm,
) -> None:
    snp_tsm.make_report = lambda inblob, vmpl: (fake_snp_report(inblob, vmpl), None)
    assert open_snp(snp_tsm).attest(NONCE).certificates == ()
