"""Statement round trips and strict parsing."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
from typing import Any

import pytest

from attestd.evidence import (
    EVIDENCE_PREDICATE_TYPE,
    MAX_QUOTE_BYTES,
    STATEMENT_TYPE,
    TEE_TYPES,
    CcelBlob,
    EvidenceFormatError,
    Statement,
    TeeClaims,
    canonical_json,
    parse_statement,
)
from attestd.tee.backend import TeeDescription, TeeType
from tests.evidence.builders import make_statement


@pytest.mark.parametrize("tee", TEE_TYPES)
def test_statement_round_trip(tee: str) -> None:
    statement = make_statement(tee=tee)
    payload = canonical_json(statement.to_json())
    assert parse_statement(payload) == statement
    assert canonical_json(parse_statement(payload).to_json()) == payload


def test_statement_json_shape() -> None:
    obj: Any = make_statement().to_json()
    assert obj["_type"] == STATEMENT_TYPE
    assert obj["predicateType"] == EVIDENCE_PREDICATE_TYPE
    assert set(obj["predicate"]) == {
        "binding", "batch", "tee", "quote", "certificates", "collateral", "ccel", "runtimeLog",
        "agent", "host",
    }  # fmt: skip
    assert obj["predicate"]["tee"] == {
        "type": "tdx",
        "simulated": True,
        "rootOfTrust": "attestd-simulated-tdx-root",
        "backend": "simulated",
    }
    assert obj["predicate"]["agent"]["keyId"].startswith("sha256:")


def _mutated(edit: Any) -> bytes:
    obj = make_statement().to_json()
    edit(obj)
    return json.dumps(obj).encode()


def _set(path: str, value: object) -> Any:
    def edit(obj: Any) -> None:
        *parents, last = path.split(".")
        for part in parents:
            obj = obj[int(part)] if isinstance(obj, list) else obj[part]
        if isinstance(obj, list):
            obj[int(last)] = value
        else:
            obj[last] = value

    return edit


def _delete(path: str) -> Any:
    def edit(obj: Any) -> None:
        *parents, last = path.split(".")
        for part in parents:
            obj = obj[int(part)] if isinstance(obj, list) else obj[part]
        del obj[last]

    return edit


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (_set("_type", "https://in-toto.io/Statement/v0.1"), "$._type"),
        (_set("predicateType", "https://slsa.dev/provenance/v1"), "$.predicateType"),
        (_delete("predicate"), "$.predicate"),
        (_delete("subject"), "$.subject"),
        (_set("subject", {}), "$.subject"),
        (_set("subject.0.digest.sha256", "zz" * 32), "$.subject[0].digest.sha256"),
        (_set("subject.1.name", "model/weights.safetensors"), "$.subject[1].name"),
        (_set("predicate.quote", "%%%"), "$.predicate.quote"),
        (_set("predicate.quote", ""), "$.predicate.quote"),
        (
            _set("predicate.quote", base64.b64encode(bytes(MAX_QUOTE_BYTES + 1)).decode()),
            "$.predicate.quote",
        ),
        (_set("predicate.quote", 5), "$.predicate.quote"),
        (_set("predicate.certificates", None), "$.predicate.certificates"),
        (_set("predicate.certificates", ["??"]), "$.predicate.certificates[0]"),
        (_delete("predicate.binding.nonce"), "$.predicate.binding.nonce"),
        (_set("predicate.binding.nonce", "00"), "$.predicate.binding.nonce"),
        (_set("predicate.tee.type", "sgx"), "$.predicate.tee.type"),
        (_set("predicate.tee.simulated", "yes"), "$.predicate.tee.simulated"),
        (_delete("predicate.tee.rootOfTrust"), "$.predicate.tee.rootOfTrust"),
        (_set("predicate.runtimeLog.1.content", "@@"), "$.predicate.runtimeLog[1].content"),
        (_set("predicate.runtimeLog.2", []), "$.predicate.runtimeLog[2]"),
        (_set("predicate.runtimeLog", {}), "$.predicate.runtimeLog"),
        (_set("predicate.agent.publicKey", "garbage"), "$.predicate.agent.publicKey"),
        (_set("predicate.agent.keyId", "sha256:" + "0" * 64), "$.predicate.agent.keyId"),
        (_set("predicate.agent.version", ""), "$.predicate.agent.version"),
        (_set("predicate.host", []), "$.predicate.host"),
        (_set("predicate.host", {"blob": "x" * 70_000}), "$.predicate.host"),
        (_set("predicate.surprise", 1), "$.predicate.surprise"),
    ],
)
def test_malformed_statement_names_the_json_path(edit: Any, path: str) -> None:
    with pytest.raises(EvidenceFormatError) as info:
        parse_statement(_mutated(edit))
    assert info.value.path == path, str(info.value)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"[]",
        b"null",
        b"\xff\xfe{}",
        b'{"_type": NaN}',
        b'{"a": 1, "a": 2}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"x": ' + b"9" * 10_000 + b"}",
        b" " * (13 * 1024 * 1024),
    ],
)
def test_garbage_payloads_raise_evidence_format_error(payload: bytes) -> None:
    with pytest.raises(EvidenceFormatError):
        parse_statement(payload)


def test_statement_from_json_does_not_modify_its_input() -> None:
    obj = make_statement().to_json()
    before = copy.deepcopy(obj)
    Statement.from_json(obj)
    assert obj == before


def test_collateral_and_ccel_round_trip() -> None:
    base = make_statement()
    predicate = dataclasses.replace(
        base.predicate,
        collateral={"tcb_info": "{}", "pck_crl": "00"},
        ccel=CcelBlob(table=b"CCEL" + bytes(52), log=b"\x00" * 100),
    )
    statement = dataclasses.replace(base, predicate=predicate)
    payload = canonical_json(statement.to_json())
    assert parse_statement(payload) == statement


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ccel", {"table": "AA=="}),
        ("ccel", {"table": "AA==", "log": "not base64!"}),
        ("ccel", "CCEL"),
        ("collateral", ["not", "an", "object"]),
        ("collateral", {"x": "y" * (300 * 1024)}),
    ],
)
def test_malformed_collateral_or_ccel_is_refused(field: str, value: object) -> None:
    obj: Any = make_statement().to_json()
    obj["predicate"][field] = value
    with pytest.raises(EvidenceFormatError, match=f"predicate.{field}"):
        parse_statement(canonical_json(obj))


def test_every_tee_the_tee_layer_knows_is_a_tee_evidence_can_carry() -> None:
    assert sorted(TEE_TYPES) == sorted(t.value for t in TeeType)
    for tee in TeeType:
        claims = TeeClaims.of(TeeDescription(tee, False, "root", "backend"))
        assert claims == TeeClaims(tee.value, False, "root", "backend")
        assert type(claims.tee) is str  # the plain string, not the TEE layer's enum
        assert claims.to_json()["type"] == tee.value
