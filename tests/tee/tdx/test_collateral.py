"""Collateral sources: files, a PCCS with a disk cache, evidence; failures are CollateralError."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from attestd.tee.errors import TeeError
from attestd.tee.tdx import _simulated_pki as pki
from attestd.tee.tdx.abi import Quote, parse_quote
from attestd.tee.tdx.collateral import (
    Collateral,
    CollateralError,
    CollateralSource,
    EvidenceCollateralSource,
    FileCollateralSource,
    PccsCollateralSource,
)
from attestd.tee.tdx.dcap import DcapOptions, verify_with_collateral
from attestd.tee.tdx.simulated import SimulatedTdxBackend
from tests.fakes.pccs import (
    PCK_CRL_PATH,
    QE_IDENTITY_PATH,
    ROOT_CA_CRL_PATH,
    TCB_PATH,
    FakePccs,
    replies_for,
)

from .conftest import VECTORS_NOW

FMSPC = pki.PLATFORM_TCB.fmspc.hex().upper()
ISSUED = datetime(2025, 1, 1, tzinfo=UTC)
NEXT_UPDATE = datetime(2025, 2, 1, tzinfo=UTC)
PATHS = (TCB_PATH, QE_IDENTITY_PATH, PCK_CRL_PATH, ROOT_CA_CRL_PATH)


def reason_of(source: CollateralSource, quote: Quote, now: datetime = VECTORS_NOW) -> str:
    with pytest.raises(CollateralError) as e:
        source.collateral_for(quote, now)
    assert isinstance(e.value, TeeError)
    return e.value.reason


@pytest.fixture(scope="module")
def vector(vectors_dir: Path) -> tuple[Quote, Path]:
    tdx = vectors_dir / "tdx"
    quote = parse_quote((tdx / "dcapqvl_quote_v4.bin").read_bytes())
    return quote, tdx / "dcapqvl_quote_v4.collateral.json"


@pytest.fixture(scope="module")
def sim_quote(simulated: SimulatedTdxBackend) -> Quote:
    return parse_quote(simulated.get_quote(bytes(64)))


@pytest.fixture(scope="module")
def short_lived(simulated: SimulatedTdxBackend) -> dict[str, str]:
    """Simulated collateral valid for January 2025 only."""
    platform = pki.load(simulated.state_directory)
    return pki.issue_collateral(platform, issue_date=ISSUED, next_update=NEXT_UPDATE)


@pytest.fixture
def pccs(short_lived: dict[str, str]) -> Iterator[FakePccs]:
    with FakePccs(short_lived, FMSPC) as server:
        yield server


# --- Collateral ---------------------------------------------------------------------------


def test_vector_collateral_round_trips(vector: tuple[Quote, Path]) -> None:
    _, path = vector
    document = json.loads(path.read_text())
    collateral = Collateral.from_json(path.read_bytes())
    assert collateral.to_mapping() == document
    assert Collateral.from_json(collateral.to_json()) == collateral
    assert collateral.fmspc == "B0C06F000000"
    assert collateral.next_update == datetime(2025, 7, 19, 10, 0, 35, tzinfo=UTC)


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: "not json {",
        lambda d: json.dumps([1, 2]),
        lambda d: json.dumps({k: v for k, v in d.items() if k != "pck_crl"}),
        lambda d: json.dumps({**d, "root_ca_crl": "zz"}),
        lambda d: json.dumps({**d, "pck_crl": "3000"}),
        lambda d: json.dumps({**d, "tcb_info": "{"}),
        lambda d: json.dumps({**d, "tcb_info": "[]"}),
        lambda d: json.dumps({**d, "qe_identity": '{"id":"TD_QE","tcbLevels":[]}'}),
        lambda d: json.dumps({**d, "tcb_info_issuer_chain": "not PEM"}),
        lambda d: json.dumps({**d, "tcb_info_signature": 7}),
        lambda d: json.dumps({**d, "tcb_info": 7}),
    ],
    ids=[
        "not-json",
        "not-object",
        "missing-field",
        "bad-hex",
        "bad-crl",
        "bad-tcb-json",
        "tcb-not-object",
        "no-next-update",
        "bad-chain",
        "signature-not-hex",
        "tcb-info-not-text",
    ],
)
def test_malformed_collateral_is_a_collateral_error(
    vector: tuple[Quote, Path], damage: object
) -> None:
    document = json.loads(vector[1].read_text())
    with pytest.raises(CollateralError) as e:
        Collateral.from_json(damage(document))  # type: ignore[operator]
    assert e.value.reason == "collateral_malformed"


# --- files and evidence -------------------------------------------------------------------


def test_file_source_reads_one_file(vector: tuple[Quote, Path]) -> None:
    quote, path = vector
    collateral = FileCollateralSource(path).collateral_for(quote, VECTORS_NOW)
    result = verify_with_collateral(quote.to_bytes(), collateral, DcapOptions(VECTORS_NOW))
    assert result.status == "UpToDate"


def test_file_source_reads_a_directory_by_fmspc(
    tmp_path: Path, simulated: SimulatedTdxBackend, sim_quote: Quote
) -> None:
    (tmp_path / f"{FMSPC}.json").write_text(simulated.collateral_json())
    collateral = FileCollateralSource(tmp_path).collateral_for(sim_quote, VECTORS_NOW)
    assert collateral == Collateral.from_json(simulated.collateral_json())
    (tmp_path / f"{FMSPC}.json").rename(tmp_path / f"{FMSPC.lower()}.json")
    assert FileCollateralSource(tmp_path).collateral_for(sim_quote, VECTORS_NOW) == collateral


def test_file_source_refuses_what_it_cannot_use(
    tmp_path: Path, vector: tuple[Quote, Path], sim_quote: Quote
) -> None:
    assert reason_of(FileCollateralSource(tmp_path), sim_quote) == "collateral_unavailable"
    missing = FileCollateralSource(tmp_path / "x.json")
    assert reason_of(missing, sim_quote) == "collateral_unavailable"
    other_platform = FileCollateralSource(vector[1])
    assert reason_of(other_platform, sim_quote) == "collateral_unavailable"
    big = FileCollateralSource(vector[1], max_bytes=1000)
    assert reason_of(big, vector[0]) == "collateral_too_large"
    (tmp_path / "garbage.json").write_bytes(b"\xff\xfe garbage")
    garbage = FileCollateralSource(tmp_path / "garbage.json")
    assert reason_of(garbage, vector[0]) == "collateral_malformed"


def test_evidence_source(simulated: SimulatedTdxBackend, sim_quote: Quote) -> None:
    text = simulated.collateral_json()
    for given in (text, text.encode(), json.loads(text)):
        source = EvidenceCollateralSource(given)
        assert source.collateral_for(sim_quote, VECTORS_NOW).fmspc == FMSPC
    assert reason_of(EvidenceCollateralSource("{}"), sim_quote) == "collateral_malformed"


# --- PCCS ---------------------------------------------------------------------------------


def test_pccs_collateral_verifies_and_is_cached_until_next_update(
    tmp_path: Path, pccs: FakePccs, simulated: SimulatedTdxBackend, sim_quote: Quote
) -> None:
    source = PccsCollateralSource(pccs.url, tmp_path / "cache", timeout=5)
    now = ISSUED + timedelta(days=3)
    collateral = source.collateral_for(sim_quote, now)
    result = verify_with_collateral(
        sim_quote.to_bytes(), collateral, DcapOptions(now, simulated.trust_root())
    )
    assert result.status == "UpToDate"
    assert [pccs.count(p) for p in PATHS] == [1, 1, 1, 1]
    assert f"fmspc={FMSPC}" in pccs.requests[0]
    assert "ca=platform&encoding=der" in next(r for r in pccs.requests if PCK_CRL_PATH in r)

    again = PccsCollateralSource(pccs.url, tmp_path / "cache").collateral_for(
        sim_quote, now + timedelta(days=20)
    )
    assert again == collateral
    assert len(pccs.requests) == 4  # all from the cache

    fresh = pki.issue_collateral(
        pki.load(simulated.state_directory), issue_date=NEXT_UPDATE, next_update=pki.NOT_VALID_AFTER
    )
    pccs.replies = replies_for(fresh, FMSPC)
    after = source.collateral_for(sim_quote, NEXT_UPDATE + timedelta(seconds=1))
    assert [pccs.count(p) for p in PATHS] == [2, 2, 2, 2]
    assert after.tcb_info == fresh["tcb_info"]
    assert after.next_update == pki.NOT_VALID_AFTER


def test_pccs_serving_expired_collateral_is_refused(
    tmp_path: Path, pccs: FakePccs, sim_quote: Quote
) -> None:
    source = PccsCollateralSource(pccs.url, tmp_path)
    assert reason_of(source, sim_quote, NEXT_UPDATE + timedelta(days=1)) == "collateral_expired"


@pytest.mark.parametrize(
    ("path", "reply", "reason"),
    [
        (TCB_PATH, (404, {}, b"no such FMSPC"), "collateral_unavailable"),
        (TCB_PATH, (500, {}, b"boom"), "collateral_unavailable"),
        (QE_IDENTITY_PATH, (503, {}, b""), "collateral_unavailable"),
        (TCB_PATH, (200, {"TCB-Info-Issuer-Chain": "x"}, b"\x00garbage"), "collateral_malformed"),
        (TCB_PATH, (200, {}, b'{"tcbInfo":{},"signature":"00"}'), "collateral_malformed"),
        (QE_IDENTITY_PATH, (200, {}, b'{"enclaveIdentity":1}'), "collateral_malformed"),
        (
            PCK_CRL_PATH,
            (200, {"SGX-PCK-CRL-Issuer-Chain": ""}, b"not a crl"),
            "collateral_malformed",
        ),
        (PCK_CRL_PATH, (200, {}, b"x" * 5000), "collateral_too_large"),
        (ROOT_CA_CRL_PATH, (404, {}, b""), "collateral_unavailable"),
    ],
    ids=[
        "tcb-404",
        "tcb-500",
        "qe-503",
        "garbage",
        "tcb-unsigned-empty",
        "qe-not-object",
        "crl-garbage",
        "oversized",
        "no-root-crl",
    ],
)
def test_pccs_failures_are_specific(
    tmp_path: Path,
    pccs: FakePccs,
    sim_quote: Quote,
    path: str,
    reply: tuple[int, dict[str, str], bytes],
    reason: str,
) -> None:
    pccs.override[path] = reply
    source = PccsCollateralSource(pccs.url, tmp_path, timeout=5, max_response_bytes=4096)
    assert reason_of(source, sim_quote, ISSUED + timedelta(days=1)) == reason


def test_pccs_unreachable_is_unavailable(tmp_path: Path, sim_quote: Quote) -> None:
    with socket.socket() as s:  # a port that was free a moment ago, and is closed now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    source = PccsCollateralSource(f"http://127.0.0.1:{port}", tmp_path, timeout=2)
    assert reason_of(source, sim_quote) == "collateral_unavailable"


def test_a_damaged_cache_is_refetched(tmp_path: Path, pccs: FakePccs, sim_quote: Quote) -> None:
    now = ISSUED + timedelta(days=1)
    PccsCollateralSource(pccs.url, tmp_path).collateral_for(sim_quote, now)
    for cached in tmp_path.glob("*.json"):
        cached.write_text("damaged")
    PccsCollateralSource(pccs.url, tmp_path).collateral_for(sim_quote, now)
    assert len(pccs.requests) == 8


def test_pccs_url_must_be_http(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="http"):
        PccsCollateralSource("file:///etc", tmp_path)


@pytest.mark.parametrize("encoding", ["pem", "hex"])
def test_pck_crl_may_be_served_as_pem_or_hex(
    tmp_path: Path, pccs: FakePccs, short_lived: dict[str, str], sim_quote: Quote, encoding: str
) -> None:
    der = bytes.fromhex(short_lived["pck_crl"])
    crl = x509.load_der_x509_crl(der)
    body = crl.public_bytes(Encoding.PEM) if encoding == "pem" else der.hex().encode()
    key = next(k for k in pccs.replies if k.startswith(PCK_CRL_PATH))
    status, headers, _ = pccs.replies[key]
    pccs.override[PCK_CRL_PATH] = (status, headers, body)
    collateral = PccsCollateralSource(pccs.url, tmp_path).collateral_for(sim_quote, ISSUED)
    assert collateral.pck_crl == der
