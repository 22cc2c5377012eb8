"""Policy files are read strictly: every mistake names its key and its file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from attestd.verifier.errors import PolicyError
from attestd.verifier.policy import TrustRoot, load_policy

MRTD = "AB" * 48
SHA256 = "cd" * 32


def _self_signed_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test root")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return path


def test_full_policy_loads_with_hex_lowercased_and_root_relative_to_file(tmp_path: Path) -> None:
    (tmp_path / "root.pem").write_bytes(_self_signed_pem())
    path = _write(
        tmp_path,
        f"""
[trust]
root = "simulated"
simulated_root = "root.pem"
[freshness]
max_age_seconds = 60
max_clock_skew_seconds = 5
[tdx]
mrtd = ["{MRTD}"]
rtmr0 = ["{MRTD}"]
allow_debug = true
[[artifacts]]
name = "/srv/models/demo"
sha256 = "{SHA256.upper()}"
[[artifacts]]
sha256 = "{SHA256}"
required = false
""",
    )
    policy = load_policy(path)
    assert policy.trust.root is TrustRoot.SIMULATED
    assert policy.trust.simulated_root_path == tmp_path / "root.pem"
    assert policy.trust.simulated_root is not None
    assert policy.freshness.max_age_seconds == 60
    assert policy.freshness.max_clock_skew_seconds == 5
    assert policy.tdx.mrtd == (MRTD.lower(),)
    assert policy.tdx.rtmr1 is None
    assert policy.tdx.allow_debug is True
    assert policy.artifacts[0].name == "/srv/models/demo"
    assert policy.artifacts[0].sha256 == SHA256
    assert policy.artifacts[0].required is True
    assert policy.artifacts[1].name is None
    assert policy.artifacts[1].required is False


def test_minimal_intel_policy_takes_defaults(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path, '[trust]\nroot = "intel"\n'))
    assert policy.trust.root is TrustRoot.INTEL
    assert policy.freshness.max_age_seconds == 300
    assert policy.freshness.max_clock_skew_seconds == 30
    assert policy.tdx.mrtd is None
    assert policy.tdx.allow_debug is False
    assert policy.artifacts == ()


def test_unknown_key_is_rejected_naming_key_and_file(tmp_path: Path) -> None:
    path = _write(tmp_path, f'[trust]\nroot = "intel"\n[tdx]\nmrdt = ["{MRTD}"]\n')
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert caught.value.reason == "policy_invalid"
    assert "tdx.mrdt" in str(caught.value)
    assert str(path) in str(caught.value)


def test_unknown_table_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, '[trust]\nroot = "intel"\n[sgx]\nmrenclave = []\n')
    with pytest.raises(PolicyError, match="'sgx'"):
        load_policy(path)


def test_unknown_key_in_artifact_is_rejected(tmp_path: Path) -> None:
    path = _write(
        tmp_path, f'[trust]\nroot = "intel"\n[[artifacts]]\nsha256 = "{SHA256}"\nsha512 = "x"\n'
    )
    with pytest.raises(PolicyError, match=r"artifacts\[0\]\.sha512"):
        load_policy(path)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", r"\[trust\]"),
        ("[trust]\n", "trust.root is required"),
        ('[trust]\nroot = "arm"\n', "trust.root must be one of"),
        ('[trust]\nroot = "amd"\ntee = "tdx"\n', "vouches for sev-snp"),
        ('[trust]\nroot = "intel"\ntee = "sgx"\n', "trust.tee must be"),
        (
            '[trust]\nroot = "intel"\n[tdx]\nallowed_tcb_statuses = ["Revoked"]\n',
            "never acceptable",
        ),
        ('[trust]\nroot = "intel"\n[tdx]\nmin_tee_tcb_svn = "00"\n', "32 hex digits"),
        ('[trust]\nroot = "intel"\n[tdx.collateral]\nsource = "file"\n', "path is required"),
        ('[trust]\nroot = "intel"\n[tdx.collateral]\nsource = "pccs"\n', "required with"),
        ('[trust]\nroot = "intel"\n[tdx.collateral]\nsource = "magic"\n', "source must be"),
        ('[trust]\nroot = "amd"\n[snp]\nvmpl = [4]\n', "0 to 3"),
        ('[trust]\nroot = "amd"\n[snp]\nproduct = "Naples"\n', "product must be"),
        ('[trust]\nroot = "amd"\n[snp.min_tcb]\nsnp = 256\n', "0 to 255"),
        ('[trust]\nroot = "amd"\n[snp.min_tcb]\nucode = 1\n', "unknown key"),
        ('[trust]\nroot = "amd"\n[snp]\nhost_data = ["ab"]\n', "64 hex digits"),
        ('[trust]\nroot = "simulated"\n', "simulated_root is required"),
        ('[trust]\nroot = "intel"\nsimulated_root = "r.pem"\n', "only allowed"),
        ('[trust]\nroot = "simulated"\nsimulated_root = "missing.pem"\n', "cannot read"),
        ('[trust]\nroot = "intel"\n[freshness]\nmax_age_seconds = 0\n', "positive"),
        ('[trust]\nroot = "intel"\n[freshness]\nmax_age_seconds = true\n', "integer"),
        ('[trust]\nroot = "intel"\n[freshness]\nmax_clock_skew_seconds = -1\n', "negative"),
        ('[trust]\nroot = "intel"\n[tdx]\nmrtd = ["abcd"]\n', r"tdx.mrtd\[0\] must be 96"),
        ('[trust]\nroot = "intel"\n[tdx]\nmrtd = []\n', "non-empty array"),
        (f'[trust]\nroot = "intel"\n[tdx]\nrtmr2 = ["{"zz" * 48}"]\n', "hex digits"),
        ('[trust]\nroot = "intel"\n[tdx]\nallow_debug = "no"\n', "true or false"),
        ('[trust]\nroot = "intel"\n[[artifacts]]\nname = "x"\n', r"sha256 is required"),
        ('artifacts = 3\n[trust]\nroot = "intel"\n', "array of tables"),
        ("[trust\n", "not valid TOML"),
    ],
)
def test_invalid_policies_are_rejected(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(PolicyError, match=match) as caught:
        load_policy(_write(tmp_path, text))
    assert caught.value.reason == "policy_invalid"


def test_simulated_root_that_is_not_a_certificate_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "root.pem").write_text("not a certificate")
    path = _write(tmp_path, '[trust]\nroot = "simulated"\nsimulated_root = "root.pem"\n')
    with pytest.raises(PolicyError, match="not a PEM certificate"):
        load_policy(path)


def test_missing_policy_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read policy file"):
        load_policy(tmp_path / "absent.toml")


def test_snp_policy_loads(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f"""
[trust]
root = "amd"
[snp]
measurement = ["{MRTD}"]
host_data = ["{SHA256}"]
vmpl = [0, 1]
min_guest_svn = 2
allow_smt = false
product = "Genoa"
vcek_store = "vceks"
[snp.min_tcb]
bootloader = 3
snp = 8
microcode = 115
""",
    )
    policy = load_policy(path)
    assert policy.trust.root is TrustRoot.AMD
    assert policy.trust.tee == "sev-snp"
    assert policy.snp.measurement == (MRTD.lower(),)
    assert policy.snp.vmpl == (0, 1)
    assert policy.snp.min_tcb.snp == 8
    assert policy.snp.min_tcb.tee == 0
    assert policy.snp.allow_smt is False
    assert policy.snp.vcek_store == tmp_path / "vceks"


def test_tdx_tcb_and_collateral_options_load(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f"""
[trust]
root = "intel"
[tdx]
mr_owner = ["{MRTD}"]
min_tee_tcb_svn = "{"03" * 16}"
allowed_tcb_statuses = ["UpToDate", "SWHardeningNeeded"]
accepted_advisories = ["INTEL-SA-00837"]
require_ccel = true
[tdx.collateral]
source = "pccs"
pccs_url = "https://pccs.example:8081/"
cache_dir = "cache"
""",
    )
    policy = load_policy(path)
    assert policy.trust.tee == "tdx"
    assert policy.tdx.mr_owner == (MRTD.lower(),)
    assert policy.tdx.min_tee_tcb_svn == bytes([3] * 16)
    assert policy.tdx.allowed_tcb_statuses == ("UpToDate", "SWHardeningNeeded")
    assert policy.tdx.collateral.pccs_url == "https://pccs.example:8081/"
    assert policy.tdx.collateral.cache_dir == tmp_path / "cache"
    assert policy.tdx.require_ccel


def test_policy_nested_3000_levels_is_a_policy_error(tmp_path: Path) -> None:
    path = _write(tmp_path, '[trust]\nroot = "intel"\n[tdx]\nmrtd = ' + "[" * 3000 + "]" * 3000)
    with pytest.raises(PolicyError, match="nested too deeply") as caught:
        load_policy(path)
    assert caught.value.reason == "policy_invalid"


@pytest.mark.parametrize("fifo_name", ["policy.toml", "root.pem"])
def test_a_fifo_as_policy_or_simulated_root_is_refused_without_blocking(
    tmp_path: Path, fifo_name: str
) -> None:
    from tests.test_shared_files import make_fifo, within

    path = tmp_path / "policy.toml"
    if fifo_name == "root.pem":
        _write(tmp_path, '[trust]\nroot = "simulated"\nsimulated_root = "root.pem"\n')
    make_fifo(tmp_path / fifo_name)
    with pytest.raises(PolicyError, match="FIFO") as caught:
        within(10, lambda: load_policy(path))
    assert caught.value.reason == "policy_invalid"


def test_an_oversize_simulated_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "root.pem").write_bytes(b"-" * ((1 << 20) + 1))
    path = _write(tmp_path, '[trust]\nroot = "simulated"\nsimulated_root = "root.pem"\n')
    with pytest.raises(PolicyError, match="larger than"):
        load_policy(path)
