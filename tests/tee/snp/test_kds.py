"""VCEK retrieval: certificate table, offline store, cache, and a KDS that is a local server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from attestd.tee.snp.abi import TURIN, TcbVersion, build_cert_table, parse_report
from attestd.tee.snp.kds import (
    KDS_BASE_URL,
    VcekSource,
    VcekUnavailableError,
    cache_path,
    get_vcek,
    offline_path,
    vcek_url,
)
from attestd.tee.snp.verify import VerifyOptions, verify_report

from .conftest import VECTORS_NOW, RealReport
from .fake_kds import FakeKds, running_kds


@pytest.fixture
def kds() -> Iterator[FakeKds]:
    with running_kds() as fake:
        yield fake


def test_milan_url_names_chip_and_reported_tcb(real: RealReport) -> None:
    report = parse_report(real.raw)
    url = vcek_url("Milan", report.chip_id, report.reported_tcb)
    assert url == (
        f"{KDS_BASE_URL}/vcek/v1/Milan/{report.chip_id.hex()}?blSPL=2&teeSPL=0&snpSPL=5&ucodeSPL=68"
    )


def test_turin_url_uses_an_8_byte_hwid_and_fmc_spl() -> None:
    chip_id = bytes(range(1, 9)) + bytes(56)
    tcb = TcbVersion(bootloader=3, tee=4, snp=5, microcode=6, fmc=2).encode(TURIN)
    url = vcek_url(TURIN, chip_id, tcb, base_url="https://kds.example/")
    assert url == (
        "https://kds.example/vcek/v1/Turin/0102030405060708"
        "?fmcSPL=2&blSPL=3&teeSPL=4&snpSPL=5&ucodeSPL=6"
    )


def test_fetches_once_then_serves_from_the_cache(
    real: RealReport, kds: FakeKds, tmp_path: Path
) -> None:
    report = parse_report(real.raw)
    kds.body = real.vcek_der
    source = VcekSource(kds_base_url=kds.url, cache_dir=tmp_path / "cache", timeout_s=5)
    first = get_vcek(report, "Milan", source)
    second = get_vcek(report, "Milan", source)
    assert first == second == real.vcek
    assert kds.paths == [vcek_url("Milan", report.chip_id, report.reported_tcb, base_url="")]
    url = vcek_url("Milan", report.chip_id, report.reported_tcb, base_url=kds.url)
    assert cache_path(tmp_path / "cache", url).read_bytes() == real.vcek_der
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [cache_path(tmp_path, url).name]
    verify_report(report, vcek=second, options=VerifyOptions(now=VECTORS_NOW))


def test_a_prefilled_cache_serves_without_a_kds(real: RealReport, tmp_path: Path) -> None:
    report = parse_report(real.raw)
    amd_url = vcek_url("Milan", report.chip_id, report.reported_tcb)
    cache_path(tmp_path, amd_url).write_bytes(real.vcek_der)
    assert get_vcek(report, "Milan", VcekSource(cache_dir=tmp_path)) == real.vcek


def test_a_damaged_cache_entry_is_refetched(real: RealReport, kds: FakeKds, tmp_path: Path) -> None:
    report = parse_report(real.raw)
    kds.body = real.vcek_der
    source = VcekSource(kds_base_url=kds.url, cache_dir=tmp_path)
    url = vcek_url("Milan", report.chip_id, report.reported_tcb, base_url=kds.url)
    cache_path(tmp_path, url).write_bytes(b"garbage")
    assert get_vcek(report, "Milan", source) == real.vcek
    assert len(kds.paths) == 1
    assert cache_path(tmp_path, url).read_bytes() == real.vcek_der


def test_the_certificate_table_and_offline_store_come_first(
    real: RealReport, kds: FakeKds, tmp_path: Path
) -> None:
    report = parse_report(real.raw)
    source = VcekSource(offline_store=tmp_path, kds_base_url=kds.url)
    table = build_cert_table({"vcek": real.vcek_der})
    assert get_vcek(report, "Milan", source, certificate_table=table) == real.vcek
    offline_path(tmp_path, report.chip_id, report.reported_tcb).write_bytes(real.vcek_der)
    assert get_vcek(report, "Milan", source) == real.vcek
    assert kds.paths == []


def test_kds_failures_are_vcek_unavailable(real: RealReport, kds: FakeKds) -> None:
    report = parse_report(real.raw)
    source = VcekSource(kds_base_url=kds.url, max_bytes=4096)
    kds.status, kds.body = 429, b""
    with pytest.raises(VcekUnavailableError, match="rate-limits"):
        get_vcek(report, "Milan", source)
    kds.status, kds.body = 200, bytes(5000)
    with pytest.raises(VcekUnavailableError, match="more than 4096 bytes"):
        get_vcek(report, "Milan", source)


def test_without_sources_nothing_is_fetched(real: RealReport, tmp_path: Path) -> None:
    report = parse_report(real.raw)
    with pytest.raises(VcekUnavailableError, match="no base URL") as e:
        get_vcek(report, "Milan", VcekSource(offline_store=tmp_path))
    assert e.value.reason == "vcek_unavailable"
    with pytest.raises(ValueError, match="http"):
        VcekSource(kds_base_url="file:///etc")
