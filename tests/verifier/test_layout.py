"""The layout file is read strictly: every mistake names its key and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from attestd.tee.tdx.simulated import SimulatedTdxBackend
from attestd.verifier.layout import LayoutError, load_layout
from attestd.verifier.policy import TrustRoot

MRTD = "ab" * 48


@pytest.fixture(scope="module")
def root_pem(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return SimulatedTdxBackend.open(tmp_path_factory.mktemp("td")).trust_root_pem()


def write(directory: Path, root_pem: bytes, text: str) -> Path:
    (directory / "root.pem").write_bytes(root_pem)
    path = directory / "layout.toml"
    path.write_text(text)
    return path


GOOD = f"""
pipeline = "llm-release"
allowed_licenses = ["Apache-2.0", "GPL-2.0-only WITH Classpath-exception-2.0"]

[freshness]
max_age_seconds = 86400

[[artifacts]]
name = "/models/base"
required_tags = ["eval:passed"]
required = true

[[stages]]
name = "prepare"
tee = ["tdx"]
required_tags = ["pii:none"]
[stages.trust.tdx]
root = "simulated"
simulated_root = "root.pem"
[stages.tdx]
mrtd = ["{MRTD}"]

[[stages]]
name = "train"
tee = ["tdx", "sev-snp"]
agent_keys = ["sha256:{"cd" * 32}"]
inputs_from_previous = false
[stages.trust.tdx]
root = "intel"
[stages.trust.sev-snp]
root = "amd"
[stages.snp]
measurement = ["{"ef" * 48}"]
"""


def test_a_full_layout_is_read(tmp_path: Path, root_pem: bytes) -> None:
    layout = load_layout(write(tmp_path, root_pem, GOOD))
    assert layout.pipeline == "llm-release"
    assert [s.name for s in layout.stages] == ["prepare", "train"]
    prepare, train = layout.stages
    assert prepare.trust["tdx"].root is TrustRoot.SIMULATED
    assert prepare.tdx.mrtd == (MRTD,)
    assert prepare.required_tags == ("pii:none",)
    assert train.tees == ("tdx", "sev-snp")
    assert train.trust["sev-snp"].root is TrustRoot.AMD
    assert train.snp.measurement == ("ef" * 48,)
    assert train.agent_keys == ("sha256:" + "cd" * 32,)
    assert not train.inputs_from_previous and prepare.inputs_from_previous
    assert layout.artifacts[0].required
    assert layout.freshness().max_age_seconds == 86400
    policy = prepare.policy("tdx", layout.freshness(), ())
    assert policy.trust.tee == "tdx" and policy.tdx.mrtd == (MRTD,)


def test_without_max_age_freshness_is_off(tmp_path: Path, root_pem: bytes) -> None:
    layout = load_layout(write(tmp_path, root_pem, GOOD.replace("max_age_seconds = 86400", "")))
    assert layout.max_age_seconds is None
    assert layout.freshness().max_age_seconds is None  # no bound, not a far-off one


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("pipeline = ", "pipline = "), "unknown key 'pipline'"),
        (('required_tags = ["pii:none"]', 'required_tag = ["x"]'), "stages[0].required_tag"),
        (("mrtd = [", "mrdt = ["), "unknown key 'tdx.mrdt'"),
        (("[freshness]", "[freshness]\nmax_age = 1"), "freshness.max_age"),
        (('root = "amd"', 'root = "amd"\nsimulated_root = "root.pem"'), "stages[1].trust.sev-snp"),
        (('tee = ["tdx"]', 'tee = ["sgx"]'), "'sgx' is not"),
        (('tee = ["tdx"]', 'tee = ["tdx", "sev-snp"]'), "stages[0].trust.sev-snp is required"),
        (('root = "intel"', 'root = "amd"'), "vouches for sev-snp, not tdx"),
        (('"Apache-2.0", ', '"Apache-2.0 OR MIT", '), "compound expression"),
        (('"Apache-2.0", ', '"Apache 2.0", '), "'Apache 2.0': unexpected"),
        (('agent_keys = ["sha256:', 'agent_keys = ["sha1:'), "agent_keys"),
        (('name = "train"', 'name = "prepare"'), "appears twice"),
        (("max_age_seconds = 86400", "max_age_seconds = 0"), "must be positive"),
        (('mrtd = ["', 'mrtd = ["ab'), "stages[0] (prepare): tdx.mrtd[0] must be 96 hex"),
    ],
)
def test_mistakes_name_the_key_and_the_file(
    tmp_path: Path, root_pem: bytes, edit: tuple[str, str], message: str
) -> None:
    assert edit[0] in GOOD
    path = write(tmp_path, root_pem, GOOD.replace(edit[0], edit[1], 1))
    with pytest.raises(LayoutError) as caught:
        load_layout(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)
    assert caught.value.reason == "layout_invalid"


def test_missing_pipeline_and_stages_are_errors(tmp_path: Path, root_pem: bytes) -> None:
    with pytest.raises(LayoutError, match="pipeline is required"):
        load_layout(write(tmp_path, root_pem, "[[stages]]\nname = 'x'\n"))
    with pytest.raises(LayoutError, match="stages must be a non-empty array"):
        load_layout(write(tmp_path, root_pem, 'pipeline = "p"\n'))


def test_unreadable_or_invalid_files_are_layout_errors(tmp_path: Path, root_pem: bytes) -> None:
    with pytest.raises(LayoutError, match="cannot read"):
        load_layout(tmp_path / "absent.toml")
    with pytest.raises(LayoutError, match="not valid TOML"):
        load_layout(write(tmp_path, root_pem, "pipeline = \n"))


def test_layout_nested_3000_levels_is_a_layout_error(tmp_path: Path, root_pem: bytes) -> None:
    path = write(tmp_path, root_pem, 'pipeline = "p"\nx = ' + "{a = " * 3000 + "1" + "}" * 3000)
    with pytest.raises(LayoutError, match="nested too deeply") as caught:
        load_layout(path)
    assert caught.value.reason == "layout_invalid"


def test_a_fifo_as_layout_is_refused_without_blocking(tmp_path: Path) -> None:
    from tests.test_shared_files import make_fifo, within

    fifo = make_fifo(tmp_path / "layout.toml")
    with pytest.raises(LayoutError, match="FIFO") as caught:
        within(10, lambda: load_layout(fifo))
    assert caught.value.reason == "layout_invalid"


def test_an_oversize_layout_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "layout.toml"
    path.write_bytes(b"#" * ((1 << 20) + 1))
    with pytest.raises(LayoutError, match="larger than"):
        load_layout(path)
