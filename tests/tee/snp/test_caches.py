"""The SEV-SNP parse caches: a certificate parsed once per distinct bytes, a report's bytes kept."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from attestd.tee import _cache
from attestd.tee.snp import verify as verify_module
from attestd.tee.snp.abi import parse_report
from attestd.tee.snp.verify import load_certificate

from .conftest import RealReport


@pytest.fixture(autouse=True)
def empty_caches() -> Iterator[None]:
    _cache.clear_all()
    yield
    _cache.clear_all()


def test_a_certificate_is_parsed_once_and_equals_a_fresh_parse(real: RealReport) -> None:
    first = load_certificate(real.vcek_der)
    assert load_certificate(real.vcek_der) is first
    with _cache.caching(False):
        fresh = load_certificate(real.vcek_der)
    assert fresh is not first and fresh == first


def test_an_unreadable_certificate_is_refused_every_time_and_never_cached(
    real: RealReport,
) -> None:
    broken = real.vcek_der[:100]
    for _ in range(2):
        with pytest.raises(ValueError):
            load_certificate(broken)
    assert len(verify_module._CERTIFICATES) == 0


def test_the_certificate_cache_stays_within_its_bound(real: RealReport) -> None:
    small = _cache.ValidityCache[bytes, x509.Certificate]("test.certs", maxsize=2)
    original = verify_module._CERTIFICATES
    verify_module._CERTIFICATES = small
    try:
        pem = load_certificate(real.vcek_der).public_bytes(Encoding.PEM)
        for data in (real.vcek_der, pem, b"\n" + pem, b"  " + pem):
            assert load_certificate(data) == load_certificate(real.vcek_der)
        assert len(small) == 2
    finally:
        verify_module._CERTIFICATES = original


def test_a_parsed_reports_bytes_are_its_input_and_a_rebuilt_one_packs_the_same(
    real: RealReport,
) -> None:
    report = parse_report(real.raw)
    assert report.to_bytes() == real.raw
    assert report.signed_region == real.raw[: len(report.signed_region)]
    rebuilt = report.with_signature(report.signature)  # a new value: packed from its fields
    assert "_encoded" not in rebuilt.__dict__
    assert rebuilt.to_bytes() == real.raw
