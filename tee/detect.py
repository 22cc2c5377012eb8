"""Choose and open a TEE backend by name, or detect the hardware one.

Simulation is never a fallback: a simulated backend opens only when its name
(``simulated-tdx``, ``simulated-snp``) is asked for, and it says so in every
piece of evidence. ``auto`` looks for the guest devices of real hardware only
and refuses, with the places it looked, when it finds none or both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from attestd.tee.backend import TeeBackend, TeeType
from attestd.tee.errors import TeeUnavailableError

HARDWARE_BACKENDS = ("tdx", "sev-snp")
SIMULATED_BACKENDS = ("simulated-tdx", "simulated-snp")
#: Every backend name this build knows; the agent's config accepts exactly these.
BACKEND_NAMES = ("auto", *HARDWARE_BACKENDS, *SIMULATED_BACKENDS)


@dataclass(frozen=True)
class DetectionPaths:
    """Where the kernel shows a confidential guest; tests point these at a fake tree."""

    dev: Path = Path("/dev")
    misc: Path = Path("/sys/class/misc")
    tsm: Path = Path("/sys/kernel/config/tsm/report")

    def tdx_signs(self) -> list[Path]:
        return [self.dev / "tdx_guest", self.misc / "tdx_guest"]

    def snp_signs(self) -> list[Path]:
        return [self.dev / "sev-guest", self.misc / "sev-guest"]


def simulated_measurement_widths(name: str) -> Mapping[str, int | None]:
    """The measurements backend ``name`` lets a configuration impose, with their widths.

    Each width is in bytes, or None for an integer value. Only simulators take
    imposed measurements: any other name has none.
    """
    if name == "simulated-tdx":
        from attestd.tee.tdx.simulated import MEASUREMENT_WIDTHS as TDX_WIDTHS

        return TDX_WIDTHS
    if name == "simulated-snp":
        from attestd.tee.snp.simulated import MEASUREMENT_WIDTHS as SNP_WIDTHS

        return SNP_WIDTHS
    return {}


def detect_hardware(paths: DetectionPaths = DetectionPaths()) -> TeeType:
    """The TEE this machine is a guest of, from its guest devices; never a simulator."""
    tdx = any(p.exists() for p in paths.tdx_signs())
    snp = any(p.exists() for p in paths.snp_signs())
    if tdx and snp:
        raise TeeUnavailableError(
            "both TDX and SEV-SNP guest devices are present; name the backend "
            '([tee].backend = "tdx" or "sev-snp")'
        )
    if tdx:
        return TeeType.TDX
    if snp:
        return TeeType.SEV_SNP
    looked = ", ".join(str(p) for p in (*paths.tdx_signs(), *paths.snp_signs()))
    raise TeeUnavailableError(
        f"no TDX or SEV-SNP guest found (looked for {looked}); is this a confidential VM "
        "with the tdx_guest or sev-guest driver loaded? Simulation runs only when asked "
        "for by name: --tee simulated-tdx or --tee simulated-snp"
    )


def open_backend(
    name: str,
    state_dir: Path,
    *,
    simulated_measurements: Mapping[str, object] | None = None,
    paths: DetectionPaths = DetectionPaths(),
    vmpl: int = 0,
) -> TeeBackend:
    """Open the backend called ``name``, keeping any simulator state under ``state_dir``."""
    if name == "auto":
        name = "tdx" if detect_hardware(paths) is TeeType.TDX else "sev-snp"
    if name == "tdx":
        from attestd.tee.tdx.client import TdxGuestBackend

        return TdxGuestBackend.open(tsm_root=paths.tsm)
    if name == "sev-snp":
        from attestd.tee.snp.client import SnpGuestBackend

        return SnpGuestBackend.open(tsm_root=paths.tsm, vmpl=vmpl)
    if name == "simulated-tdx":
        from attestd.tee.tdx.simulated import SimulatedTdMeasurements, SimulatedTdxBackend

        tdx_values = dict(simulated_measurements or {})
        return SimulatedTdxBackend.open(state_dir, SimulatedTdMeasurements(**tdx_values))  # type: ignore[arg-type]
    if name == "simulated-snp":
        from attestd.tee.snp.simulated import SimulatedSnpBackend, SimulatedSnpMeasurements

        snp_values = dict(simulated_measurements or {})
        return SimulatedSnpBackend.open(state_dir, SimulatedSnpMeasurements(**snp_values))  # type: ignore[arg-type]
    raise TeeUnavailableError(
        f"unknown TEE backend {name!r}; this build offers: {', '.join(BACKEND_NAMES)}"
    )
