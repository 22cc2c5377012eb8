"""The real TDX quotes in ../shared/vectors/tdx, and a simulated TD shared by a session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from attestd.tee.tdx.simulated import SimulatedTdxBackend

#: A moment at which every real PCK chain in the vectors is valid (see their README).
VECTORS_NOW = datetime(2025, 6, 23, tzinfo=UTC)
REAL_QUOTE_FILES = ("dcapqvl_quote_v4.bin", "spr_e4_quote_v4.bin", "cos113_quote_v4_padded.bin")


@dataclass(frozen=True)
class RealQuote:
    name: str
    raw: bytes  # the file as published, padding or trailing text included

    @property
    def length(self) -> int:
        """The quote's own length from its signature-data length field (v4: at 0x278)."""
        return 0x27C + int.from_bytes(self.raw[0x278:0x27C], "little")

    @property
    def quote(self) -> bytes:
        return self.raw[: self.length]


@pytest.fixture(scope="session", params=REAL_QUOTE_FILES)
def real_quote(request: pytest.FixtureRequest, vectors_dir: Path) -> RealQuote:
    name: str = request.param
    return RealQuote(name, (vectors_dir / "tdx" / name).read_bytes())


@pytest.fixture(scope="session")
def real_quotes(vectors_dir: Path) -> list[RealQuote]:
    return [RealQuote(n, (vectors_dir / "tdx" / n).read_bytes()) for n in REAL_QUOTE_FILES]


@pytest.fixture(scope="session")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> SimulatedTdxBackend:
    """One simulated TD for tests that only read from it."""
    return SimulatedTdxBackend.open(tmp_path_factory.mktemp("sim-state"))
