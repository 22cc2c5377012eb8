"""Whatever arrives as DCAP collateral or as evidence, the parser answers with a
value or with its own error, never a traceback.

Each test sends 100,000 inputs: a real document mutated by a seeded
random.Random, half of them as raw bytes (flips, truncations, insertions) and
half structurally (a value swapped for one of another type or size, a member
dropped or added, a nested document re-encoded), so both the JSON layer and
the validation behind it are exercised.
"""

from __future__ import annotations

import base64
import json
import random
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from attestd.evidence import EvidenceError, open_evidence
from attestd.tee.tdx.collateral import Collateral, CollateralError
from attestd.tee.tdx.simulated import SimulatedTdxBackend
from tests.verifier.simulated_evidence import make_scenario

# Mutated certificates may carry serial number 0, which cryptography warns about
# on load; that is the input being hostile, not attestd misbehaving.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Parsed a serial number:cryptography.utils.CryptographyDeprecationWarning"
)

INPUTS = 100_000
SEED = 0x5EED

_ODD_VALUES: tuple[object, ...] = (
    None, True, 0, -1, 2**64, 1.5, "", "x" * 70_000, "zz", "AAAA", "====", [], [None], {}, {"a": 1},
    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "00" * 33, "\u0000",
)  # fmt: skip


def _paths(value: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _mutate_structure(document: object, rng: random.Random) -> object:
    document = json.loads(json.dumps(document))
    path = rng.choice(_paths(document)[1:])
    parent: object = document
    for step in path[:-1]:
        parent = parent[step]  # type: ignore[index]
    key = path[-1]
    action = rng.randrange(4)
    if action == 0 and isinstance(parent, dict):
        del parent[key]
    elif action == 1 and isinstance(parent, dict):
        parent[f"extra{rng.randrange(9)}"] = rng.choice(_ODD_VALUES)
    elif action == 2 and isinstance(parent[key], str):  # type: ignore[index]
        text: str = parent[key]  # type: ignore[index]
        cut = rng.randrange(len(text) + 1)
        parent[key] = text[:cut] + rng.choice(["", "!", "0", "\\n", text[cut : cut + 8]])  # type: ignore[index]
    else:
        parent[key] = rng.choice(_ODD_VALUES)  # type: ignore[index]
    return document


def _mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    buffer = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(4)
        if choice == 0 and buffer:
            buffer[rng.randrange(len(buffer))] ^= 1 << rng.randrange(8)
        elif choice == 1 and buffer:
            del buffer[rng.randrange(len(buffer)) :]
        elif choice == 2:
            at = rng.randrange(len(buffer) + 1)
            buffer[at:at] = rng.choice([b"{", b"}", b'"', b"\\", b",", b"null", b"\xff", b"[[["])
        elif buffer:
            buffer[rng.randrange(len(buffer))] = rng.randrange(256)
    return bytes(buffer)


def _fuzz(
    seed_bytes: bytes,
    structured: Callable[[random.Random], bytes],
    parse: Callable[[bytes], object],
    allowed: type[Exception],
) -> int:
    rng = random.Random(SEED)
    accepted = 0
    for index in range(INPUTS):
        data = _mutate_bytes(seed_bytes, rng) if index % 2 else structured(rng)
        try:
            parse(data)
            accepted += 1
        except allowed:
            pass
        except Exception:
            pytest.fail(f"input {index} ({data[:200]!r}...) raised:\n{traceback.format_exc()}")
    return accepted


def test_collateral_parser_only_raises_collateral_errors(tmp_path: Path) -> None:
    text = SimulatedTdxBackend.open(tmp_path).collateral_json()
    document = json.loads(text)

    def structured(rng: random.Random) -> bytes:
        return json.dumps(_mutate_structure(document, rng)).encode()

    accepted = _fuzz(text.encode(), structured, Collateral.from_json, CollateralError)
    assert accepted < INPUTS  # the mutations do reach the error paths


def test_evidence_parser_only_raises_evidence_errors(tmp_path: Path) -> None:
    scenario = make_scenario(tmp_path)
    envelope = scenario.evidence()
    outer = json.loads(envelope)
    statement = json.loads(base64.b64decode(outer["payload"]))

    def structured(rng: random.Random) -> bytes:
        if rng.randrange(3):  # mostly the statement inside, re-encoded as its payload
            payload = json.dumps(_mutate_structure(statement, rng)).encode()
            return json.dumps({**outer, "payload": base64.b64encode(payload).decode()}).encode()
        return json.dumps(_mutate_structure(outer, rng)).encode()

    accepted = _fuzz(envelope, structured, open_evidence, EvidenceError)
    assert accepted < INPUTS
