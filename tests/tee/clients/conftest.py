"""Fakes of the kernel's TEE interfaces, wired up for the client tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from attestd.tee.tdx.simulated import SimulatedTdxBackend
from tests.fakes.configfs_tsm import FakeConfigfsTsm
from tests.fakes.devices import VCEK_GUID, fake_snp_report, snp_cert_table
from tests.fakes.tdx_sysfs import FakeTdxSysfs

CERT_TABLE = snp_cert_table({VCEK_GUID: b"fake VCEK certificate"})


@pytest.fixture(scope="session")
def simulated_tdx(tmp_path_factory: pytest.TempPathFactory) -> SimulatedTdxBackend:
    """Makes the quotes the fake tdx_guest provider returns: real quote v4 bytes."""
    return SimulatedTdxBackend.open(tmp_path_factory.mktemp("sim-tdx"))


@pytest.fixture
def tsm_root(tmp_path: Path) -> Path:
    return tmp_path / "sys/kernel/config/tsm/report"


@pytest.fixture
def tdx_tsm(tsm_root: Path, simulated_tdx: SimulatedTdxBackend) -> FakeConfigfsTsm:
    return FakeConfigfsTsm(
        tsm_root,
        provider="tdx_guest",
        make_report=lambda inblob, _: (simulated_tdx.get_quote(inblob), None),
    )


@pytest.fixture
def snp_tsm(tsm_root: Path) -> FakeConfigfsTsm:
    return FakeConfigfsTsm(
        tsm_root,
        provider="sev_guest",
        make_report=lambda inblob, vmpl: (fake_snp_report(inblob, vmpl), CERT_TABLE),
    )


@pytest.fixture
def sysfs_root(tmp_path: Path) -> Path:
    return tmp_path / "sys/devices/virtual/misc/tdx_guest"


@pytest.fixture
def tdx_sysfs(sysfs_root: Path) -> FakeTdxSysfs:
    return FakeTdxSysfs(sysfs_root)


@pytest.fixture
def device_node(tmp_path: Path) -> Path:
    """Stands for the device node: the client checks it exists, the fake ioctl does the rest."""
    node = tmp_path / "dev" / "guest-device"
    node.parent.mkdir()
    node.touch()
    return node
