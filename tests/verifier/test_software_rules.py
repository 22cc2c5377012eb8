"""Software rules in the layout: each reason, on whole signed chains and on the rules alone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from attestd.evidence import EvidenceError
from attestd.evidence.provenance import StageProvenance
from attestd.evidence.stack import (
    PYTHON_DISTRIBUTIONS,
    Claim,
    Distribution,
    SoftwareStack,
    content_sha256,
    list_content,
)
from attestd.tee.snp import _simulated_pki as snp_pki
from attestd.verifier.chain import ChainResult, verify_chain
from attestd.verifier.layout import LayoutError, load_layout
from attestd.verifier.result import AppraisalStatus
from tests.verifier.chain_builder import (
    STAGES,
    BuiltStage,
    Pipeline,
    attestation_bytes,
    make_snp_agent,
    make_tdx_agent,
)

EXE = "ab" * 32
OTHER_EXE = "cd" * 32
IMAGE = "ef" * 32


def stack_with(dists: list[Distribution], *, exe: str | None = EXE) -> tuple[SoftwareStack, bytes]:
    content = list_content(dists)
    executable = (
        Claim.of({"path": "/usr/bin/python3.12", "digest": {"sha256": exe}})
        if exe
        else Claim.missing("executable: permission denied")
    )
    stack = SoftwareStack(
        executable,
        Claim.of({"argv": ["python", "train.py"], "truncated": False}),
        Claim.of({"path": "/", "containerId": None}),
        Claim.of(
            {"digest": {"sha256": content_sha256(content)}, "count": len(dists), "sitePackages": []}
        ),
        Claim.missing("os packages: none"),
        Claim.of({"digest": {"sha256": IMAGE}, "claimedBy": "deployment"}),
    )
    return stack, content


GOOD = [Distribution("torch", "2.6.0", "11" * 32), Distribution("numpy", "2.1.0", "22" * 32)]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    tdx = make_tdx_agent(tmp_path_factory.mktemp("tdx"))
    snp = make_snp_agent(tmp_path_factory.mktemp("snp"), snp_pki.generate())
    yield Pipeline({"prepare": tdx, "train": snp, "quantize": tdx, "package": snp})


def run(pipeline: Pipeline, dists: list[Distribution], **kwargs: object) -> dict[str, BuiltStage]:
    overrides = {}
    for stage in STAGES:
        stack, content = stack_with(dists, **kwargs)  # type: ignore[arg-type]
        overrides[stage] = {
            "software_stack": stack,
            "stack_lists": [(PYTHON_DISTRIBUTIONS, content)],
        }
    return pipeline.run(overrides=overrides)


def verify(
    pipeline: Pipeline,
    tmp_path: Path,
    built: dict[str, BuiltStage],
    extra: str = "",
    train: str = "",
) -> ChainResult:
    layout = pipeline.layout(tmp_path, extra=extra, stage_extra={"train": train})
    return verify_chain(attestation_bytes(built), load_layout(layout))


def reasons(result: ChainResult, stage: str) -> set[str]:
    return {c.reason for c in result.failures if c.stage == stage and c.reason}


SOFTWARE = '[software]\nrequired_packages = ["torch>=2.6,<2.7"]\n'


def test_a_chain_within_its_software_rules_verifies_at_slsa_l3(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    result = verify(pipeline, tmp_path, run(pipeline, GOOD), SOFTWARE + "min_slsa_level = 3\n")
    assert result.status is AppraisalStatus.AFFIRMING, result.reasons
    assert result.slsa_level == 3 and result.to_json()["slsaBuildLevel"] == 3


def test_a_denied_version_is_refused_with_the_package_and_stage_shown(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    old = [Distribution("torch", "2.5.0", "11" * 32)]
    result = verify(
        pipeline,
        tmp_path,
        run(pipeline, old),
        '[software]\nforbidden_packages = ["torch==2.5.0"]\n',
    )
    assert "package_version_not_allowed" in reasons(result, "train")
    assert "stage train: package_version_not_allowed: torch 2.5.0" in result.render_table()
    train = next(s for s in result.to_json()["stages"] if s["stage"] == "train")
    assert train["softwareViolations"][0]["package"] == "torch"
    assert train["softwareViolations"][0]["version"] == "2.5.0"


@pytest.mark.parametrize(
    ("rules", "dists", "reason"),
    [
        (SOFTWARE, [Distribution("numpy", "2.1.0", "22" * 32)], "package_missing"),
        (SOFTWARE, [Distribution("torch", "2.7.1", "11" * 32)], "package_version_not_allowed"),
        ('[software]\nforbidden_packages = ["NumPy"]\n', GOOD, "package_forbidden"),
        (f'[software]\nallowed_images = ["sha256:{"00" * 32}"]\n', GOOD, "image_not_allowed"),
    ],
)
def test_each_package_and_image_rule_has_its_reason(
    pipeline: Pipeline, tmp_path: Path, rules: str, dists: list[Distribution], reason: str
) -> None:
    result = verify(pipeline, tmp_path, run(pipeline, dists), rules)
    assert reason in reasons(result, "train")


def test_another_executable_is_refused(pipeline: Pipeline, tmp_path: Path) -> None:
    train = f'software = {{ allowed_executables = ["sha256:{OTHER_EXE}"] }}'
    result = verify(pipeline, tmp_path, run(pipeline, GOOD), train=train)
    assert reasons(result, "train") == {"executable_not_allowed"}
    assert reasons(result, "prepare") == set()  # the rule is the train stage's only


def test_an_unknown_executable_is_a_missing_stack_and_slsa_l2(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    built = run(pipeline, GOOD, exe=None)
    result = verify(
        pipeline, tmp_path, built, f'[software]\nallowed_executables = ["sha256:{EXE}"]\n'
    )
    assert "software_stack_missing" in reasons(result, "train")
    result = verify(pipeline, tmp_path, built, "[software]\nmin_slsa_level = 3\n")
    assert reasons(result, "train") == {"slsa_level_insufficient"}
    assert result.slsa_level == 2


def test_a_provenance_without_a_stack_is_missing(pipeline: Pipeline, tmp_path: Path) -> None:
    result = verify(pipeline, tmp_path, pipeline.run(), SOFTWARE)
    assert "software_stack_missing" in reasons(result, "train")


def test_an_osv_advisory_at_the_severity_refuses(pipeline: Pipeline, tmp_path: Path) -> None:
    advisory = {
        "id": "GHSA-test",
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "Torch"},
                "ranges": [
                    {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.6.1"}]}
                ],
                "database_specific": {"severity": "HIGH"},
            }
        ],
    }
    (tmp_path / "osv.json").write_text(json.dumps([advisory]))
    built = run(pipeline, GOOD)
    result = verify(pipeline, tmp_path, built, '[software]\nosv = ["osv.json"]\n')
    assert "package_vulnerable" in reasons(result, "train")
    result = verify(
        pipeline, tmp_path, built, '[software]\nosv = ["osv.json"]\nosv_min_severity = "CRITICAL"\n'
    )
    assert result.status is AppraisalStatus.AFFIRMING


@pytest.mark.parametrize(
    "rules",
    [
        '[software]\nrequired_packages = ["torch>>2"]\n',
        '[software]\nrequired_packages = ["torch @ https://example.invalid/t.whl"]\n',
        '[software]\nallowed_images = ["sha256:XYZ"]\n',
        "[software]\nmin_slsa_level = 4\n",
        '[software]\nosv = ["absent.json"]\n',
        "[software]\nunknown = 1\n",
    ],
)
def test_malformed_software_rules_are_refused(
    pipeline: Pipeline, tmp_path: Path, rules: str
) -> None:
    with pytest.raises(LayoutError):
        load_layout(pipeline.layout(tmp_path, extra=rules))


def test_a_list_that_is_not_the_measured_one_is_malformed(pipeline: Pipeline) -> None:
    # A provenance whose byproduct list differs from the digest the stack names (a client's
    # substituted environment, or a tampered file) is not a provenance attestd writes.
    stack, _ = stack_with(GOOD)
    forged = list_content([Distribution("torch", "2.6.0", "33" * 32)])
    built = pipeline.run(
        overrides={
            "train": {"software_stack": stack, "stack_lists": [(PYTHON_DISTRIBUTIONS, forged)]}
        }
    )
    statement = json.loads(built["train"].payload)
    with pytest.raises(EvidenceError, match="softwareStack"):
        StageProvenance.from_statement(statement)
