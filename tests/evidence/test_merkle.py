"""RFC 9162 tree hashing and inclusion proofs, against the RFC 6962 test vectors."""

from __future__ import annotations

import pytest

from attestd.evidence.merkle import (
    InclusionProof,
    LeafIndexError,
    RootMismatchError,
    TreeSizeError,
    inclusion_proof,
    inclusion_proofs,
    root_from_proof,
    tree_root,
    verify_inclusion,
)

# The leaves and roots of certificate-transparency's merkle_tree_test (RFC 6962 hashing).
LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)]  # fmt: skip
ROOTS = {
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}


@pytest.mark.parametrize("size", sorted(ROOTS))
def test_roots_are_the_rfc_6962_vectors(size: int) -> None:
    assert tree_root(LEAVES[:size]).hex() == ROOTS[size]


@pytest.mark.parametrize("size", range(1, 34))
def test_every_proof_of_every_tree_verifies(size: int) -> None:
    leaves = [b"leaf %d" % i for i in range(size)]
    root = tree_root(leaves)
    proofs = inclusion_proofs(leaves)
    for index, proof in enumerate(proofs):
        assert proof == inclusion_proof(leaves, index)  # the batch and the RFC recursion agree
        verify_inclusion(leaves[index], proof, root)


def test_a_proof_for_one_leaf_does_not_verify_another() -> None:
    leaves = [b"a", b"b", b"c", b"d", b"e"]
    root = tree_root(leaves)
    with pytest.raises(RootMismatchError):
        verify_inclusion(leaves[1], inclusion_proof(leaves, 2), root)


def test_an_index_outside_the_tree_is_named() -> None:
    with pytest.raises(LeafIndexError) as caught:
        root_from_proof(b"x", InclusionProof(3, 3, (bytes(32), bytes(32))))
    assert caught.value.reason == "batch_leaf_index_invalid"


@pytest.mark.parametrize("size", [0, 1 << 17])
def test_a_size_out_of_range_is_named(size: int) -> None:
    with pytest.raises(TreeSizeError):
        root_from_proof(b"x", InclusionProof(0, size, ()))


def test_a_path_too_long_or_too_short_for_the_size_is_named() -> None:
    leaves = [b"a", b"b", b"c", b"d"]
    proof = inclusion_proof(leaves, 1)
    with pytest.raises(TreeSizeError):
        root_from_proof(leaves[1], InclusionProof(1, 4, proof.audit_path[:1]))
    with pytest.raises(TreeSizeError) as caught:
        root_from_proof(leaves[1], InclusionProof(1, 4, (*proof.audit_path, bytes(32))))
    assert caught.value.reason == "batch_tree_size_invalid"


def test_leaves_and_nodes_are_domain_separated() -> None:
    # A two-leaf tree's root is not the leaf hash of the two leaf hashes concatenated.
    left, right = tree_root([b"a"]), tree_root([b"b"])
    assert tree_root([b"a", b"b"]) != tree_root([left + right])
