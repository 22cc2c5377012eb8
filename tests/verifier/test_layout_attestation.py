"""A layout as a signed in-toto attestation: round trip, and each refusal by its reason."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attestd.cli import main
from attestd.evidence.envelope import sign_json
from attestd.evidence.statement import STATEMENT_TYPE
from attestd.verifier.layout import LayoutError
from attestd.verifier.layout_attestation import (
    LAYOUT_PREDICATE_TYPE,
    LayoutAttestationError,
    LayoutSignatureError,
    open_layout_attestation,
    sign_layout,
)

LAYOUT = (
    'pipeline = "p"\n\n[[stages]]\nname = "a"\ntee = ["tdx"]\n[stages.trust.tdx]\nroot = "intel"\n'
    '\n[[stages]]\nname = "b"\nafter = ["a"]\ntee = ["tdx"]\n[stages.trust.tdx]\nroot = "intel"\n'
)
SOURCE = Path("layout.intoto.json")


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def statement(text: str = LAYOUT, **changes: object) -> dict[str, object]:
    """A layout statement as sign_layout writes it, with ``changes`` applied on top."""
    document: dict[str, object] = {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": "layout:p", "digest": {"sha256": hashlib.sha256(text.encode()).hexdigest()}}
        ],
        "predicateType": LAYOUT_PREDICATE_TYPE,
        "predicate": {"pipeline": "p", "layoutMediaType": "application/toml", "layout": text},
    }
    document.update(changes)
    return document


def test_a_signed_layout_opens_under_its_key_as_the_same_layout(
    key: ec.EllipticCurvePrivateKey,
) -> None:
    data = sign_layout(LAYOUT, key)
    envelope = json.loads(data)
    payload = json.loads(base64.b64decode(envelope["payload"]))
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    assert payload["predicateType"] == "https://attestd.dev/layout/v1"
    signed = open_layout_attestation(data, key.public_key(), source=SOURCE)
    assert signed.text == LAYOUT
    assert signed.sha256 == payload["subject"][0]["digest"]["sha256"]
    assert signed.layout.pipeline == "p"
    assert [(s.name, s.after) for s in signed.layout.stages] == [("a", None), ("b", ("a",))]


def test_another_key_or_a_changed_layout_is_refused_layout_signature_invalid(
    key: ec.EllipticCurvePrivateKey,
) -> None:
    data = sign_layout(LAYOUT, key)
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(LayoutSignatureError) as caught:
        open_layout_attestation(data, other, source=SOURCE)
    assert caught.value.reason == "layout_signature_invalid"
    # The same signature over a layout with stage b's `after` dropped.
    envelope = json.loads(data)
    changed = LAYOUT.replace('after = ["a"]\n', "")
    envelope["payload"] = base64.b64encode(json.dumps(statement(changed)).encode()).decode()
    with pytest.raises(LayoutSignatureError):
        open_layout_attestation(json.dumps(envelope).encode(), key.public_key(), source=SOURCE)


@pytest.mark.parametrize(
    ("document", "needle"),
    [
        (statement(predicateType="https://slsa.dev/provenance/v1"), "not a layout attestation"),
        (statement(_type="https://in-toto.io/Statement/v0.1"), "$._type"),
        (statement(subject=[]), "exactly one subject"),
        (
            statement(subject=[{"name": "layout:p", "digest": {"sha256": "ab" * 32}}]),
            "not the subject's digest",
        ),
        (statement(subject=[{"name": "layout:q", "digest": {"sha256": "ab" * 32}}]), "name"),
        ({**statement(), "extra": 1}, "unknown member"),
        (
            statement(predicate={"pipeline": "p", "layoutMediaType": "text/yaml", "layout": ""}),
            "layoutMediaType",
        ),
    ],
)
def test_a_signed_statement_that_is_not_a_layout_attestation_is_refused(
    key: ec.EllipticCurvePrivateKey, document: dict[str, object], needle: str
) -> None:
    data = sign_json(document, key)
    with pytest.raises(LayoutAttestationError) as caught:
        open_layout_attestation(data, key.public_key(), source=SOURCE)
    assert caught.value.reason == "layout_attestation_invalid"
    assert needle in caught.value.message


def test_bytes_that_are_no_envelope_are_refused_layout_attestation_invalid(
    key: ec.EllipticCurvePrivateKey,
) -> None:
    for data in (b"", b"\xff", b"[]", b'{"payload": "", "payloadType": "x", "signatures": []}'):
        with pytest.raises(LayoutAttestationError) as caught:
            open_layout_attestation(data, key.public_key(), source=SOURCE)
        assert caught.value.reason == "layout_attestation_invalid"


def test_a_predicate_naming_another_pipeline_than_its_layout_is_refused(
    key: ec.EllipticCurvePrivateKey,
) -> None:
    document = statement(
        subject=[
            {"name": "layout:q", "digest": {"sha256": hashlib.sha256(LAYOUT.encode()).hexdigest()}}
        ],
        predicate={"pipeline": "q", "layoutMediaType": "application/toml", "layout": LAYOUT},
    )
    with pytest.raises(LayoutAttestationError, match="names pipeline 'q'"):
        open_layout_attestation(sign_json(document, key), key.public_key(), source=SOURCE)


def test_only_a_layout_that_loads_is_signed(key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(LayoutError):
        sign_layout(LAYOUT.replace('after = ["a"]', 'after = ["b"]'), key)
    with pytest.raises(LayoutError, match="not TOML"):
        sign_layout("pipeline = ", key)


def test_the_cli_signs_and_refuses_a_layout_key_with_the_wrong_layout_option(
    key: ec.EllipticCurvePrivateKey, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = tmp_path / "layout.toml"
    layout.write_text(LAYOUT)
    pem = tmp_path / "producer.key"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    out = tmp_path / "layout.intoto.json"
    assert main(["layout", "sign", str(layout), "--key", str(pem), "-o", str(out)]) == 0
    assert open_layout_attestation(out.read_bytes(), key.public_key(), source=out).text == LAYOUT
    attestation = str(tmp_path / "a.json")
    argv = ["chain", "verify", attestation, "--layout-attestation", str(out)]
    capsys.readouterr()
    assert main(argv) == 2
    assert "needs --layout-key" in capsys.readouterr().err
    argv = ["chain", "verify", attestation, "--layout", str(layout), "--layout-key", str(pem)]
    assert main(argv) == 2
    assert "goes with --layout-attestation" in capsys.readouterr().err
