"""A chain of real stage attestations, and every way it can be broken, each by name."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from attestd.cli import main
from attestd.evidence.provenance import StageAttestation
from attestd.tee.snp import _simulated_pki as snp_pki
from attestd.verifier.chain import STAGE_CHECK_NAMES, TABLE_HEADER, ChainResult, verify_chain
from attestd.verifier.layout import load_layout
from attestd.verifier.result import AppraisalStatus, CheckStatus
from tests.verifier.chain_builder import (
    BASE,
    DATASET,
    FLOW,
    INT8,
    RUN_ID,
    STAGES,
    BuiltStage,
    Pipeline,
    StageAgent,
    attest,
    attestation_bytes,
    make_snp_agent,
    make_tdx_agent,
    retag,
    with_outputs,
)


@pytest.fixture(scope="module")
def snp_platform() -> snp_pki.SimulatedPki:
    return snp_pki.generate()


@pytest.fixture(scope="module")
def tdx(tmp_path_factory: pytest.TempPathFactory) -> StageAgent:
    return make_tdx_agent(tmp_path_factory.mktemp("tdx"))


@pytest.fixture(scope="module")
def snp(tmp_path_factory: pytest.TempPathFactory, snp_platform: snp_pki.SimulatedPki) -> StageAgent:
    return make_snp_agent(tmp_path_factory.mktemp("snp"), snp_platform)


@pytest.fixture(scope="module")
def pipeline(tdx: StageAgent, snp: StageAgent) -> Iterator[Pipeline]:
    yield Pipeline({"prepare": tdx, "train": snp, "quantize": tdx, "package": snp})


@pytest.fixture(scope="module")
def happy(pipeline: Pipeline) -> dict[str, BuiltStage]:
    return pipeline.run()


def verify(
    pipeline: Pipeline,
    directory: Path,
    attestations: list[bytes],
    *,
    now: datetime | None = None,
    **layout: object,
) -> ChainResult:
    return verify_chain(
        attestations,
        load_layout(pipeline.layout(directory, **layout)),
        now=now,  # type: ignore[arg-type]
    )


def stage_reasons(result: ChainResult, stage: str) -> set[str]:
    return {c.reason for c in result.failures if c.stage == stage and c.reason}


def chain_reasons(result: ChainResult) -> set[str]:
    return {c.reason for c in result.checks if c.status is CheckStatus.FAIL and c.reason}


# -- the happy chain --------------------------------------------------------------------


def test_four_stage_chain_on_tdx_and_snp_verifies(
    pipeline: Pipeline, happy: dict[str, BuiltStage], tmp_path: Path
) -> None:
    result = verify(pipeline, tmp_path, attestation_bytes(happy))
    assert result.status is AppraisalStatus.AFFIRMING, result.reasons
    assert [s.stage for s in result.stages] == list(STAGES)
    assert [s.tee for s in result.stages] == ["tdx", "sev-snp", "tdx", "sev-snp"]
    assert result.run_id == RUN_ID
    for stage in result.stages:
        assert stage.appraisal is not None
        assert stage.appraisal.status is AppraisalStatus.AFFIRMING
        assert [c.name for c in stage.checks] == list(STAGE_CHECK_NAMES)


def test_the_order_of_the_files_does_not_matter(
    pipeline: Pipeline, happy: dict[str, BuiltStage], tmp_path: Path
) -> None:
    files = attestation_bytes(happy, list(reversed(STAGES)))
    assert verify(pipeline, tmp_path, files).status is AppraisalStatus.AFFIRMING


def test_freshness_is_off_unless_the_layout_sets_max_age(
    pipeline: Pipeline, happy: dict[str, BuiltStage], tmp_path: Path
) -> None:
    later = datetime.now(UTC) + timedelta(days=3)
    off = verify(pipeline, tmp_path, attestation_bytes(happy), now=later)
    assert off.status is AppraisalStatus.AFFIRMING
    assert off.to_json()["freshness"] == {"maxAgeSeconds": None, "checked": False}
    on = verify(
        pipeline, tmp_path, attestation_bytes(happy), now=later,
        extra="[freshness]\nmax_age_seconds = 86400",
    )  # fmt: skip
    assert stage_reasons(on, "prepare") == {"evidence_expired"}


def test_json_result_holds_each_stage_appraisal(
    pipeline: Pipeline, happy: dict[str, BuiltStage], tmp_path: Path
) -> None:
    report = verify(pipeline, tmp_path, attestation_bytes(happy)).to_json()
    json.dumps(report)
    assert report["status"] == "affirming"
    assert report["stages"][1]["appraisal"]["tee"] == "sev-snp"
    assert report["stages"][1]["appraisal"]["status"] == "affirming"
    assert report["stages"][2]["previous"] == report["stages"][1]["provenanceDigest"]


# -- stages: missing, duplicated, unknown, out of order ----------------------------


def test_missing_stage_is_stage_missing(
    pipeline: Pipeline, happy: dict[str, BuiltStage], tmp_path: Path
) -> None:
    result = verify(
        pipeline, tmp_path, attestation_bytes(happy, ["prepare", "quantize", "package"])
    )
    assert chain_reasons(result) == {"stage_missing"}
    assert "train" in result.checks[0].detail
    assert result.status is AppraisalStatus.CONTRAINDICATED


def test_duplicate_stage_is_stage_duplicate(
    pipeline: Pipeline, happy: dict[str, BuiltStage], tmp_path: Path
) -> None:
    files = [*attestation_bytes(happy), happy["train"].attestation]
    result = verify(pipeline, tmp_path, files)
    assert stage_reasons(result, "train") == {"stage_duplicate"}


def test_stage_the_layout_does_not_name_is_stage_unknown(
    pipeline: Pipeline, tdx: StageAgent, happy: dict[str, BuiltStage], tmp_path: Path
) -> None:
    extra = attest(tdx, "evaluate", [INT8], [INT8], happy["package"].digest)
    result = verify(pipeline, tmp_path, [*attestation_bytes(happy), extra.attestation])
    assert stage_reasons(result, "evaluate") == {"stage_unknown"}


def test_stages_run_out_of_order_are_stage_out_of_order(pipeline: Pipeline, tmp_path: Path) -> None:
    built = pipeline.run(order=["prepare", "quantize", "train", "package"])
    result = verify(pipeline, tmp_path, attestation_bytes(built))
    assert "stage_out_of_order" in stage_reasons(result, "train")
    assert "stage_out_of_order" in stage_reasons(result, "quantize")
    assert "ran after 'quantize'" in next(
        c.detail for c in result.failures if c.stage == "train" and c.name == "previous"
    )


def test_pipeline_of_another_name_is_pipeline_mismatch(pipeline: Pipeline, tmp_path: Path) -> None:
    built = pipeline.run(overrides={"package": {"pipeline": "other-pipeline"}})
    result = verify(pipeline, tmp_path, attestation_bytes(built))
    assert stage_reasons(result, "package") == {"pipeline_mismatch"}


# -- replay from another run -------------------------------------------------------------


def test_stage_from_another_run_is_run_mismatch(
    pipeline: Pipeline, happy: dict[str, BuiltStage], tmp_path: Path
) -> None:
    other = pipeline.run(run_id="run-43")
    files = attestation_bytes({**happy, "quantize": other["quantize"]})
    result = verify(pipeline, tmp_path, files)
    assert "run_mismatch" in stage_reasons(result, "quantize")
    assert "previous_link_broken" in stage_reasons(result, "quantize")


def test_stage_with_another_predecessor_is_previous_link_broken(
    pipeline: Pipeline, happy: dict[str, BuiltStage], tmp_path: Path
) -> None:
    again = pipeline.run()  # the same run id, a second execution
    files = attestation_bytes({**happy, "quantize": again["quantize"]})
    result = verify(pipeline, tmp_path, files)
    assert stage_reasons(result, "quantize") == {"previous_link_broken"}
    # the next stage names the happy quantize, which is no longer in the chain
    assert stage_reasons(result, "package") == {"previous_link_broken"}


def test_first_stage_naming_a_predecessor_is_previous_link_broken(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    built = pipeline.run(overrides={"prepare": {"previous": "ee" * 32}})
    result = verify(pipeline, tmp_path, attestation_bytes(built))
    assert stage_reasons(result, "prepare") == {"previous_link_broken"}


# -- artifacts between stages ----------------------------------------------------------


def test_inputs_other_than_the_predecessors_outputs_are_inputs_mismatch(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    other = retag(BASE, name="/models/other")
    built = pipeline.run(flow=with_outputs(FLOW, "quantize", inputs=[other]))
    result = verify(pipeline, tmp_path, attestation_bytes(built))
    assert stage_reasons(result, "quantize") == {"inputs_mismatch"}


def test_layout_may_untie_a_stage_from_its_predecessor(pipeline: Pipeline, tmp_path: Path) -> None:
    other = retag(BASE, name="/models/other")
    built = pipeline.run(flow=with_outputs(FLOW, "quantize", inputs=[BASE, other]))
    result = verify(
        pipeline, tmp_path, attestation_bytes(built),
        stage_extra={"quantize": "inputs_from_previous = false"},
    )  # fmt: skip
    assert result.status is AppraisalStatus.AFFIRMING, result.reasons


def test_artifact_with_the_same_name_and_another_digest_is_artifact_substituted(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    swapped = retag(DATASET, digest={"sha256": "ff" * 32})
    built = pipeline.run(flow=with_outputs(FLOW, "train", inputs=[swapped]))
    result = verify(pipeline, tmp_path, attestation_bytes(built))
    assert stage_reasons(result, "train") == {"artifact_substituted"}


def test_outputs_other_than_the_evidence_subjects_are_outputs_mismatch(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    built = pipeline.run(
        overrides={"train": {"subjects": [retag(BASE, digest={"sha256": "0f" * 32})]}}
    )
    result = verify(pipeline, tmp_path, attestation_bytes(built))
    assert "outputs_mismatch" in stage_reasons(result, "train")


# -- where and by whom a stage ran -----------------------------------------------------


def test_stage_on_a_tee_the_layout_does_not_accept_is_tee_not_accepted(
    pipeline: Pipeline, tdx: StageAgent, happy: dict[str, BuiltStage], tmp_path: Path
) -> None:
    # train ran on SNP; the layout says TDX only
    result = verify(pipeline, tmp_path, attestation_bytes(happy), agents={"train": tdx})
    assert stage_reasons(result, "train") == {"tee_not_accepted"}


def test_measurement_outside_the_layout_surfaces_the_appraisal_reason(
    pipeline: Pipeline, happy: dict[str, BuiltStage], tmp_path: Path
) -> None:
    layout = pipeline.layout(tmp_path)
    text = layout.read_text()
    start = text.index('mrtd = ["') + len('mrtd = ["')
    layout.write_text(text[:start] + "00" * 48 + text[start + 96 :])
    result = verify_chain(attestation_bytes(happy), load_layout(layout))
    assert stage_reasons(result, "prepare") == {"mrtd_not_allowed"}
    prepare = result.stages[0]
    assert prepare.appraisal is not None and "mrtd_not_allowed" in prepare.appraisal.reasons


def test_stage_under_another_root_surfaces_the_appraisal_reason(
    pipeline: Pipeline,
    happy: dict[str, BuiltStage],
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    impostor = make_tdx_agent(tmp_path_factory.mktemp("impostor"))
    result = verify(pipeline, tmp_path, attestation_bytes(happy), agents={"prepare": impostor})
    (check,) = [c for c in result.failures if c.stage == "prepare"]
    assert check.name == "evidence"
    prepare = result.stages[0].appraisal
    assert prepare is not None and prepare.check("quote_signature").status is CheckStatus.FAIL
    assert check.reason == prepare.check("quote_signature").reason


def test_agent_key_outside_the_layout_is_agent_key_not_allowed(
    pipeline: Pipeline, happy: dict[str, BuiltStage], tdx: StageAgent, tmp_path: Path
) -> None:
    stranger = "sha256:" + "ab" * 32
    result = verify(
        pipeline, tmp_path, attestation_bytes(happy),
        stage_extra={
            "prepare": f'agent_keys = ["{stranger}"]',
            "quantize": f'agent_keys = ["{tdx.key_id}"]',
        },
    )  # fmt: skip
    assert stage_reasons(result, "prepare") == {"agent_key_not_allowed"}
    assert stage_reasons(result, "quantize") == set()


def test_provenance_signed_by_another_key_is_provenance_key_mismatch(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    built = pipeline.run(overrides={"train": {"signer": other}})
    result = verify(pipeline, tmp_path, attestation_bytes(built))
    assert stage_reasons(result, "train") == {"provenance_key_mismatch"}


def test_provenance_with_a_bad_signature_is_provenance_signature_invalid(
    pipeline: Pipeline, happy: dict[str, BuiltStage], tmp_path: Path
) -> None:
    envelope = json.loads(happy["train"].provenance_envelope)
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[-1] ^= 1
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    forged = StageAttestation(json.dumps(envelope).encode(), happy["train"].evidence)
    files = attestation_bytes(happy)
    files[1] = forged.to_json()
    result = verify(pipeline, tmp_path, files)
    assert stage_reasons(result, "train") == {"provenance_signature_invalid"}


def test_evidence_bound_to_another_provenance_is_nonce_mismatch(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    built = pipeline.run(overrides={"package": {"nonce": b"\x07" * 32}})
    result = verify(pipeline, tmp_path, attestation_bytes(built))
    assert stage_reasons(result, "package") == {"nonce_mismatch"}


def test_segment_not_in_the_evidence_log_is_log_segment_mismatch(
    pipeline: Pipeline, happy: dict[str, BuiltStage], tmp_path: Path
) -> None:
    foreign = happy["train"].provenance.log_segment  # recorded on the SNP agent
    built = pipeline.run(overrides={"quantize": {"segment": foreign}})
    result = verify(pipeline, tmp_path, attestation_bytes(built))
    assert stage_reasons(result, "quantize") == {"log_segment_mismatch"}


def test_unreadable_attestation_is_attestation_malformed(
    pipeline: Pipeline, happy: dict[str, BuiltStage], tmp_path: Path
) -> None:
    result = verify(pipeline, tmp_path, [*attestation_bytes(happy), b"{not json"])
    assert result.stages[-1].reasons == ("attestation_malformed",)
    assert result.stages[-1].stage is None


# -- licences and tags ---------------------------------------------------------------------


def test_disallowed_licence_is_license_not_allowed(pipeline: Pipeline, tmp_path: Path) -> None:
    gpl = retag(INT8, license="GPL-3.0-only")
    built = pipeline.run(
        flow=with_outputs(with_outputs(FLOW, "quantize", outputs=[gpl]), "package", inputs=[gpl])
    )
    result = verify(pipeline, tmp_path, attestation_bytes(built))
    assert stage_reasons(result, "quantize") == {"license_not_allowed"}


def test_licence_choice_by_or_is_allowed(pipeline: Pipeline, tmp_path: Path) -> None:
    dual = retag(INT8, license="GPL-3.0-only OR MIT")
    built = pipeline.run(
        flow=with_outputs(with_outputs(FLOW, "quantize", outputs=[dual]), "package", inputs=[dual])
    )
    assert verify(pipeline, tmp_path, attestation_bytes(built)).status is AppraisalStatus.AFFIRMING


def test_malformed_licence_is_license_invalid(pipeline: Pipeline, tmp_path: Path) -> None:
    bad = retag(BASE, license="MIT AND (Apache-2.0")
    built = pipeline.run(
        flow=with_outputs(with_outputs(FLOW, "train", outputs=[bad]), "quantize", inputs=[bad])
    )
    result = verify(pipeline, tmp_path, attestation_bytes(built))
    assert stage_reasons(result, "train") == {"license_invalid"}


def test_artifact_without_licence_is_license_missing(pipeline: Pipeline, tmp_path: Path) -> None:
    bare = retag(BASE, license=None)
    built = pipeline.run(
        flow=with_outputs(with_outputs(FLOW, "train", outputs=[bare]), "quantize", inputs=[bare])
    )
    result = verify(pipeline, tmp_path, attestation_bytes(built))
    assert stage_reasons(result, "train") == {"license_missing"}
    assert (
        verify(pipeline, tmp_path, attestation_bytes(built), licenses=None).status
        is AppraisalStatus.AFFIRMING
    )


PII_NONE = 'required_tags = ["pii:none"]'


def test_stage_output_without_a_required_tag_is_tag_missing(
    pipeline: Pipeline, happy: dict[str, BuiltStage], tmp_path: Path
) -> None:
    result = verify(
        pipeline, tmp_path, attestation_bytes(happy),
        stage_extra={"prepare": PII_NONE, "train": PII_NONE},
    )  # fmt: skip
    assert stage_reasons(result, "prepare") == set()
    assert stage_reasons(result, "train") == {"tag_missing"}


def test_artifact_rule_tags_and_presence(
    pipeline: Pipeline, happy: dict[str, BuiltStage], tmp_path: Path
) -> None:
    rules = (
        '[[artifacts]]\nname = "/models/base"\nrequired_tags = ["eval:passed", "redteam:done"]\n'
        '[[artifacts]]\nname = "/models/never"\nrequired = true\n'
    )
    result = verify(pipeline, tmp_path, attestation_bytes(happy), extra=rules)
    assert stage_reasons(result, "train") == {"tag_missing"}
    assert stage_reasons(result, "quantize") == {"tag_missing"}  # consumed there
    assert chain_reasons(result) == {"artifact_missing"}


# -- attestctl chain verify ------------------------------------------------------------


def write_files(directory: Path, built: dict[str, BuiltStage]) -> list[str]:
    paths = []
    for name in STAGES:
        path = directory / f"{name}.json"
        path.write_bytes(built[name].attestation)
        paths.append(str(path))
    return paths


def test_cli_prints_a_table_and_exits_0_when_the_chain_verifies(
    pipeline: Pipeline,
    happy: dict[str, BuiltStage],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    layout = pipeline.layout(tmp_path)
    code = main(["chain", "verify", *write_files(tmp_path, happy), "--layout", str(layout)])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["STAGE", "TEE", "ROOT", "AGENT"]
    assert lines[1].split()[:2] == ["prepare", "tdx"]
    assert "raw -> train" in lines[1] and "CC-BY-4.0" in lines[1] and lines[1].endswith("ok")
    assert lines[2].split()[:2] == ["train", "sev-snp"]
    assert "freshness: not checked" in out
    assert lines[-1] == "chain llm-release run run-42: VERIFIED"


def test_cli_json_and_exit_1_when_the_chain_is_broken(
    pipeline: Pipeline,
    happy: dict[str, BuiltStage],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    layout = pipeline.layout(tmp_path)
    files = write_files(tmp_path, happy)
    del files[1]
    code = main(["chain", "verify", *files, "--layout", str(layout), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert report["status"] == "contraindicated"
    assert report["reasons"] == ["stage_missing"]
    assert [s["stage"] for s in report["stages"]] == ["prepare", "quantize", "package"]
    assert report["stages"][0]["appraisal"]["status"] == "affirming"
    assert report["checks"][0] == {
        "name": "stages", "stage": None, "status": "fail", "reason": "stage_missing",
        "detail": "no attestation of stage(s) train",
    }  # fmt: skip


def test_cli_table_names_the_failing_stage_and_reason(
    pipeline: Pipeline,
    happy: dict[str, BuiltStage],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    layout = pipeline.layout(tmp_path, stage_extra={"train": 'required_tags = ["pii:none"]'})
    code = main(["chain", "verify", *write_files(tmp_path, happy), "--layout", str(layout)])
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert lines[2].startswith("train") and lines[2].endswith("tag_missing")
    assert lines[-1] == "chain llm-release run run-42: NOT VERIFIED (tag_missing)"


@pytest.mark.parametrize(
    "problem", ["missing-file", "bad-layout", "not-an-attestation", "oms-usage"]
)
def test_cli_exits_2_on_unreadable_input_or_usage(
    pipeline: Pipeline, happy: dict[str, BuiltStage], tmp_path: Path, problem: str
) -> None:
    layout = pipeline.layout(tmp_path)
    files = write_files(tmp_path, happy)
    extra: list[str] = []
    if problem == "missing-file":
        files.append(str(tmp_path / "absent.json"))
    elif problem == "bad-layout":
        layout.write_text(layout.read_text() + "\nunknown_key = 1\n")
    elif problem == "not-an-attestation":
        (tmp_path / "junk.json").write_text("{}")
        files.append(str(tmp_path / "junk.json"))
    else:
        extra = ["--oms-key", str(layout)]
    assert main(["chain", "verify", *files, "--layout", str(layout), *extra]) == 2


@pytest.mark.parametrize("problem", ["deep-layout", "fifo-layout", "fifo-attestation"])
def test_cli_exits_2_naming_the_reason_on_hostile_files(
    pipeline: Pipeline,
    happy: dict[str, BuiltStage],
    tmp_path: Path,
    problem: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.test_shared_files import make_fifo, within

    layout = pipeline.layout(tmp_path)
    files = write_files(tmp_path, happy)
    reason = "layout_invalid"
    if problem == "deep-layout":
        layout.write_text(layout.read_text() + "\ndeep = " + "[" * 3000 + "]" * 3000 + "\n")
    elif problem == "fifo-layout":
        layout.unlink()
        make_fifo(layout)
    else:
        files.append(str(make_fifo(tmp_path / "stage.fifo")))
        reason = "usage"
    command = ["chain", "verify", *files, "--layout", str(layout)]
    assert within(30, lambda: main(command)) == 2
    assert f"attestctl: {reason}: " in capsys.readouterr().err


def test_the_table_has_a_row_per_stage_and_ends_with_the_verdict(
    pipeline: Pipeline, happy: dict[str, BuiltStage], tmp_path: Path
) -> None:
    result = verify(pipeline, tmp_path, attestation_bytes(happy))
    assert result.affirming
    rows = [stage.table_row() for stage in result.stages]
    assert [row[0] for row in rows] == list(STAGES)
    assert [row[-1] for row in rows] == ["ok"] * 4
    assert all(len(row) == len(TABLE_HEADER) for row in rows)
    lines = result.render_table().splitlines()
    assert lines[0].split("  ")[0] == "STAGE" and len(lines) == 1 + 4 + 2
    assert lines[-2:] == [
        "freshness: not checked (the layout sets no max_age_seconds)",
        "chain llm-release run run-42: VERIFIED",
    ]


def test_a_broken_chain_row_and_verdict_name_the_reason(
    pipeline: Pipeline, happy: dict[str, BuiltStage], tmp_path: Path
) -> None:
    files = attestation_bytes(happy)
    del files[1]
    result = verify(pipeline, tmp_path, files)
    assert not result.affirming
    table = result.render_table()
    assert "chain: stages: stage_missing: no attestation of stage(s) train\n" in table
    assert table.endswith("chain llm-release run run-42: NOT VERIFIED (stage_missing)\n")
