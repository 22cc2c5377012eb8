"""Which stock Sigstore verifiers accept the bundles that export writes, and how.

docs/sigstore.md has the table; each row it claims for an installable
verifier is a test here:

- sigstore-js (``@sigstore/verify``, npm, pinned in interop/sigstore-js):
  accepts the agent-key bundle with the agent's public key and its tlog and
  timestamp thresholds at 0, and refuses it at its defaults, under another
  key, without a key, or after tampering.
- sigstore-python 4.5: refuses the agent-key bundle at parsing ("expected
  certificate in bundle"); it has no verification path for a bare key.
- Both accept a keyless bundle (Fulcio certificate, Rekor entry) of the same
  provenance payload, at their default settings. Tests cannot reach Fulcio
  and Rekor, so tests/e2e/synthetic_sigstore.py plays them with throw-away
  keys and hands the verifiers that instance's trusted root.

The sigstore-js tests need ``node`` and skip without it. They install the
pinned package with ``make sigstore-js`` when it is missing; where that fails
they skip, except under CI (``CI`` set), where it is a failure, so that CI
with node really runs them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attestd.evidence import PAYLOAD_TYPE, key_id
from attestd.evidence.provenance import StageAttestation
from attestd.integrations.sigstore import export_stage_bundles
from tests.e2e.synthetic_sigstore import IDENTITY, ISSUER, KeylessBundle, keyless_bundle
from tests.verifier.chain_builder import BASE, DATASET, BuiltStage, attest, make_tdx_agent

ROOT = Path(__file__).resolve().parents[2]
SIGSTORE_JS = ROOT / "interop" / "sigstore-js"
VERIFY_MJS = SIGSTORE_JS / "verify.mjs"
PINNED_VERIFY = json.loads((SIGSTORE_JS / "package.json").read_text())["dependencies"][
    "@sigstore/verify"
]
NO_LOG = ("--tlog-threshold", "0", "--timestamp-threshold", "0")
"""What a key bundle without a log entry or timestamp needs of @sigstore/verify."""


@dataclass(frozen=True)
class Exported:
    built: BuiltStage
    key: ec.EllipticCurvePublicKey
    provenance: Path
    evidence: Path
    public_key: Path
    keyless: Path
    trusted_root: Path


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    agent = make_tdx_agent(tmp_path_factory.mktemp("tdx"))
    built = attest(agent, "train", (DATASET,), (BASE,), None)
    bundles = export_stage_bundles(StageAttestation(built.provenance_envelope, built.evidence))
    out = tmp_path_factory.mktemp("bundles")
    (out / "train.sigstore.json").write_bytes(bundles.provenance)
    (out / "train.evidence.sigstore.json").write_bytes(bundles.evidence)
    (out / "agent.pub").write_text(bundles.agent_key_pem)
    keyless: KeylessBundle = keyless_bundle(PAYLOAD_TYPE, built.payload)
    (out / "train.keyless.sigstore.json").write_bytes(keyless.bundle)
    (out / "trusted_root.json").write_bytes(keyless.trusted_root)
    return Exported(
        built,
        agent.key.public_key(),
        out / "train.sigstore.json",
        out / "train.evidence.sigstore.json",
        out / "agent.pub",
        out / "train.keyless.sigstore.json",
        out / "trusted_root.json",
    )


# -- sigstore-js: @sigstore/verify --------------------------------------------------


def _not_installable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the sigstore-js interop tests: {reason}")
    pytest.skip(reason)


def _installed_version() -> str | None:
    manifest = SIGSTORE_JS / "node_modules" / "@sigstore" / "verify" / "package.json"
    if not manifest.is_file():
        return None
    version = json.loads(manifest.read_text())["version"]
    assert isinstance(version, str)
    return version


@pytest.fixture(scope="module")
def node() -> str:
    """``node``, with the pinned @sigstore/verify installed beside verify.mjs."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    if _installed_version() != PINNED_VERIFY:
        if shutil.which("npm") is None or shutil.which("make") is None:
            _not_installable("@sigstore/verify is not installed, and npm or make is absent")
        done = subprocess.run(
            ["make", "-s", "sigstore-js"], cwd=ROOT, capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0 or _installed_version() != PINNED_VERIFY:
            _not_installable(f"make sigstore-js failed: {(done.stdout + done.stderr)[-2000:]}")
    return node


def _sigstore_js(node: str, bundle: Path, *args: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [node, str(VERIFY_MJS), "--bundle", str(bundle), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stderr == "", done.stderr
    result = json.loads(done.stdout)
    assert isinstance(result, dict)
    return done.returncode, result


def _other_key_pem(tmp_path: Path) -> Path:
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    path = tmp_path / "other.pub"
    path.write_bytes(pem)
    return path


def test_sigstore_js_accepts_the_provenance_bundle_under_the_agent_key_with_thresholds_0(
    node: str, exported: Exported
) -> None:
    code, result = _sigstore_js(
        node, exported.provenance, "--public-key", str(exported.public_key), *NO_LOG
    )
    assert (code, result["verified"]) == (0, True), result
    assert result["payloadType"] == "application/vnd.in-toto+json"
    assert result["payloadSha256"] == hashlib.sha256(exported.built.payload).hexdigest()
    assert result["keyHint"] == key_id(exported.key)


def test_sigstore_js_accepts_the_evidence_bundle_under_the_agent_key_with_thresholds_0(
    node: str, exported: Exported
) -> None:
    code, result = _sigstore_js(
        node, exported.evidence, "--public-key", str(exported.public_key), *NO_LOG
    )
    assert (code, result["verified"]) == (0, True), result
    payload = base64.b64decode(json.loads(exported.built.evidence)["payload"])
    assert result["payloadSha256"] == hashlib.sha256(payload).hexdigest()


@pytest.mark.parametrize(
    ("thresholds", "code", "message"),
    [
        ((), "TIMESTAMP_ERROR", "expected 1 timestamps, got 0"),
        (("--timestamp-threshold", "0"), "TLOG_ERROR", "expected 1 tlog entries, got 0"),
        (("--tlog-threshold", "0"), "TIMESTAMP_ERROR", "expected 1 timestamps, got 0"),
    ],
    ids=["defaults", "tlog-default", "timestamp-default"],
)
def test_sigstore_js_refuses_the_key_bundle_unless_both_thresholds_are_0(
    node: str, exported: Exported, thresholds: tuple[str, ...], code: str, message: str
) -> None:
    # The bundle has no Rekor entry and no RFC 3161 timestamp: offline export cannot have them.
    rc, result = _sigstore_js(
        node, exported.provenance, "--public-key", str(exported.public_key), *thresholds
    )
    assert rc == 1
    assert (result["verified"], result["code"], result["message"]) == (False, code, message)


def test_sigstore_js_refuses_the_key_bundle_under_another_key(
    node: str, exported: Exported, tmp_path: Path
) -> None:
    rc, result = _sigstore_js(
        node, exported.provenance, "--public-key", str(_other_key_pem(tmp_path)), *NO_LOG
    )
    assert (rc, result["code"]) == (1, "SIGNATURE_ERROR")


def test_sigstore_js_refuses_the_key_bundle_without_a_key(node: str, exported: Exported) -> None:
    # The hint names the key but cannot stand in for it.
    rc, result = _sigstore_js(node, exported.provenance, *NO_LOG)
    assert (rc, result["code"]) == (1, "PUBLIC_KEY_ERROR")


def test_sigstore_js_refuses_a_tampered_payload(
    node: str, exported: Exported, tmp_path: Path
) -> None:
    bundle = json.loads(exported.provenance.read_bytes())
    payload = base64.b64decode(bundle["dsseEnvelope"]["payload"])
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(payload + b" ").decode()
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(bundle))
    rc, result = _sigstore_js(node, tampered, "--public-key", str(exported.public_key), *NO_LOG)
    assert (rc, result["code"]) == (1, "SIGNATURE_ERROR")


def test_sigstore_js_accepts_a_keyless_bundle_of_the_same_payload_at_default_thresholds(
    node: str, exported: Exported
) -> None:
    code, result = _sigstore_js(
        node, exported.keyless, "--trusted-root", str(exported.trusted_root)
    )
    assert (code, result["verified"]) == (0, True), result
    assert result["payloadSha256"] == hashlib.sha256(exported.built.payload).hexdigest()


def test_sigstore_js_refuses_a_keyless_bundle_outside_its_trusted_root(
    node: str, exported: Exported
) -> None:
    code, result = _sigstore_js(node, exported.keyless)
    assert (code, result["code"]) == (1, "CERTIFICATE_ERROR")


# -- sigstore-python ----------------------------------------------------------------


def test_sigstore_python_refuses_the_key_bundle_expecting_a_certificate(
    exported: Exported,
) -> None:
    # sigstore-python 4.5 verifies only certificate bundles with one log entry; it has
    # no policy or Verifier for a bare public key (sigstore/sigstore-python#1244).
    pytest.importorskip("sigstore")
    from sigstore.models import Bundle, InvalidBundle

    with pytest.raises(InvalidBundle, match=r"^expected certificate in bundle$"):
        Bundle.from_json(exported.provenance.read_bytes())


def test_sigstore_python_accepts_a_keyless_bundle_of_the_same_payload_for_its_identity(
    exported: Exported,
) -> None:
    pytest.importorskip("sigstore")
    from sigstore.models import Bundle, TrustedRoot
    from sigstore.verify import Verifier, policy

    verifier = Verifier(trusted_root=TrustedRoot.from_file(str(exported.trusted_root)))
    payload_type, payload = verifier.verify_dsse(
        Bundle.from_json(exported.keyless.read_bytes()),
        policy.Identity(identity=IDENTITY, issuer=ISSUER),
    )
    assert (payload_type, payload) == (PAYLOAD_TYPE, exported.built.payload)


def test_sigstore_python_refuses_the_keyless_bundle_for_another_identity(
    exported: Exported,
) -> None:
    pytest.importorskip("sigstore")
    from sigstore.errors import VerificationError
    from sigstore.models import Bundle, TrustedRoot
    from sigstore.verify import Verifier, policy

    verifier = Verifier(trusted_root=TrustedRoot.from_file(str(exported.trusted_root)))
    with pytest.raises(VerificationError, match="SANs do not match"):
        verifier.verify_dsse(
            Bundle.from_json(exported.keyless.read_bytes()),
            policy.Identity(identity=IDENTITY.replace("main", "evil"), issuer=ISSUER),
        )
