"""A chain of real stage attestations, and every way it can be broken."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from attestd.tee.snp import _simulated_pki as snp_pki
from attestd.verifier.chain import ChainResult, verify_chain
from attestd.verifier.layout import load_layout
from attestd.verifier.result import AppraisalStatus
from tests.verifier.chain_builder import (
    Pipeline,
    attestation_bytes,
    make_snp_agent,
    make_tdx_agent,
)


@pytest.fixture(scope="module")
def snp_platform() -> snp_pki.SimulatedPki:
    return snp_pki.generate()


@pytest.fixture(scope="module")
def pipeline(
    tmp_path_factory: pytest.TempPathFactory, snp_platform: snp_pki.SimulatedPki
) -> Iterator[Pipeline]:
    tdx = make_tdx_agent(tmp_path_factory.mktemp("tdx"))
    snp = make_snp_agent(tmp_path_factory.mktemp("snp"), snp_platform)
    yield Pipeline({"prepare": tdx, "train": snp, "quantize": tdx, "package": snp})


def verify(
    pipeline: Pipeline, directory: Path, attestations: list[bytes], **kw: object
) -> ChainResult:
    layout = load_layout(pipeline.layout(directory))
    return verify_chain(attestations, layout)


def test_happy_chain(pipeline: Pipeline, tmp_path: Path) -> None:
    built = pipeline.run()
    result = verify(pipeline, tmp_path, attestation_bytes(built))
    for check in result.all_checks:
        print(check)
    assert result.status is AppraisalStatus.AFFIRMING
