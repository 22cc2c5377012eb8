"""One quote serves a batch: each verifier's proof climbs to the quoted root, tampering is named."""

from __future__ import annotations

import dataclasses
import os

from attestd.evidence import (
    BatchMembership,
    Binding,
    Statement,
    leaf_bytes,
    report_data_for_root,
)
from attestd.evidence.merkle import InclusionProof, inclusion_proofs, tree_root
from attestd.verifier import AppraisalResult, AppraisalStatus, CheckStatus, Policy, appraise
from tests.verifier.simulated_evidence import Scenario

BATCH = 5


def _batch(scenario: Scenario, nonces: list[bytes]) -> list[Statement]:
    """Statements for ``nonces`` sharing one quote over their tree, as the agent makes them."""
    template = scenario.statement()
    bindings = [dataclasses.replace(template.predicate.binding, nonce=n) for n in nonces]
    leaves = [leaf_bytes(b) for b in bindings]
    root = tree_root(leaves)
    quote = scenario.backend.get_quote(report_data_for_root(root))
    return [
        dataclasses.replace(
            template,
            predicate=dataclasses.replace(
                template.predicate, binding=b, quote=quote, batch=BatchMembership(root, p)
            ),
        )
        for b, p in zip(bindings, inclusion_proofs(leaves), strict=True)
    ]


def _nonces(count: int = BATCH) -> list[bytes]:
    return [os.urandom(32) for _ in range(count)]


def _with_proof(statement: Statement, **changes: object) -> Statement:
    batch = statement.predicate.membership
    proof = dataclasses.replace(batch.proof, **changes)  # type: ignore[arg-type]
    return _with_batch(statement, BatchMembership(batch.root, proof))


def _with_batch(statement: Statement, batch: BatchMembership) -> Statement:
    return dataclasses.replace(
        statement, predicate=dataclasses.replace(statement.predicate, batch=batch)
    )


def _appraise(
    scenario: Scenario, policy: Policy, statement: Statement, nonce: bytes
) -> AppraisalResult:
    return appraise(scenario.sign(statement), nonce=nonce, policy=policy, now=scenario.now)


def _rejected(result: AppraisalResult, check: str, reason: str) -> None:
    assert result.status is AppraisalStatus.CONTRAINDICATED
    first = result.failures[0]
    assert (first.name, first.reason) == (check, reason), result.to_json()["checks"]


def test_every_member_of_a_batch_appraises_with_its_own_nonce(
    scenario: Scenario, policy: Policy
) -> None:
    nonces = _nonces()
    statements = _batch(scenario, nonces)
    assert len({s.predicate.quote for s in statements}) == 1  # one quote for all
    for statement, nonce in zip(statements, nonces, strict=True):
        result = _appraise(scenario, policy, statement, nonce)
        assert result.status is AppraisalStatus.AFFIRMING, result.to_json()["checks"]
        assert result.check("batch_proof").status is CheckStatus.PASS


def test_a_leaf_index_outside_the_tree_is_refused(scenario: Scenario, policy: Policy) -> None:
    nonces = _nonces()
    statement = _with_proof(_batch(scenario, nonces)[2], leaf_index=BATCH)
    result = _appraise(scenario, policy, statement, nonces[2])
    _rejected(result, "batch_proof", "batch_leaf_index_invalid")


def test_another_index_inside_the_tree_is_refused(scenario: Scenario, policy: Policy) -> None:
    nonces = _nonces()
    statement = _with_proof(_batch(scenario, nonces)[2], leaf_index=3)
    result = _appraise(scenario, policy, statement, nonces[2])
    _rejected(result, "batch_proof", "batch_root_mismatch")


def test_a_wrong_sibling_is_refused(scenario: Scenario, policy: Policy) -> None:
    nonces = _nonces()
    statement = _batch(scenario, nonces)[1]
    path = list(statement.predicate.membership.proof.audit_path)
    path[0] = bytes(b ^ 1 for b in path[0])
    result = _appraise(scenario, policy, _with_proof(statement, audit_path=tuple(path)), nonces[1])
    _rejected(result, "batch_proof", "batch_root_mismatch")


def test_a_wrong_tree_size_is_refused(scenario: Scenario, policy: Policy) -> None:
    nonces = _nonces()
    # Leaf 4 of 5 needs one sibling; in a tree of 8 it would need three.
    statement = _with_proof(_batch(scenario, nonces)[4], tree_size=8)
    result = _appraise(scenario, policy, statement, nonces[4])
    _rejected(result, "batch_proof", "batch_tree_size_invalid")


def test_a_proof_for_another_nonce_is_refused(scenario: Scenario, policy: Policy) -> None:
    nonces = _nonces()
    statements = _batch(scenario, nonces)
    stolen = _with_batch(statements[0], statements[3].predicate.membership)
    result = _appraise(scenario, policy, stolen, nonces[0])
    _rejected(result, "batch_proof", "batch_root_mismatch")


def test_another_verifiers_binding_and_proof_are_refused(
    scenario: Scenario, policy: Policy
) -> None:
    nonces = _nonces()
    statements = _batch(scenario, nonces)
    result = _appraise(scenario, policy, statements[3], nonces[0])
    _rejected(result, "nonce", "nonce_mismatch")


def test_a_batch_tree_from_another_quote_is_refused(scenario: Scenario, policy: Policy) -> None:
    nonces = _nonces()
    mine = _batch(scenario, nonces)[1]
    other = _batch(scenario, [nonces[1], *_nonces(3)])[0]  # my binding, in another batch
    assert other.predicate.binding == mine.predicate.binding
    transplanted = _with_batch(mine, other.predicate.membership)
    result = _appraise(scenario, policy, transplanted, nonces[1])
    _rejected(result, "report_data", "report_data_mismatch")
    assert result.check("batch_proof").status is CheckStatus.PASS  # the tree itself is sound


def test_a_batch_of_one_has_an_empty_path(scenario: Scenario, policy: Policy) -> None:
    [nonce] = _nonces(1)
    [statement] = _batch(scenario, [nonce])
    assert statement.predicate.membership.proof == InclusionProof(0, 1, ())
    assert statement.predicate.membership == BatchMembership.alone(statement.predicate.binding)
    result = _appraise(scenario, policy, statement, nonce)
    assert result.status is AppraisalStatus.AFFIRMING


def test_binding_fields_cannot_move_between_leaves(scenario: Scenario, policy: Policy) -> None:
    nonces = _nonces()
    statement = _batch(scenario, nonces)[2]
    binding: Binding = dataclasses.replace(statement.predicate.binding, subjects_digest="0" * 64)
    forged = dataclasses.replace(
        statement, predicate=dataclasses.replace(statement.predicate, binding=binding)
    )
    result = _appraise(scenario, policy, forged, nonces[2])
    _rejected(result, "batch_proof", "batch_root_mismatch")
