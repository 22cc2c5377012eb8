"""Exceptions of GPU hashing.

A GPU measurement that cannot run on a GPU raises :class:`GpuUnavailableError`;
nothing in this package falls back to hashing on the CPU, because a caller who
asked for a GPU measurement of device memory would otherwise be told a digest
of something else (or wait an hour for one).
"""

from __future__ import annotations

from typing import Literal

from attestd.agent.artifacts.errors import ArtifactError
from attestd.errors import AttestdError

Missing = Literal["cupy", "device", "driver", "kernel"]


class GpuError(AttestdError):
    """GPU hashing failed or was refused."""

    reason = "gpu_error"


class GpuUnavailableError(GpuError):
    """No usable GPU: ``missing`` says what is missing (cupy, device, driver or kernel)."""

    reason = "gpu_unavailable"

    def __init__(self, missing: Missing, message: str) -> None:
        super().__init__(f"GPU hashing is unavailable: {message}")
        self.missing: Missing = missing


class GpuInputError(GpuError, ArtifactError):
    """A buffer cannot be hashed as given (not contiguous, out of range, another device)."""

    reason = "gpu_input_invalid"
