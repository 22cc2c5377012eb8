"""Stage attestations as Sigstore bundles: export under the agent key, keyless signing.

Offline only. Export is checked against the bundle format itself (media type,
base64 fields, the envelope the agent signed, its signature under the agent
key) and against sigstore_models' schema. Keyless signing runs with a fake
signing context in place of Fulcio and Rekor; the identity token is a real
JWT that sigstore's IdentityToken parses.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from attestd.cli import EXIT_NOT_AFFIRMING, EXIT_OK, EXIT_USAGE, main
from attestd.evidence import PAYLOAD_TYPE, key_id, load_public_key_pem, open_evidence
from attestd.evidence.provenance import StageAttestation, stage_nonce
from attestd.integrations.sigstore import (
    BUNDLE_MEDIA_TYPE,
    KeylessSigningError,
    NoIdentityError,
    SigstoreExportError,
    envelope_bundle,
    export_stage_bundles,
    sign_keyless,
)
from tests.verifier.chain_builder import BASE, DATASET, BuiltStage, attest, make_tdx_agent

pytest.importorskip("sigstore")


@dataclass(frozen=True)
class Stage:
    built: BuiltStage
    attestation: StageAttestation
    key: ec.EllipticCurvePublicKey
    file: Path


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Stage:
    agent = make_tdx_agent(tmp_path_factory.mktemp("tdx"))
    built = attest(agent, "train", (DATASET,), (BASE,), None)
    file = tmp_path_factory.mktemp("stage") / "train.attestation.json"
    file.write_bytes(built.attestation)
    attestation = StageAttestation(built.provenance_envelope, built.evidence)
    return Stage(built, attestation, agent.key.public_key(), file)


def _b64(text: object) -> bytes:
    assert isinstance(text, str)
    return base64.b64decode(text, validate=True)


def _pae(payload_type: str, payload: bytes) -> bytes:
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(payload), payload)


# -- export ----------------------------------------------------------------------


def test_export_is_a_v03_bundle_of_the_envelope_the_agent_signed(stage: Stage) -> None:
    bundle = json.loads(export_stage_bundles(stage.attestation).provenance)
    assert set(bundle) == {"mediaType", "verificationMaterial", "dsseEnvelope"}
    assert BUNDLE_MEDIA_TYPE == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert bundle["mediaType"] == BUNDLE_MEDIA_TYPE
    assert bundle["verificationMaterial"] == {
        "publicKey": {"hint": key_id(stage.key)},
        "tlogEntries": [],
    }
    # The agent writes standard base64, so the envelope is the agent's, member for member.
    assert bundle["dsseEnvelope"] == json.loads(stage.built.provenance_envelope)
    envelope = bundle["dsseEnvelope"]
    assert envelope["payloadType"] == PAYLOAD_TYPE
    assert _b64(envelope["payload"]) == stage.built.payload
    (signature,) = envelope["signatures"]
    assert signature["keyid"] == key_id(stage.key)
    assert 64 <= len(_b64(signature["sig"])) <= 72  # a DER ECDSA P-256 signature


def test_bundle_signature_verifies_under_the_agent_key_and_not_after_tampering(
    stage: Stage,
) -> None:
    envelope = json.loads(export_stage_bundles(stage.attestation).provenance)["dsseEnvelope"]
    payload, sig = _b64(envelope["payload"]), _b64(envelope["signatures"][0]["sig"])
    stage.key.verify(sig, _pae(envelope["payloadType"], payload), ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        stage.key.verify(sig, _pae(PAYLOAD_TYPE, payload + b" "), ec.ECDSA(hashes.SHA256()))


def test_bundle_payload_digest_is_the_evidence_nonce(stage: Stage) -> None:
    envelope = json.loads(export_stage_bundles(stage.attestation).provenance)["dsseEnvelope"]
    _, statement = open_evidence(stage.built.evidence)
    assert stage_nonce(_b64(envelope["payload"])) == statement.predicate.binding.nonce


def test_evidence_bundle_holds_the_evidence_envelope_under_the_same_key(stage: Stage) -> None:
    bundles = export_stage_bundles(stage.attestation)
    bundle = json.loads(bundles.evidence)
    assert bundle["dsseEnvelope"] == json.loads(stage.built.evidence)
    assert bundle["verificationMaterial"]["publicKey"]["hint"] == bundles.agent_key_id
    assert key_id(load_public_key_pem(bundles.agent_key_pem)) == bundles.agent_key_id


def test_sigstore_models_schema_accepts_the_bundle(stage: Stage) -> None:
    from sigstore_models.bundle.v1 import Bundle as BundleModel

    data = export_stage_bundles(stage.attestation).provenance
    model = BundleModel.from_json(data)
    assert model.verification_material.public_key is not None
    assert model.verification_material.public_key.hint == key_id(stage.key)
    assert model.verification_material.tlog_entries == []
    assert model.dsse_envelope is not None
    assert model.dsse_envelope.payload == stage.built.payload
    assert json.loads(model.to_json()) == json.loads(data)


def test_sigstore_python_bundle_type_refuses_a_bundle_without_certificate_and_tlog(
    stage: Stage,
) -> None:
    # Why export builds the JSON itself: sigstore.models.Bundle insists on a
    # Fulcio certificate and exactly one log entry, which offline export lacks.
    from sigstore.models import Bundle, InvalidBundle

    with pytest.raises(InvalidBundle, match="certificate"):
        Bundle.from_json(export_stage_bundles(stage.attestation).provenance)


def test_export_refuses_provenance_the_agent_did_not_sign(tmp_path: Path) -> None:
    agent = make_tdx_agent(tmp_path)
    forged = attest(agent, "train", (DATASET,), (BASE,), None, signer=_new_key())
    with pytest.raises(SigstoreExportError, match=r"does not verify|no signature by"):
        export_stage_bundles(StageAttestation(forged.provenance_envelope, forged.evidence))


def test_envelope_bundle_refuses_an_envelope_under_another_key(stage: Stage) -> None:
    with pytest.raises(SigstoreExportError):
        envelope_bundle(stage.built.provenance_envelope, _new_key().public_key())


# -- keyless ---------------------------------------------------------------------


@dataclass
class FakeBundle:
    payload: bytes

    def to_json(self) -> str:
        return json.dumps({"fake": True, "payload": base64.b64encode(self.payload).decode()})


@dataclass
class FakeSigner:
    fail: Exception | None = None
    statements: list[Any] = field(default_factory=list)

    def sign_dsse(self, input_: Any) -> FakeBundle:
        if self.fail is not None:
            raise self.fail
        self.statements.append(input_)
        return FakeBundle(input_._contents)


@dataclass
class FakeContext:
    """Stands in for sigstore's SigningContext: records what keyless signing asked of it."""

    signer_: FakeSigner = field(default_factory=FakeSigner)
    staging: list[bool] = field(default_factory=list)
    tokens: list[Any] = field(default_factory=list)

    def build(self, staging: bool) -> FakeContext:
        self.staging.append(staging)
        return self

    @contextmanager
    def signer(self, identity_token: Any, *, cache: bool = True) -> Iterator[FakeSigner]:
        self.tokens.append(identity_token)
        yield self.signer_


def _token(*, expires_in: int = 300, subject: str = "repo:acme/llm:ref:refs/heads/main") -> str:
    now = int(time.time())
    claims = {
        "iss": "https://issuer.example",
        "sub": subject,
        "aud": "sigstore",
        "iat": now - 10,
        "exp": now + expires_in,
    }
    return jwt.encode(claims, "k" * 32, algorithm="HS256")


def _no_ambient() -> str | None:
    return None


def test_keyless_signs_the_exact_provenance_payload_for_the_given_identity(stage: Stage) -> None:
    fake = FakeContext()
    bundle = sign_keyless(
        stage.attestation, identity_token=_token(), context=fake.build, detect=_no_ambient
    )
    assert fake.staging == [False]
    (token,) = fake.tokens
    assert token.identity == "repo:acme/llm:ref:refs/heads/main"
    (statement,) = fake.signer_.statements
    assert statement._contents == stage.built.payload  # same bytes: same evidence nonce
    assert json.loads(bundle) == json.loads(FakeBundle(stage.built.payload).to_json())


def test_keyless_uses_the_ambient_credential_and_staging_when_asked(stage: Stage) -> None:
    fake = FakeContext()
    sign_keyless(stage.attestation, staging=True, context=fake.build, detect=_token)
    assert fake.staging == [True]
    assert len(fake.signer_.statements) == 1


def test_keyless_without_an_identity_fails_before_any_service_is_asked(stage: Stage) -> None:
    fake = FakeContext()
    with pytest.raises(NoIdentityError, match="--identity-token") as err:
        sign_keyless(stage.attestation, context=fake.build, detect=_no_ambient)
    assert err.value.reason == "oidc_identity_missing"
    assert fake.staging == []


def test_keyless_refuses_an_expired_identity_token(stage: Stage) -> None:
    fake = FakeContext()
    with pytest.raises(NoIdentityError, match="identity token"):
        sign_keyless(
            stage.attestation,
            identity_token=_token(expires_in=-600),
            context=fake.build,
            detect=_no_ambient,
        )
    assert fake.staging == []


def test_keyless_reports_a_service_failure_as_keyless_signing_error(stage: Stage) -> None:
    from sigstore.errors import NetworkError

    fake = FakeContext(FakeSigner(fail=NetworkError("rekor.example unreachable")))
    with pytest.raises(KeylessSigningError, match="NetworkError"):
        sign_keyless(stage.attestation, identity_token=_token(), context=fake.build)


class RekorClientError(Exception):
    """Shaped like sigstore's own: Fulcio's and Rekor's client errors live in sigstore's
    private modules and derive from Exception only (attestd must not import them)."""


RekorClientError.__module__ = "sigstore._internal.rekor"


def test_keyless_reports_errors_of_sigstores_private_modules_as_keyless_signing_error(
    stage: Stage,
) -> None:
    fake = FakeContext(FakeSigner(fail=RekorClientError("HTTP 503")))
    with pytest.raises(KeylessSigningError, match="RekorClientError: HTTP 503"):
        sign_keyless(stage.attestation, identity_token=_token(), context=fake.build)


def test_keyless_lets_a_bug_show_instead_of_calling_it_a_refusal(stage: Stage) -> None:
    fake = FakeContext(FakeSigner(fail=TypeError("unexpected keyword")))
    with pytest.raises(TypeError, match="unexpected keyword"):
        sign_keyless(stage.attestation, identity_token=_token(), context=fake.build)


def test_keyless_refuses_provenance_the_agent_did_not_sign(tmp_path: Path) -> None:
    agent = make_tdx_agent(tmp_path)
    forged = attest(agent, "train", (DATASET,), (BASE,), None, signer=_new_key())
    fake = FakeContext()
    with pytest.raises(SigstoreExportError):
        sign_keyless(
            StageAttestation(forged.provenance_envelope, forged.evidence),
            identity_token=_token(),
            context=fake.build,
        )
    assert fake.tokens == []


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


# -- attestctl attestation ----------------------------------------------------------


def test_cli_export_bundle_writes_bundles_and_key_and_exits_0(
    stage: Stage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, evidence, pem = tmp_path / "b.json", tmp_path / "e.json", tmp_path / "agent.pub"
    code = main(
        ["attestation", "export-bundle", str(stage.file), "-o", str(out),
         "--evidence-bundle", str(evidence), "--public-key", str(pem)]
    )  # fmt: skip
    assert code == EXIT_OK
    summary = json.loads(capsys.readouterr().out)
    assert summary["agentKeyId"] == key_id(stage.key)
    assert summary["transparencyLog"] is False
    assert summary["provenanceDigest"] == hashlib.sha256(stage.built.payload).hexdigest()
    assert json.loads(out.read_bytes())["dsseEnvelope"] == json.loads(
        stage.built.provenance_envelope
    )
    assert json.loads(evidence.read_bytes())["dsseEnvelope"] == json.loads(stage.built.evidence)
    assert key_id(load_public_key_pem(pem.read_text())) == key_id(stage.key)


def test_cli_export_bundle_to_stdout_writes_only_the_bundle(
    stage: Stage, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["attestation", "export-bundle", str(stage.file), "-o", "-"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["mediaType"] == BUNDLE_MEDIA_TYPE


@pytest.mark.parametrize("content", [None, b"{}", b"not json"])
def test_cli_export_bundle_on_unreadable_or_malformed_input_exits_2(
    tmp_path: Path, content: bytes | None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "attestation.json"
    if content is not None:
        path.write_bytes(content)
    code = main(["attestation", "export-bundle", str(path), "-o", str(tmp_path / "b.json")])
    assert code == EXIT_USAGE
    assert "attestctl:" in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()


def test_cli_sign_keyless_without_identity_exits_2_and_says_how(
    stage: Stage,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import attestd.integrations.sigstore as export

    monkeypatch.delenv("SIGSTORE_IDENTITY_TOKEN", raising=False)
    monkeypatch.setattr(export, "detect_ambient_token", _no_ambient)
    monkeypatch.setattr(export, "signing_context", _unreachable)
    out = tmp_path / "keyless.json"
    code = main(["attestation", "sign-keyless", str(stage.file), "-o", str(out)])
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "oidc_identity_missing" in err
    assert "--identity-token" in err
    assert not out.exists()


def test_cli_sign_keyless_writes_the_bundle_from_the_signing_context(
    stage: Stage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import attestd.integrations.sigstore as export

    fake = FakeContext()
    monkeypatch.setenv("SIGSTORE_IDENTITY_TOKEN", _token())
    monkeypatch.setattr(export, "detect_ambient_token", _unreachable)
    monkeypatch.setattr(export, "signing_context", fake.build)
    out = tmp_path / "keyless.json"
    code = main(["attestation", "sign-keyless", str(stage.file), "-o", str(out), "--staging"])
    assert code == EXIT_OK
    assert fake.staging == [True]
    assert _b64(json.loads(out.read_bytes())["payload"]) == stage.built.payload


def test_cli_sign_keyless_exits_1_when_sigstore_refuses(
    stage: Stage,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from sigstore.errors import NetworkError

    import attestd.integrations.sigstore as export

    fake = FakeContext(FakeSigner(fail=NetworkError("fulcio.example unreachable")))
    monkeypatch.setattr(export, "signing_context", fake.build)
    code = main(
        ["attestation", "sign-keyless", str(stage.file), "-o", str(tmp_path / "k.json"),
         "--identity-token", _token()]
    )  # fmt: skip
    assert code == EXIT_NOT_AFFIRMING
    assert "keyless_signing_failed" in capsys.readouterr().err


def _unreachable(*_: object) -> Any:
    raise AssertionError("the test must not reach this")


def test_keyless_signs_a_stage_without_outputs_under_its_agent_subject(tmp_path: Path) -> None:
    # Sigstore refuses a statement with no subject; a stage without outputs names its
    # agent instead (docs/lifecycle.md), so it is signed like any other.
    built = attest(make_tdx_agent(tmp_path), "train", (DATASET,), (), None)
    fake = FakeContext()
    sign_keyless(
        StageAttestation(built.provenance_envelope, built.evidence),
        identity_token=_token(),
        context=fake.build,
        detect=_no_ambient,
    )
    (statement,) = fake.signer_.statements
    assert statement._contents == built.payload
    (subject,) = json.loads(built.payload)["subject"]
    assert subject["name"].startswith("attestd:agent/sha256:")
