"""DSSE signing and verification, and strict envelope parsing."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from attestd.evidence import (
    MAX_ENVELOPE_BYTES,
    PAYLOAD_TYPE,
    EnvelopeSignatureError,
    EvidenceFormatError,
    canonical_json,
    key_id,
    open_evidence,
    parse_envelope,
    sign_statement,
    verify_envelope,
)
from attestd.evidence.envelope import sign_payload
from tests.evidence.builders import example_key, make_statement


def _pae(payload_type: str, payload: bytes) -> bytes:
    # DSSE v1 PAE, written out here from the spec to check the library's.
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def test_signed_envelope_verifies_and_round_trips() -> None:
    key = example_key()
    statement = make_statement(key)
    data = sign_statement(statement, key)
    envelope, parsed = open_evidence(data)
    assert parsed == statement
    assert verify_envelope(envelope, key.public_key()) == canonical_json(statement.to_json())


def test_envelope_shape_keyid_and_signature_over_pae() -> None:
    key = example_key()
    data = sign_statement(make_statement(key), key)
    doc = json.loads(data)
    assert set(doc) == {"payload", "payloadType", "signatures"}
    assert doc["payloadType"] == PAYLOAD_TYPE
    [sig] = doc["signatures"]
    assert sig["keyid"] == key_id(key.public_key())
    payload = base64.b64decode(doc["payload"], validate=True)
    key.public_key().verify(
        base64.b64decode(sig["sig"]), _pae(PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256())
    )


def test_envelope_resigned_with_another_key_fails() -> None:
    key, other = example_key(), ec.generate_private_key(ec.SECP256R1())
    forged = sign_statement(make_statement(key), other)  # statement still names `key`
    envelope, _ = open_evidence(forged)
    with pytest.raises(EnvelopeSignatureError, match="no signature by"):
        verify_envelope(envelope, key.public_key())


def test_signature_relabelled_with_the_right_keyid_fails() -> None:
    key, other = example_key(), ec.generate_private_key(ec.SECP256R1())
    doc = json.loads(sign_statement(make_statement(key), other))
    doc["signatures"][0]["keyid"] = key_id(key.public_key())
    envelope = parse_envelope(json.dumps(doc).encode())
    with pytest.raises(EnvelopeSignatureError, match="does not verify"):
        verify_envelope(envelope, key.public_key())


def test_modified_payload_fails() -> None:
    key = example_key()
    doc = json.loads(sign_statement(make_statement(key), key))
    payload = base64.b64decode(doc["payload"]).replace(b"node-1", b"node-2")
    doc["payload"] = base64.b64encode(payload).decode()
    with pytest.raises(EnvelopeSignatureError):
        verify_envelope(parse_envelope(json.dumps(doc).encode()), key.public_key())


def test_garbage_signature_bytes_fail_as_signature_error() -> None:
    key = example_key()
    doc = json.loads(sign_statement(make_statement(key), key))
    doc["signatures"][0]["sig"] = base64.b64encode(b"\x30\x03\x02\x01\x01").decode()
    with pytest.raises(EnvelopeSignatureError):
        verify_envelope(parse_envelope(json.dumps(doc).encode()), key.public_key())


def test_securesystemslib_verifies_what_the_agent_signs() -> None:
    # Signing goes to cryptography directly; securesystemslib's own DSSE verifier with
    # an SSlibKey (what any DSSE consumer would use) must still accept the envelope.
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey  # type: ignore[attr-defined]

    key = example_key()
    statement = make_statement(key)
    payload = canonical_json(statement.to_json())
    for data in (sign_statement(statement, key), sign_payload(payload, key)):
        envelope = Envelope.from_dict(json.loads(data))
        public = SSlibKey.from_crypto(key.public_key(), keyid=key_id(key.public_key()))
        assert set(envelope.verify([public], 1)) == {key_id(key.public_key())}
        assert envelope.payload == payload


def test_each_key_signs_under_its_own_key_id_however_they_alternate() -> None:
    # The key id is remembered per key object: alternating keys must never mix them up.
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(3)]
    for key in keys * 2:
        envelope, _ = open_evidence(sign_payload(canonical_json(make_statement().to_json()), key))
        assert list(envelope.signatures) == [key_id(key.public_key())]
        verify_envelope(envelope, key.public_key())


def test_non_p256_signing_key_is_refused() -> None:
    with pytest.raises(EvidenceFormatError, match="P-256"):
        sign_statement(make_statement(), ec.generate_private_key(ec.SECP384R1()))


def test_url_safe_unpadded_base64_is_accepted_as_dsse_allows() -> None:
    key = example_key()
    doc = json.loads(sign_statement(make_statement(key), key))
    raw = base64.b64decode(doc["payload"])
    doc["payload"] = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    envelope = parse_envelope(json.dumps(doc).encode())
    assert verify_envelope(envelope, key.public_key()) == raw


def _doc() -> dict[str, Any]:
    key = example_key()
    return json.loads(sign_statement(make_statement(key), key))  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (lambda d: d.pop("payload"), "$.payload"),
        (lambda d: d.pop("payloadType"), "$.payloadType"),
        (lambda d: d.update(payloadType="application/json"), "$.payloadType"),
        (lambda d: d.update(payload="***"), "$.payload"),
        (lambda d: d.update(payload=["x"]), "$.payload"),
        (lambda d: d.update(signatures=[]), "$.signatures"),
        (lambda d: d.update(signatures={}), "$.signatures"),
        (lambda d: d["signatures"][0].pop("sig"), "$.signatures[0].sig"),
        (lambda d: d["signatures"][0].update(sig="!"), "$.signatures[0].sig"),
        (lambda d: d["signatures"][0].update(keyid=7), "$.signatures[0].keyid"),
        (lambda d: d["signatures"].append(dict(d["signatures"][0])), "$.signatures[1].keyid"),
        (lambda d: d.update(extra=True), "$.extra"),
    ],
)
def test_malformed_envelope_names_the_json_path(edit: Any, path: str) -> None:
    doc = _doc()
    edit(doc)
    with pytest.raises(EvidenceFormatError) as info:
        parse_envelope(json.dumps(doc).encode())
    assert info.value.path == path, str(info.value)


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b"[]", b'"x"', b"\x00" * 10, b" " * (MAX_ENVELOPE_BYTES + 1)],
)
def test_garbage_envelopes_raise_evidence_format_error(data: bytes) -> None:
    with pytest.raises(EvidenceFormatError):
        parse_envelope(data)


def test_open_evidence_rejects_a_signed_non_statement_payload() -> None:
    doc = _doc()
    doc["payload"] = base64.b64encode(b'{"_type":"x"}').decode()
    with pytest.raises(EvidenceFormatError):
        open_evidence(json.dumps(doc).encode())
