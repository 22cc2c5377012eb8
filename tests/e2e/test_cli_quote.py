"""`attestctl quote inspect` and `attestctl quote verify` over real and simulated quotes.

0 valid (inspect: parsed); 1 verified and not valid; 2 unreadable input or bad usage.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attestd.cli import EXIT_NOT_AFFIRMING, EXIT_OK, EXIT_USAGE, main
from attestd.tee.snp import _simulated_pki as snp_pki
from attestd.tee.snp.abi import parse_report
from attestd.tee.snp.simulated import STATE_SUBDIR, SimulatedSnpBackend
from attestd.tee.tdx.abi import parse_quote
from attestd.tee.tdx.simulated import SimulatedTdxBackend

NOW = "2025-06-23T00:00:00Z"  # every real PCK chain, the Milan VCEK and dcapqvl's collateral
EXPIRED = "2026-11-23T00:00:00Z"  # dcapqvl's collateral has expired, its PCK chain has not
TDX_FILES = ("dcapqvl_quote_v4.bin", "spr_e4_quote_v4.bin", "cos113_quote_v4_padded.bin")


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, dict[str, object]]:
    code = main(["quote", *(str(a) for a in argv)])
    out = capsys.readouterr().out
    return code, json.loads(out) if out else {}


def own_length(raw: bytes) -> bytes:
    """A v4 quote cut to its own length (go-tdx-guest appends text to the SPR quote)."""
    return raw[: 0x27C + int.from_bytes(raw[0x278:0x27C], "little")]


@pytest.fixture(scope="module", params=TDX_FILES)
def tdx_quote(
    request: pytest.FixtureRequest, vectors_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Each real quote as a file that is a quote and nothing else (zero padding allowed)."""
    name: str = request.param
    raw = (vectors_dir / "tdx" / name).read_bytes()
    if name == "spr_e4_quote_v4.bin":
        path = tmp_path_factory.mktemp("spr") / name
        path.write_bytes(own_length(raw))
        return path
    return vectors_dir / "tdx" / name


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A simulated TD's quote, its collateral and its root, as files."""
    backend = SimulatedTdxBackend.open(tmp_path_factory.mktemp("sim-state"))
    out = tmp_path_factory.mktemp("sim-files")
    (out / "quote.bin").write_bytes(backend.get_quote(bytes(64)))
    (out / "collateral.json").write_text(backend.collateral_json())
    (out / "root.pem").write_bytes(backend.trust_root_pem())
    return out / "quote.bin", out / "collateral.json", out / "root.pem"


# -- inspect -----------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["binary", "hex"])
def test_inspect_prints_every_tdx_field_as_the_parser_reads_it(
    tdx_quote: Path, encoding: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = tdx_quote.read_bytes()
    path = tdx_quote
    if encoding == "hex":
        path = tmp_path / "quote.hex"
        text = raw.hex()
        path.write_text("\n".join(text[i : i + 64] for i in range(0, len(text), 64)) + "\n")
    code, out = run(capsys, "inspect", path)
    assert code == EXIT_OK
    quote = parse_quote(raw)
    assert out["tee"] == "tdx" and out["encoding"] == encoding
    assert out["size"] == len(quote.to_bytes())
    assert out["header"] == {
        "version": 4,
        "attestationKeyType": 2,
        "teeType": 0x81,
        "qeSvn": quote.header.qe_svn,
        "pceSvn": quote.header.pce_svn,
        "qeVendorId": quote.header.qe_vendor_id.hex(),
        "userData": quote.header.user_data.hex(),
    }
    body = out["body"]
    assert isinstance(body, dict)
    assert body["mrTd"] == quote.body.mr_td.hex()
    assert body["rtmrs"] == [r.hex() for r in quote.body.rtmrs]
    assert body["reportData"] == quote.body.report_data.hex()
    assert body["teeTcbSvn"] == quote.body.tee_tcb_svn.hex()
    signature = out["signatureData"]
    assert isinstance(signature, dict)
    assert signature["attestationKey"] == quote.signature_data.attestation_key.hex()
    certification = signature["certificationData"]
    assert certification["qeReport"]["mrEnclave"] == (
        quote.certification_data.qe_report.mr_enclave.hex()
    )
    subjects = [c["subject"] for c in certification["pckChain"]]
    assert subjects == [c.subject.rfc4514_string() for c in quote.pck_chain()]
    assert subjects[-1].endswith("CN=Intel SGX Root CA")


def test_inspect_prints_every_snp_field_decoded_for_the_product(
    vectors_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = vectors_dir / "snp" / "milan_report_v2.bin"
    code, out = run(capsys, "inspect", path, "--product", "Milan")
    assert code == EXIT_OK
    report = parse_report(path.read_bytes())
    fields = out["fields"]
    assert isinstance(fields, dict)
    assert fields["measurement"] == report.measurement.hex()
    assert fields["chipId"] == report.chip_id.hex()
    assert fields["policy"] == report.policy
    assert out["guestPolicy"]["debug"] is report.guest_policy.debug  # type: ignore[index]
    assert out["product"] == "Milan" and out["productSource"] == "option"
    reported = report.tcb("Milan")
    assert out["tcb"]["reportedTcb"] == {  # type: ignore[index]
        "raw": f"{report.reported_tcb:016x}",
        "bootloader": reported.bootloader,
        "tee": reported.tee,
        "snp": reported.snp,
        "microcode": reported.microcode,
        "fmc": None,
    }
    assert out["signature"] == {
        "r": f"{report.signature_r:096x}",
        "s": f"{report.signature_s:096x}",
    }


def test_inspect_of_a_v2_report_without_a_product_keeps_the_tcb_raw(
    vectors_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(capsys, "inspect", vectors_dir / "snp" / "milan_report_v2.bin")
    assert code == EXIT_OK
    assert out["product"] is None
    assert list(out["tcb"]["reportedTcb"]) == ["raw"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"\x00" * 300, "header at offset 0x0"),
        (b"this is not a quote\n", "header at offset 0x0"),
        (b"abc", "hex at offset"),
    ],
)
def test_inspect_of_garbage_exits_2_naming_the_field(
    data: bytes, field: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "garbage"
    path.write_bytes(data)
    assert main(["quote", "inspect", str(path)]) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("attestctl: quote_malformed: ") and field in err


def test_inspect_of_a_truncated_quote_names_the_field_and_offset(
    vectors_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "truncated.bin"
    path.write_bytes((vectors_dir / "tdx" / "dcapqvl_quote_v4.bin").read_bytes()[:200])
    assert main(["quote", "inspect", str(path)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "body.mr_td at offset 0xb8: truncated" in err


def test_trailing_text_after_a_quote_is_malformed(
    vectors_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = vectors_dir / "tdx" / "spr_e4_quote_v4.bin"
    assert main(["quote", "inspect", str(raw)]) == EXIT_USAGE
    offset = len(own_length(raw.read_bytes()))
    assert f"trailing_data at offset {offset:#x}" in capsys.readouterr().err


def test_a_malformed_snp_report_names_the_field(
    vectors_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = bytearray((vectors_dir / "snp" / "milan_report_v2.bin").read_bytes())
    raw[0x4C] = 1  # reserved, must be zero
    path = tmp_path / "report.bin"
    path.write_bytes(bytes(raw))
    assert main(["quote", "inspect", str(path)]) == EXIT_USAGE
    assert "_reserved_4c at offset 0x4c" in capsys.readouterr().err


def test_bytes_that_read_as_both_tees_are_refused_until_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # SEV-SNP version 4 with guest_svn 0x81 is also a TDX v4 header with TEE type 0x81.
    data = bytearray(1184)
    data[0] = 4
    data[4] = 0x81
    path = tmp_path / "both.bin"
    path.write_bytes(bytes(data))
    assert main(["quote", "inspect", str(path)]) == EXIT_USAGE
    assert "--tee" in capsys.readouterr().err
    assert main(["quote", "inspect", str(path), "--tee", "tdx"]) == EXIT_USAGE
    assert "header.attestation_key_type" in capsys.readouterr().err


# -- verify: TDX -------------------------------------------------------------------


def test_dcapqvl_quote_with_its_collateral_is_up_to_date_on_the_day(
    vectors_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tdx = vectors_dir / "tdx"
    code, out = run(
        capsys,
        "verify",
        tdx / "dcapqvl_quote_v4.bin",
        "--collateral",
        tdx / "dcapqvl_quote_v4.collateral.json",
        "--now",
        NOW,
    )
    assert code == EXIT_OK
    assert out["tee"] == "tdx" and out["valid"] is True and "reason" not in out
    assert out["tcbStatus"] == "UpToDate" and out["tcbChecked"] is True
    assert out["advisoryIds"] == []
    assert out["root"]["kind"] == "intel"  # type: ignore[index]
    assert out["checkedAt"] == "2025-06-23T00:00:00.000000Z"


def test_dcapqvl_quote_fails_once_its_collateral_expired(
    vectors_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tdx = vectors_dir / "tdx"
    code, out = run(
        capsys,
        "verify",
        tdx / "dcapqvl_quote_v4.bin",
        "--collateral",
        tdx / "dcapqvl_quote_v4.collateral.json",
        "--now",
        EXPIRED,
    )
    assert code == EXIT_NOT_AFFIRMING
    assert out["valid"] is False and out["reason"] == "collateral_expired"
    assert out["tcbStatus"] is None
    assert {"name": "signature_chain", "status": "pass"} in out["checks"]  # type: ignore[operator]


def test_real_quotes_verify_chain_only_without_collateral(
    tdx_quote: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(capsys, "verify", tdx_quote, "--now", NOW)
    assert code == EXIT_OK
    assert out["valid"] is True
    assert out["tcbStatus"] is None and out["tcbChecked"] is False
    assert "TCB status not checked" in str(out["message"])


def test_a_flipped_bit_fails_with_its_reason(
    vectors_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = bytearray((vectors_dir / "tdx" / "cos113_quote_v4_padded.bin").read_bytes())
    raw[0x200] ^= 1  # inside REPORTDATA, covered by the quote signature
    path = tmp_path / "flipped.bin"
    path.write_bytes(bytes(raw))
    code, out = run(capsys, "verify", path, "--now", NOW)
    assert code == EXIT_NOT_AFFIRMING
    assert out["valid"] is False and out["reason"] == "quote_signature_invalid"


def test_simulated_quote_verifies_under_its_own_root_only(
    simulated: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    quote, collateral, root = simulated
    code, out = run(capsys, "verify", quote, "--collateral", collateral, "--root", root)
    assert code == EXIT_OK
    assert out["valid"] is True and out["tcbStatus"] == "UpToDate"
    assert out["root"]["kind"] == "file" and out["root"]["path"] == str(root)  # type: ignore[index]

    code, out = run(capsys, "verify", quote, "--collateral", collateral, "--root", "intel")
    assert code == EXIT_NOT_AFFIRMING
    assert out["reason"] == "untrusted_root"


def test_root_simulated_without_a_file_explains_what_to_give(
    simulated: tuple[Path, Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["quote", "verify", str(simulated[0]), "--root", "simulated"]) == EXIT_USAGE
    assert "trust-root export" in capsys.readouterr().err


# -- verify: SEV-SNP ---------------------------------------------------------------


def test_milan_report_verifies_under_amd_roots(
    vectors_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snp = vectors_dir / "snp"
    code, out = run(
        capsys,
        "verify",
        snp / "milan_report_v2.bin",
        "--vcek",
        snp / "milan_vcek.der",
        "--root",
        "amd",
        "--now",
        NOW,
    )
    assert code == EXIT_OK
    assert out["tee"] == "sev-snp" and out["valid"] is True
    assert out["product"] == "Milan"
    report = parse_report((snp / "milan_report_v2.bin").read_bytes())
    assert out["tcb"]["reportedTcb"]["snp"] == report.tcb("Milan").snp  # type: ignore[index]
    assert out["vcek"]["productName"] == "Milan-B0"  # type: ignore[index]


def test_milan_report_under_the_genoa_root_is_untrusted(
    vectors_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snp = vectors_dir / "snp"
    code, out = run(
        capsys,
        "verify",
        snp / "milan_report_v2.bin",
        "--vcek",
        snp / "milan_vcek.der",
        "--root",
        snp / "vendor" / "ask_ark_genoa.pem",
        "--now",
        NOW,
    )
    assert code == EXIT_NOT_AFFIRMING
    assert out["valid"] is False and out["reason"] == "untrusted_root"


def test_simulated_snp_report_verifies_with_its_certificate_table_under_its_ark(
    tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = SimulatedSnpBackend.open(tmp_path_factory.mktemp("snp-state"))
    out_dir = tmp_path_factory.mktemp("snp-files")
    report, table = backend.get_report_with_certificates(bytes(64))
    (out_dir / "report.bin").write_bytes(report)
    (out_dir / "certs.bin").write_bytes(table)
    (out_dir / "ark.pem").write_bytes(backend.trust_root_pem())
    argv = ("verify", out_dir / "report.bin", "--certs", out_dir / "certs.bin")
    code, out = run(capsys, *argv, "--root", out_dir / "ark.pem")
    assert code == EXIT_OK and out["valid"] is True and out["product"] == "Milan"

    code, out = run(capsys, *argv)  # AMD's ARKs by default
    assert code == EXIT_NOT_AFFIRMING and out["reason"] == "untrusted_root"


def test_milan_report_without_a_vcek_is_bad_usage(
    vectors_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["quote", "verify", str(vectors_dir / "snp" / "milan_report_v2.bin")]) == 2
    assert "--vcek" in capsys.readouterr().err


# -- usage -------------------------------------------------------------------------


def test_a_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.bin"
    assert main(["quote", "verify", str(missing)]) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == "" and f"cannot read quote {missing}" in err
    assert main(["quote", "inspect", str(missing)]) == EXIT_USAGE


@pytest.mark.parametrize("now", ["2025-06-23T00:00:00", "yesterday"])
def test_a_bad_now_exits_2(now: str, vectors_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    quote = vectors_dir / "tdx" / "dcapqvl_quote_v4.bin"
    with pytest.raises(SystemExit) as exited:
        main(["quote", "verify", str(quote), "--now", now])
    assert exited.value.code == EXIT_USAGE
    assert "--now" in capsys.readouterr().err


def test_simulated_snp_report_checks_the_arks_crl_when_given_one(
    tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path_factory.mktemp("snp-crl-state")
    backend = SimulatedSnpBackend.open(state)
    directory = state / STATE_SUBDIR
    platform = snp_pki.load(directory)
    out_dir = tmp_path_factory.mktemp("snp-crl-files")
    report, table = backend.get_report_with_certificates(bytes(64))
    (out_dir / "report.bin").write_bytes(report)
    (out_dir / "certs.bin").write_bytes(table)
    (out_dir / "ark.pem").write_bytes(backend.trust_root_pem())
    listed = snp_pki.issue_crl(platform.ark, platform.ark_key, revoked=[platform.ask.serial_number])
    (out_dir / "revoked.crl").write_bytes(listed)
    argv = ("verify", out_dir / "report.bin", "--certs", out_dir / "certs.bin")
    argv += ("--root", out_dir / "ark.pem")

    code, out = run(capsys, *argv)
    assert code == EXIT_OK and out["crlChecked"] is False

    good = snp_pki.crl_store(directory) / "Milan-vcek.crl"  # the empty CRL the PKI keeps
    code, out = run(capsys, *argv, "--crl", good)
    assert code == EXIT_OK and out["crlChecked"] is True

    code, out = run(capsys, *argv, "--crl", out_dir / "revoked.crl")
    assert code == EXIT_NOT_AFFIRMING and out["reason"] == "certificate_revoked"

    # A file named on the command line that is not there is bad usage, as for --vcek.
    assert main(["quote", *map(str, argv), "--crl", str(out_dir / "absent.crl")]) == EXIT_USAGE
    assert "collateral_unavailable" in capsys.readouterr().err

    (out_dir / "junk.crl").write_bytes(b"not a CRL")
    code, out = run(capsys, *argv, "--crl", out_dir / "junk.crl")
    assert code == EXIT_NOT_AFFIRMING and out["reason"] == "collateral_malformed"
