"""What the simulated TEEs share: state directory, description and quote device.

    >>> class SimulatedTdxBackend(SimulatedGuest):
    ...     def __init__(self, directory: Path) -> None:
    ...         super().__init__(directory, TeeType.TDX, ROOT_OF_TRUST, BACKEND_NAME)
    ...     def get_quote(self, report_data: bytes) -> bytes:
    ...         return self._on_device(self._quote_now, report_data)  # one at a time per TEE
    >>> backend.set_quote_latency(20)                                 # each quote 20 ms more

Each simulator (``tee/tdx/simulated.py``, ``tee/snp/simulated.py``) builds its
own quote bytes; how a quote request waits is the same for both, and is here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from attestd.tee.backend import TeeDescription, TeeType
from attestd.tee.errors import InvalidArgumentError

_T = TypeVar("_T")

_DRIVER_LOCKS: dict[TeeType, threading.Lock] = {tee: threading.Lock() for tee in TeeType}
"""Serialize each TEE's simulated quotes in this process, as the guest driver's global lock
does configfs-tsm requests (one report at a time, each waiting for the host)."""


class SimulatedGuest:
    """The part of a simulated backend that is no TEE's own: its state, name and quote device."""

    def __init__(self, directory: Path, tee: TeeType, root_of_trust: str, backend: str) -> None:
        self._dir = directory
        self._lock = _DRIVER_LOCKS[tee]
        self._latency_s = 0.0
        self._description = TeeDescription(
            tee=tee, simulated=True, root_of_trust=root_of_trust, backend=backend
        )

    @property
    def state_directory(self) -> Path:
        return self._dir

    def describe(self) -> TeeDescription:
        return self._description

    def set_quote_latency(self, milliseconds: int) -> None:
        """Make each quote take ``milliseconds`` more, sleeping (not computing) under the
        simulated device's lock, like a configfs-tsm request waiting for the host."""
        if milliseconds < 0:
            raise InvalidArgumentError(f"quote latency must be >= 0 ms, not {milliseconds}")
        self._latency_s = milliseconds / 1000

    def _on_device(self, make: Callable[[bytes], _T], report_data: bytes) -> _T:
        """``make(report_data)`` under the device's lock; the latency is spent after it."""
        with self._lock:
            quoted = make(report_data)
            if self._latency_s:
                # Not sleep(0) without a latency: that drops and re-takes the GIL,
                # which under load waits up to a switch interval for nothing.
                time.sleep(self._latency_s)
        return quoted
