"""The long-fuzzing targets (fuzz/targets.py) and their seeds stay runnable: no atheris needed.

Each target's check runs over every seed fuzz/seeds.py generates (real vectors,
simulator output, example files), then over a few hundred seeded mutations of
them. A target whose seeds no longer parse, or whose parser lets an untyped
exception out, fails here before a long run is wasted on it.
"""

from __future__ import annotations

import random
import struct
import traceback
from pathlib import Path

import pytest

from attestd.tee.errors import QuoteFormatError
from attestd.tee.snp.abi import CERT_TABLE_ENTRY_SIZE, parse_cert_table
from fuzz.fuzz_parsers import _mutate
from fuzz.seeds import generate
from fuzz.targets import TARGET_NAMES, Target, make_targets

pytestmark = pytest.mark.filterwarnings(
    "ignore:Parsed a serial number:cryptography.utils.CryptographyDeprecationWarning"
)

MUTATIONS = 300
SEED = 0xF022


@pytest.fixture(scope="module")
def seeds(vectors_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("seeds")
    counts = generate(out, vectors_dir)
    assert set(counts) == set(TARGET_NAMES)
    assert all(counts.values()), counts
    return out


@pytest.fixture(scope="module")
def targets(seeds: Path) -> dict[str, Target]:
    return make_targets(seeds / "files")


def _outcome(target: Target, data: bytes) -> str | None:
    """None if the parser accepted ``data``, "refused" for its own error, else the traceback."""
    try:
        target.check(data)
    except target.allowed:
        return "refused"
    except Exception:
        return traceback.format_exc()
    return None


def test_every_parser_of_outside_bytes_has_a_target() -> None:
    assert set(TARGET_NAMES) == {
        "tdx_quote", "ccel_table", "ccel_log", "snp_report", "snp_cert_table", "dcap_collateral",
        "evidence_envelope", "evidence_statement", "stage_attestation", "stage_provenance",
        "ear_token", "ear_claims", "agent_config", "policy", "layout",
    }  # fmt: skip


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_seeds_parse_and_mutants_raise_only_documented_errors(
    seeds: Path, targets: dict[str, Target], name: str
) -> None:
    target = targets[name]
    corpus = [p.read_bytes() for p in sorted((seeds / name).iterdir())]
    outcomes = [_outcome(target, data) for data in corpus]
    untyped = [o for o in outcomes if o not in (None, "refused")]
    assert not untyped, untyped[0]
    assert None in outcomes, f"no seed of {name} parses: the target starts nowhere deep"
    rng = random.Random(SEED)
    for _ in range(MUTATIONS):
        data = _mutate(rng, corpus)
        outcome = _outcome(target, data)
        assert outcome in (None, "refused"), f"input {data[:300]!r}...\n{outcome}"


def test_a_cert_table_entry_with_the_all_zero_guid_is_refused() -> None:
    # Found by the snp_cert_table target: a zero-GUID entry with an offset was taken as a
    # certificate named 00000000-..., which no table can be rebuilt with.
    entry = struct.Struct("<16sII")
    header_end = 2 * CERT_TABLE_ENTRY_SIZE
    table = entry.pack(bytes(16), header_end, 2) + bytes(CERT_TABLE_ENTRY_SIZE) + b"\n\n"
    with pytest.raises(QuoteFormatError, match="all-zero GUID"):
        parse_cert_table(table)
