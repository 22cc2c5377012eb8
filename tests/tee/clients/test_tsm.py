"""The configfs-tsm client against a fake of the kernel's report directory."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from attestd.tee.errors import DeviceError, InvalidArgumentError, TeeUnavailableError
from attestd.tee.tdx.abi import parse_quote
from attestd.tee.tsm import (
    OsFilesystem,
    TsmBusyError,
    TsmGenerationRaceError,
    TsmNoProviderError,
    TsmPermissionError,
    TsmProviderMismatchError,
    TsmReport,
    TsmReportClient,
    TsmUnavailableError,
)
from tests.fakes.configfs_tsm import ALWAYS, FakeConfigfsTsm

from .conftest import CERT_TABLE

NONCE = hashlib.sha512(b"nonce").digest()


def client(fake: FakeConfigfsTsm, **kwargs: int) -> TsmReportClient:
    return TsmReportClient(fake.root, filesystem=fake, **kwargs)


def test_tdx_report_is_a_quote_over_the_inblob_in_a_removed_entry(
    tdx_tsm: FakeConfigfsTsm,
) -> None:
    report = client(tdx_tsm).get_report(NONCE, expected_provider="tdx_guest")

    assert parse_quote(report.outblob).body.report_data == NONCE
    assert report.provider == "tdx_guest"
    assert report.generation == 1
    assert report.auxblob is None
    assert tdx_tsm.inblobs == [NONCE]
    assert len(tdx_tsm.created) == 1
    assert tdx_tsm.removed == tdx_tsm.created
    assert tdx_tsm.live_entries() == []
    assert list(tdx_tsm.root.iterdir()) == []


def test_entry_names_are_unique_and_name_the_process(tdx_tsm: FakeConfigfsTsm) -> None:
    c = client(tdx_tsm)
    c.get_report(NONCE, expected_provider="tdx_guest")
    c.get_report(NONCE, expected_provider="tdx_guest")

    names = [p.name for p in tdx_tsm.created]
    assert len(set(names)) == 2
    assert all(n.startswith(f"attestd-{os.getpid()}-") for n in names)


def test_snp_report_writes_privlevel_and_returns_the_auxblob(snp_tsm: FakeConfigfsTsm) -> None:
    report = client(snp_tsm).get_report(
        NONCE, expected_provider="sev_guest", privlevel=2, want_auxblob=True
    )

    assert report == TsmReport(report.outblob, CERT_TABLE, "sev_guest", 2)
    assert report.outblob[0x50:0x90] == NONCE
    assert int.from_bytes(report.outblob[0x30:0x34], "little") == 2
    assert snp_tsm.live_entries() == []


def test_auxblob_is_not_read_unless_wanted(snp_tsm: FakeConfigfsTsm) -> None:
    snp_tsm.errors["read:auxblob"] = errno.EIO
    report = client(snp_tsm).get_report(NONCE, expected_provider="sev_guest")
    assert report.auxblob is None


def test_an_empty_auxblob_is_none(snp_tsm: FakeConfigfsTsm) -> None:
    snp_tsm.make_report = lambda inblob, vmpl: (b"report", b"")
    report = client(snp_tsm).get_report(NONCE, expected_provider="sev_guest", want_auxblob=True)
    assert report.auxblob is None


def test_one_concurrent_write_is_retried_in_a_new_entry(tdx_tsm: FakeConfigfsTsm) -> None:
    tdx_tsm.concurrent_writes = 1

    report = client(tdx_tsm).get_report(NONCE, expected_provider="tdx_guest")

    assert parse_quote(report.outblob).body.report_data == NONCE
    assert len(tdx_tsm.created) == 2
    assert tdx_tsm.removed == tdx_tsm.created
    assert tdx_tsm.inblobs == [NONCE, NONCE]


def test_a_writer_that_always_races_is_refused_after_bounded_attempts(
    tdx_tsm: FakeConfigfsTsm,
) -> None:
    tdx_tsm.concurrent_writes = ALWAYS

    with pytest.raises(TsmGenerationRaceError) as caught:
        client(tdx_tsm).get_report(NONCE, expected_provider="tdx_guest")

    assert isinstance(caught.value, DeviceError)
    assert caught.value.reason == "tsm_generation_race"
    assert "3 attempts" in str(caught.value)
    assert "0->2" in str(caught.value)
    assert len(tdx_tsm.created) == 3
    assert tdx_tsm.live_entries() == []


def test_attempts_are_configurable(tdx_tsm: FakeConfigfsTsm) -> None:
    tdx_tsm.concurrent_writes = 1
    with pytest.raises(TsmGenerationRaceError, match="1 attempts"):
        client(tdx_tsm, attempts=1).get_report(NONCE, expected_provider="tdx_guest")
    assert tdx_tsm.live_entries() == []
    with pytest.raises(InvalidArgumentError):
        TsmReportClient(tdx_tsm.root, attempts=0)


def test_a_wrong_provider_is_unavailable_and_the_entry_removed(
    snp_tsm: FakeConfigfsTsm,
) -> None:
    with pytest.raises(TsmProviderMismatchError) as caught:
        client(snp_tsm).get_report(NONCE, expected_provider="tdx_guest")

    assert isinstance(caught.value, TeeUnavailableError)
    assert "'sev_guest'" in str(caught.value) and "'tdx_guest'" in str(caught.value)
    assert snp_tsm.inblobs == []
    assert snp_tsm.live_entries() == []


def test_a_missing_root_says_configfs_tsm_is_not_available(tmp_path: Path) -> None:
    fake = FakeConfigfsTsm(
        tmp_path / "absent",
        provider="tdx_guest",
        make_report=lambda i, p: (i, None),
        create_root=False,
    )
    c = client(fake)

    assert not c.available()
    with pytest.raises(TsmUnavailableError) as caught:
        c.get_report(NONCE, expected_provider="tdx_guest")
    assert isinstance(caught.value, TeeUnavailableError)
    assert "configfs-tsm not available" in str(caught.value)
    assert "is configfs mounted and the TSM module loaded?" in str(caught.value)


def test_the_real_filesystem_reports_a_missing_root_the_same_way(tmp_path: Path) -> None:
    with pytest.raises(TsmUnavailableError):
        TsmReportClient(tmp_path / "absent").get_report(NONCE, expected_provider="tdx_guest")


def test_permission_denied_names_the_units_read_write_paths(tdx_tsm: FakeConfigfsTsm) -> None:
    tdx_tsm.errors["mkdir"] = errno.EACCES
    with pytest.raises(TsmPermissionError) as caught:
        client(tdx_tsm).get_report(NONCE, expected_provider="tdx_guest")
    message = str(caught.value)
    assert "ReadWritePaths=" in message
    assert str(tdx_tsm.root) in message
    assert caught.value.reason == "tsm_permission_denied"


def test_eperm_on_inblob_is_a_permission_error_and_the_entry_is_removed(
    tdx_tsm: FakeConfigfsTsm,
) -> None:
    tdx_tsm.errors["write:inblob"] = errno.EPERM
    with pytest.raises(TsmPermissionError):
        client(tdx_tsm).get_report(NONCE, expected_provider="tdx_guest")
    assert tdx_tsm.live_entries() == []


def test_ebusy_is_a_busy_error_and_the_entry_is_removed(tdx_tsm: FakeConfigfsTsm) -> None:
    tdx_tsm.errors["write:inblob"] = errno.EBUSY
    with pytest.raises(TsmBusyError, match="busy"):
        client(tdx_tsm).get_report(NONCE, expected_provider="tdx_guest")
    assert tdx_tsm.live_entries() == []


def test_enxio_means_no_tee_driver_is_registered(tdx_tsm: FakeConfigfsTsm) -> None:
    tdx_tsm.no_provider = True
    with pytest.raises(TsmNoProviderError, match="tdx_guest or sev_guest module"):
        client(tdx_tsm).get_report(NONCE, expected_provider="tdx_guest")
    assert tdx_tsm.live_entries() == []


def test_einval_on_inblob_is_explained(tdx_tsm: FakeConfigfsTsm) -> None:
    tdx_tsm.errors["write:inblob"] = errno.EINVAL
    with pytest.raises(DeviceError, match="refused the 64-byte inblob"):
        client(tdx_tsm).get_report(NONCE, expected_provider="tdx_guest")


def test_a_privlevel_below_the_floor_is_explained(snp_tsm: FakeConfigfsTsm) -> None:
    snp_tsm.privlevel_floor = 2
    with pytest.raises(DeviceError, match="privlevel_floor"):
        client(snp_tsm).get_report(NONCE, expected_provider="sev_guest", privlevel=1)
    assert snp_tsm.live_entries() == []


def test_a_provider_without_privlevel_says_so(tdx_tsm: FakeConfigfsTsm) -> None:
    with pytest.raises(DeviceError, match="does not offer 'privlevel'"):
        client(tdx_tsm).get_report(NONCE, expected_provider="tdx_guest", privlevel=0)


def test_a_failed_outblob_read_points_at_the_quote_service(tdx_tsm: FakeConfigfsTsm) -> None:
    tdx_tsm.errors["read:outblob"] = errno.EIO
    with pytest.raises(DeviceError, match="QGS"):
        client(tdx_tsm).get_report(NONCE, expected_provider="tdx_guest")
    assert tdx_tsm.live_entries() == []


def test_an_oversized_report_is_efbig(tdx_tsm: FakeConfigfsTsm) -> None:
    tdx_tsm.errors["read:outblob"] = errno.EFBIG
    with pytest.raises(DeviceError, match="size limit"):
        client(tdx_tsm).get_report(NONCE, expected_provider="tdx_guest")


def test_a_failing_rmdir_does_not_hide_the_first_error(tdx_tsm: FakeConfigfsTsm) -> None:
    tdx_tsm.errors["write:inblob"] = errno.EBUSY
    tdx_tsm.errors["rmdir"] = errno.EACCES
    with pytest.raises(TsmBusyError):
        client(tdx_tsm).get_report(NONCE, expected_provider="tdx_guest")


def test_a_failing_rmdir_after_success_is_reported(tdx_tsm: FakeConfigfsTsm) -> None:
    tdx_tsm.errors["rmdir"] = errno.EBUSY
    with pytest.raises(DeviceError, match="cannot remove"):
        client(tdx_tsm).get_report(NONCE, expected_provider="tdx_guest")


@pytest.mark.parametrize("inblob", [b"", bytes(63), bytes(65), "x" * 64])
def test_inblob_must_be_64_bytes(tdx_tsm: FakeConfigfsTsm, inblob: bytes) -> None:
    with pytest.raises(InvalidArgumentError):
        client(tdx_tsm).get_report(inblob, expected_provider="tdx_guest")
    assert tdx_tsm.created == []


@pytest.mark.parametrize("privlevel", [-1, 4])
def test_privlevel_must_be_0_to_3(snp_tsm: FakeConfigfsTsm, privlevel: int) -> None:
    with pytest.raises(InvalidArgumentError):
        client(snp_tsm).get_report(NONCE, expected_provider="sev_guest", privlevel=privlevel)
    assert snp_tsm.created == []


def test_provider_reads_it_from_a_throwaway_entry(snp_tsm: FakeConfigfsTsm) -> None:
    assert client(snp_tsm).provider() == "sev_guest"
    assert snp_tsm.live_entries() == []


def test_provider_if_any_is_none_without_configfs_tsm_or_a_provider(
    tdx_tsm: FakeConfigfsTsm, tmp_path: Path
) -> None:
    assert client(tdx_tsm).provider_if_any() == "tdx_guest"
    assert TsmReportClient(tmp_path / "absent").provider_if_any() is None
    tdx_tsm.no_provider = True
    assert client(tdx_tsm).provider_if_any() is None
    assert tdx_tsm.live_entries() == []


def test_generation_that_is_not_a_number_is_a_device_error(tdx_tsm: FakeConfigfsTsm) -> None:
    class Garbled(FakeConfigfsTsm):
        def read(self, path: Path) -> bytes:
            return b"many\n" if path.name == "generation" else super().read(path)

    fake = Garbled(tdx_tsm.root, provider="tdx_guest", make_report=tdx_tsm.make_report)
    with pytest.raises(DeviceError, match="not a count"):
        client(fake).get_report(NONCE, expected_provider="tdx_guest")
    assert fake.live_entries() == []


def test_os_filesystem_does_plain_file_operations(tmp_path: Path) -> None:
    fs = OsFilesystem()
    entry = tmp_path / "entry"
    fs.mkdir(entry)
    assert fs.is_dir(entry)
    (entry / "inblob").touch()
    fs.write(entry / "inblob", NONCE)
    assert fs.read(entry / "inblob") == NONCE
    (entry / "inblob").unlink()
    fs.rmdir(entry)
    assert not entry.exists()
    with pytest.raises(FileNotFoundError):
        fs.write(entry / "inblob", NONCE)
