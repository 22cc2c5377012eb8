"""Choose and open a TEE backend by name.

Simulation is never a fallback: a simulated backend opens only when its name
(``simulated-tdx``) is asked for, and it says so in every quote's description.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from attestd.tee.backend import TeeBackend
from attestd.tee.errors import TeeUnavailableError

#: Every backend name this build knows; the agent's config accepts exactly these.
BACKEND_NAMES = ("simulated-tdx",)


def open_backend(
    name: str, state_dir: Path, *, simulated_measurements: Mapping[str, bytes] | None = None
) -> TeeBackend:
    """Open the backend called ``name``, keeping its state under ``state_dir``."""
    if name == "simulated-tdx":
        from attestd.tee.tdx.simulated import SimulatedTdMeasurements, SimulatedTdxBackend

        measurements = SimulatedTdMeasurements(**dict(simulated_measurements or {}))
        return SimulatedTdxBackend.open(state_dir, measurements)
    raise TeeUnavailableError(
        f"unknown TEE backend {name!r}; this build offers: {', '.join(BACKEND_NAMES)}"
    )
