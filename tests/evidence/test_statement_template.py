"""A batch's statements, encoded once and spliced, are byte for byte the statements' JCS."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from attestd.evidence import (
    BatchMembership,
    Subject,
    canonical_json,
    leaf_bytes,
    open_evidence,
    verify_envelope,
)
from attestd.evidence.envelope import sign_payload, sign_statement
from attestd.evidence.merkle import inclusion_proofs, tree_root
from attestd.evidence.statement import StatementTemplate
from tests.evidence.builders import example_key, make_statement


def test_spliced_statements_equal_their_canonical_json() -> None:
    statement = make_statement(log_length=5)
    template = StatementTemplate(statement.predicate)
    bindings = [
        dataclasses.replace(statement.predicate.binding, nonce=bytes([i]) * 32) for i in range(3)
    ]
    leaves = [leaf_bytes(b) for b in bindings]
    root = tree_root(leaves)
    subjects = [(), statement.subjects, (Subject('a"\\b', {"sha256": "ab" * 32}),)]
    for binding, proof, chosen in zip(bindings, inclusion_proofs(leaves), subjects, strict=True):
        batch = BatchMembership(root, proof)
        whole = dataclasses.replace(
            statement,
            subjects=tuple(chosen),
            predicate=dataclasses.replace(statement.predicate, binding=binding, batch=batch),
        )
        assert template.encode(chosen, binding, batch) == canonical_json(whole.to_json())


def test_a_signed_payload_is_the_envelope_sign_statement_makes() -> None:
    statement = make_statement()
    key = example_key()
    fast = sign_payload(canonical_json(statement.to_json()), key)
    envelope, opened = open_evidence(fast)
    verify_envelope(envelope, key.public_key())
    assert opened == statement
    # Same JCS layout as the general path; only the ECDSA signature's randomness differs.
    reference = open_evidence(sign_statement(statement, key))[0]
    assert envelope.payload == reference.payload
    assert canonical_json({**_without_sig(fast)}) == canonical_json(
        {**_without_sig(sign_statement(statement, key))}
    )


def _without_sig(data: bytes) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(data)
    assert canonical_json(document) == data  # the bytes are JCS already
    document["signatures"] = [
        {k: v for k, v in s.items() if k != "sig"} for s in document["signatures"]
    ]  # type: ignore[attr-defined]
    return document
