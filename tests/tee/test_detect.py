"""Backend choice: hardware detection never falls back to a simulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from attestd.tee.backend import TeeType
from attestd.tee.detect import (
    DetectionPaths,
    detect_hardware,
    open_backend,
    simulated_measurement_widths,
)
from attestd.tee.errors import TeeUnavailableError


@pytest.fixture
def paths(tmp_path: Path) -> DetectionPaths:
    for sub in ("dev", "misc", "tsm"):
        (tmp_path / sub).mkdir()
    return DetectionPaths(dev=tmp_path / "dev", misc=tmp_path / "misc", tsm=tmp_path / "tsm")


def test_no_guest_device_is_refused_and_names_simulation(paths: DetectionPaths) -> None:
    with pytest.raises(TeeUnavailableError) as refused:
        detect_hardware(paths)
    assert "tdx_guest" in str(refused.value)
    assert "--tee simulated-tdx" in str(refused.value)


def test_auto_never_opens_a_simulator(paths: DetectionPaths, tmp_path: Path) -> None:
    with pytest.raises(TeeUnavailableError):
        open_backend("auto", tmp_path / "state", paths=paths)
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize(
    ("device", "tee"),
    [
        ("dev/tdx_guest", TeeType.TDX),
        ("misc/tdx_guest", TeeType.TDX),
        ("dev/sev-guest", TeeType.SEV_SNP),
        ("misc/sev-guest", TeeType.SEV_SNP),
    ],
)
def test_guest_devices_name_their_tee(
    paths: DetectionPaths, tmp_path: Path, device: str, tee: TeeType
) -> None:
    (tmp_path / device).touch()
    assert detect_hardware(paths) is tee


def test_both_guest_devices_are_ambiguous(paths: DetectionPaths, tmp_path: Path) -> None:
    (tmp_path / "dev" / "tdx_guest").touch()
    (tmp_path / "dev" / "sev-guest").touch()
    with pytest.raises(TeeUnavailableError, match="both"):
        detect_hardware(paths)


def test_unknown_backend_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TeeUnavailableError, match="unknown TEE backend"):
        open_backend("sgx", tmp_path)


@pytest.mark.parametrize("name", ["simulated-tdx", "simulated-snp"])
def test_simulated_backends_open_by_name_and_say_so(name: str, tmp_path: Path) -> None:
    backend = open_backend(name, tmp_path)
    description = backend.describe()
    assert description.simulated
    assert description.backend == name


def test_simulated_measurement_widths_are_what_the_simulators_accept() -> None:
    from attestd.tee.errors import InvalidArgumentError
    from attestd.tee.snp.simulated import SimulatedSnpMeasurements
    from attestd.tee.tdx.simulated import SimulatedTdMeasurements

    tdx = simulated_measurement_widths("simulated-tdx")
    assert tdx["mr_td"] == 48 and tdx["td_attributes"] == 8 and "rtmr3" not in tdx
    snp = simulated_measurement_widths("simulated-snp")
    assert snp["host_data"] == 32 and snp["policy"] is None
    assert simulated_measurement_widths("tdx") == simulated_measurement_widths("auto") == {}
    kinds = ((tdx, SimulatedTdMeasurements), (snp, SimulatedSnpMeasurements))
    for widths, measurements in kinds:
        for name, width in widths.items():
            if width is None:
                continue
            measurements(**{name: bytes(width)})  # type: ignore[arg-type]
            with pytest.raises(InvalidArgumentError):
                measurements(**{name: bytes(width + 1)})  # type: ignore[arg-type]
