"""Closing a chain with an OpenSSF model signing (OMS) signature on the final product."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import model_signing.hashing
import model_signing.signing
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from model_signing._signing.signing import Payload

from attestd.cli import main
from attestd.verifier.chain import verify_chain
from attestd.verifier.layout import load_layout
from attestd.verifier.oms import (
    MAX_BUNDLE_BYTES,
    MAX_KEY_FILE_BYTES,
    OmsClosing,
    OmsInputError,
    OmsInputTooLargeError,
    OmsSignatureError,
    OmsUnavailableError,
    verify_oms_bundle,
)
from attestd.verifier.result import AppraisalStatus, CheckStatus
from tests.verifier.chain_builder import (
    FLOW,
    RELEASE,
    STAGES,
    Pipeline,
    attestation_bytes,
    make_tdx_agent,
    retag,
    with_outputs,
)


def write_keys(directory: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    private = directory / f"{name}.pem"
    public = directory / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def make_model(directory: Path) -> Path:
    model = directory / "model"
    (model / "shards").mkdir(parents=True)
    (model / "config.json").write_text('{"layers": 2}\n')
    (model / "shards" / "00.bin").write_bytes(bytes(range(256)) * 16)
    return model


def model_digest(model: Path) -> str:
    """The digest model_signing signs for ``model`` (attestd's directory digest is the same)."""
    (subject,) = Payload(model_signing.hashing.hash(model)).statement.pb.subject
    return str(subject.digest["sha256"])


def sign(model: Path, private: Path, bundle: Path) -> Path:
    model_signing.signing.Config().use_elliptic_key_signer(private_key=private).sign(model, bundle)
    return bundle


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    agent = make_tdx_agent(tmp_path_factory.mktemp("tdx"))
    return Pipeline(dict.fromkeys(STAGES, agent))


def chain_for(pipeline: Pipeline, model: Path) -> list[bytes]:
    """A chain whose package stage outputs ``model`` under its digest."""
    released = retag(RELEASE, name=str(model), digest={"sha256": model_digest(model)})
    return attestation_bytes(pipeline.run(flow=with_outputs(FLOW, "package", outputs=[released])))


def test_bundle_verifies_and_names_the_model_digest(tmp_path: Path) -> None:
    model = make_model(tmp_path)
    private, public = write_keys(tmp_path, "publisher")
    signed = verify_oms_bundle(OmsClosing(sign(model, private, tmp_path / "m.sig"), public))
    assert signed.sha256 == model_digest(model)
    assert signed.model_name == "model"
    assert signed.files == 2


def test_chain_closed_by_the_signature_of_its_last_output_verifies(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    model = make_model(tmp_path)
    private, public = write_keys(tmp_path, "publisher")
    bundle = sign(model, private, tmp_path / "m.sig")
    result = verify_chain(
        chain_for(pipeline, model),
        load_layout(pipeline.layout(tmp_path)),
        oms=OmsClosing(bundle, public),
    )
    assert result.status is AppraisalStatus.AFFIRMING, result.reasons
    assert [(c.name, c.status) for c in result.checks[-2:]] == [
        ("oms_signature", CheckStatus.PASS),
        ("oms_digest", CheckStatus.PASS),
    ]
    assert result.to_json()["oms"]["signature"]["sha256"] == model_digest(model)


def test_model_modified_after_the_chain_is_oms_digest_mismatch(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    model = make_model(tmp_path)
    attestations = chain_for(pipeline, model)
    (model / "config.json").write_text('{"layers": 3}\n')  # changed, then signed
    private, public = write_keys(tmp_path, "publisher")
    bundle = sign(model, private, tmp_path / "m.sig")
    result = verify_chain(
        attestations, load_layout(pipeline.layout(tmp_path)), oms=OmsClosing(bundle, public)
    )
    assert result.reasons == ("oms_digest_mismatch",)


def test_bundle_under_another_key_is_oms_signature_invalid(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    model = make_model(tmp_path)
    private, _ = write_keys(tmp_path, "publisher")
    _, stranger = write_keys(tmp_path, "stranger")
    bundle = sign(model, private, tmp_path / "m.sig")
    with pytest.raises(OmsSignatureError) as caught:
        verify_oms_bundle(OmsClosing(bundle, stranger))
    assert caught.value.reason == "oms_signature_invalid"
    result = verify_chain(
        chain_for(pipeline, model),
        load_layout(pipeline.layout(tmp_path)),
        oms=OmsClosing(bundle, stranger),
    )
    assert result.reasons == ("oms_signature_invalid",)


def test_tampered_statement_is_oms_signature_invalid(tmp_path: Path) -> None:
    model = make_model(tmp_path)
    private, public = write_keys(tmp_path, "publisher")
    bundle = sign(model, private, tmp_path / "m.sig")
    document = json.loads(bundle.read_text())
    envelope = document["dsseEnvelope"]
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["subject"][0]["digest"]["sha256"] = "00" * 32
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    bundle.write_text(json.dumps(document))
    with pytest.raises(OmsSignatureError):
        verify_oms_bundle(OmsClosing(bundle, public))


def test_bundle_larger_than_attestd_reads_is_oms_input_too_large(tmp_path: Path) -> None:
    _, public = write_keys(tmp_path, "publisher")
    huge = tmp_path / "huge.sig"
    with huge.open("wb") as out:
        out.truncate(MAX_BUNDLE_BYTES + 1)  # sparse: nothing is written, the size is refused
    with pytest.raises(OmsInputTooLargeError, match=r"huge\.sig") as err:
        verify_oms_bundle(OmsClosing(huge, public))
    assert err.value.reason == "oms_input_too_large"


def test_key_file_larger_than_attestd_reads_is_oms_input_too_large(tmp_path: Path) -> None:
    model = make_model(tmp_path)
    private, _ = write_keys(tmp_path, "publisher")
    bundle = sign(model, private, tmp_path / "m.sig")
    key = tmp_path / "huge.pem"
    key.write_bytes(b"-" * (MAX_KEY_FILE_BYTES + 1))
    with pytest.raises(OmsInputTooLargeError, match=r"huge\.pem"):
        verify_oms_bundle(OmsClosing(bundle, key))


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unreadable_bundle_is_oms_unreadable(tmp_path: Path, kind: str) -> None:
    _, public = write_keys(tmp_path, "publisher")
    bundle = tmp_path / "m.sig"
    if kind == "directory":
        bundle.mkdir()
    with pytest.raises(OmsInputError, match=r"m\.sig") as err:
        verify_oms_bundle(OmsClosing(bundle, public))
    assert err.value.reason == "oms_unreadable"


def test_missing_model_signing_says_which_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_model(tmp_path)
    private, public = write_keys(tmp_path, "publisher")
    bundle = sign(model, private, tmp_path / "m.sig")
    monkeypatch.setitem(sys.modules, "model_signing._signing", None)
    with pytest.raises(OmsUnavailableError, match=r"attestd\[oms\]"):
        verify_oms_bundle(OmsClosing(bundle, public))


def test_cli_closes_the_chain_with_oms(
    pipeline: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model(tmp_path)
    private, public = write_keys(tmp_path, "publisher")
    bundle = sign(model, private, tmp_path / "m.sig")
    files = []
    for index, data in enumerate(chain_for(pipeline, model)):
        path = tmp_path / f"{index}.json"
        path.write_bytes(data)
        files.append(str(path))
    layout = str(pipeline.layout(tmp_path))
    args = ["chain", "verify", *files, "--layout", layout, "--oms-bundle", str(bundle)]
    assert main([*args, "--oms-key", str(public), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["oms"]["signature"]["modelName"] == "model"
    _, stranger = write_keys(tmp_path, "stranger")
    assert main([*args, "--oms-key", str(stranger)]) == 1
    assert "oms_signature_invalid" in capsys.readouterr().out
