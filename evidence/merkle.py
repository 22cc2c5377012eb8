"""RFC 9162 Merkle trees: one quote's root over a batch of bindings, and inclusion proofs.

Pure functions over bytes, no I/O. The agent builds a tree over a batch's
leaves and hands each verifier its proof; the verifier climbs from its leaf::

    leaves = [leaf_bytes_0, leaf_bytes_1, leaf_bytes_2]
    root = tree_root(leaves)
    proof = inclusion_proof(leaves, 1)                  # InclusionProof(1, 3, (h0, h2))
    verify_inclusion(leaves[1], proof, root)            # or raises a named MerkleProofError

Hashing follows RFC 9162 section 2.1.1 with SHA-256: a leaf is
``SHA-256(0x00 || leaf)``, an interior node ``SHA-256(0x01 || left || right)``,
and a tree of ``n > 1`` leaves splits at ``k``, the largest power of two
smaller than ``n``. Proofs follow section 2.1.3 exactly, so any RFC 9162 (or
RFC 6962) implementation checks them. The domain bytes keep a leaf from ever
passing for a node (a second-preimage defence).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from attestd.evidence.errors import EvidenceError

HASH_SIZE = 32
"""Bytes of every tree hash (SHA-256)."""

MAX_TREE_SIZE = 1 << 16
"""Largest batch a proof may describe; a path is then at most 16 hashes."""

MAX_AUDIT_PATH = 16
"""Longest audit path: ceil(log2(MAX_TREE_SIZE))."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


class MerkleProofError(EvidenceError):
    """An inclusion proof does not lead from the leaf to the root."""

    reason = "batch_proof_invalid"


class LeafIndexError(MerkleProofError):
    """The proof's leaf index is not inside the tree (index >= tree size)."""

    reason = "batch_leaf_index_invalid"


class TreeSizeError(MerkleProofError):
    """The tree size is out of range, or does not fit the audit path's length at this index."""

    reason = "batch_tree_size_invalid"


class RootMismatchError(MerkleProofError):
    """The leaf and the audit path hash to another root (a wrong sibling, leaf or index)."""

    reason = "batch_root_mismatch"


@dataclass(frozen=True)
class InclusionProof:
    """Where a leaf sits in a tree of ``tree_size`` leaves, and the siblings on its way up.

    ``audit_path`` lists the sibling hashes from the leaf's level upwards, as
    RFC 9162 section 2.1.3.1 ``PATH(m, D[n])`` produces them.
    """

    leaf_index: int
    tree_size: int
    audit_path: tuple[bytes, ...]


def leaf_hash(leaf: bytes) -> bytes:
    """``SHA-256(0x00 || leaf)``."""
    return hashlib.sha256(_LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n > 1``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _root_of_hashes(hashes: Sequence[bytes]) -> bytes:
    if len(hashes) == 1:
        return hashes[0]
    k = _split(len(hashes))
    return node_hash(_root_of_hashes(hashes[:k]), _root_of_hashes(hashes[k:]))


def _check_size(tree_size: int) -> None:
    if not 1 <= tree_size <= MAX_TREE_SIZE:
        raise TreeSizeError(f"a batch tree has 1 to {MAX_TREE_SIZE} leaves, not {tree_size}")


def tree_root(leaves: Sequence[bytes]) -> bytes:
    """``MTH(D[n])`` of a non-empty list of leaves (an empty batch has no quote)."""
    _check_size(len(leaves))
    return _root_of_hashes([leaf_hash(leaf) for leaf in leaves])


def _path(index: int, hashes: Sequence[bytes]) -> list[bytes]:
    if len(hashes) == 1:
        return []
    k = _split(len(hashes))
    if index < k:
        return [*_path(index, hashes[:k]), _root_of_hashes(hashes[k:])]
    return [*_path(index - k, hashes[k:]), _root_of_hashes(hashes[:k])]


def inclusion_proof(leaves: Sequence[bytes], index: int) -> InclusionProof:
    """The proof that ``leaves[index]`` is in the tree of ``leaves``."""
    _check_size(len(leaves))
    if not 0 <= index < len(leaves):
        raise LeafIndexError(f"leaf {index} is not in a tree of {len(leaves)}")
    path = _path(index, [leaf_hash(leaf) for leaf in leaves])
    return InclusionProof(index, len(leaves), tuple(path))


def inclusion_proofs(leaves: Sequence[bytes]) -> tuple[InclusionProof, ...]:
    """Every leaf's proof, sharing the subtree hashes (a batch needs them all)."""
    _check_size(len(leaves))
    hashes = [leaf_hash(leaf) for leaf in leaves]
    paths: list[list[bytes]] = [[] for _ in hashes]
    _fill_paths(hashes, 0, paths)
    n = len(hashes)
    return tuple(InclusionProof(i, n, tuple(p)) for i, p in enumerate(paths))


def _fill_paths(hashes: Sequence[bytes], offset: int, paths: list[list[bytes]]) -> bytes:
    """Append each leaf's siblings below this subtree to ``paths``; return the subtree's hash."""
    if len(hashes) == 1:
        return hashes[0]
    k = _split(len(hashes))
    left = _fill_paths(hashes[:k], offset, paths)
    right = _fill_paths(hashes[k:], offset + k, paths)
    # Paths run leaf to root: the lower levels were appended by the calls above.
    for i in range(offset, offset + k):
        paths[i].append(right)
    for i in range(offset + k, offset + len(hashes)):
        paths[i].append(left)
    return node_hash(left, right)


def root_from_proof(leaf: bytes, proof: InclusionProof) -> bytes:
    """The root that ``leaf`` and ``proof`` climb to (RFC 9162 section 2.1.3.2).

    Raises LeafIndexError or TreeSizeError where the proof's shape is
    impossible; the caller compares the result with the root it trusts.
    """
    _check_size(proof.tree_size)
    if not 0 <= proof.leaf_index < proof.tree_size:
        raise LeafIndexError(
            f"leaf index {proof.leaf_index} is not inside a tree of {proof.tree_size}"
        )
    fn, sn = proof.leaf_index, proof.tree_size - 1
    r = leaf_hash(leaf)
    for p in proof.audit_path:
        if sn == 0:
            raise TreeSizeError(
                f"the audit path has {len(proof.audit_path)} hashes, more than leaf "
                f"{proof.leaf_index} of a tree of {proof.tree_size} needs"
            )
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while (fn & 1) == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise TreeSizeError(
            f"the audit path has {len(proof.audit_path)} hashes, fewer than leaf "
            f"{proof.leaf_index} of a tree of {proof.tree_size} needs"
        )
    return r


def verify_inclusion(leaf: bytes, proof: InclusionProof, root: bytes) -> None:
    """Return if ``leaf`` is at ``proof.leaf_index`` of the tree whose root is ``root``."""
    computed = root_from_proof(leaf, proof)
    if not hmac.compare_digest(computed, root):
        raise RootMismatchError(
            f"leaf {proof.leaf_index} of {proof.tree_size} and its audit path hash to "
            f"{computed.hex()}, not to the batch root {root.hex()}"
        )
