"""The RFC 6962 / RFC 9162 Merkle tree over byte strings: root, inclusion proof, verification.

Leaf hash = SHA-256(0x00 || leaf), node hash = SHA-256(0x01 || left || right); a tree of n > 1
leaves splits at k, the largest power of two below n (RFC 9162 §2.1.1). The tree of no leaves
has the hash of the empty string. Pure functions, no I/O: anyone can check a proof with these.
"""

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(_LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _subtree_root(hashes: Sequence[bytes], start: int, end: int) -> bytes:
    """MTH of the leaves whose leaf hashes are hashes[start:end] (end > start)."""
    if end - start == 1:
        return hashes[start]
    k = _split(end - start)
    return node_hash(_subtree_root(hashes, start, start + k), _subtree_root(hashes, start + k, end))


def root_of_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """The tree head of leaves given by their leaf hashes, in order."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    return _subtree_root(hashes, 0, len(hashes))


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]): the root of the tree over these leaves, in order."""
    return root_of_leaf_hashes([leaf_hash(leaf) for leaf in leaves])


def inclusion_proof_of_leaf_hashes(hashes: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(m, D[n]) for leaves given by their leaf hashes (RFC 9162 §2.1.3.1)."""
    if not 0 <= index < len(hashes):
        raise ValueError(f"leaf index {index} is outside a tree of {len(hashes)} leaves")
    path: list[bytes] = []
    start, end, m = 0, len(hashes), index
    # Walk down from the root; each level contributes the sibling subtree's root.
    while end - start > 1:
        k = _split(end - start)
        if m < k:
            path.append(_subtree_root(hashes, start + k, end))
            end = start + k
        else:
            path.append(_subtree_root(hashes, start, start + k))
            start, m = start + k, m - k
    path.reverse()  # the RFC orders the path from the leaf up
    return path


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf `index` in the tree over `leaves`."""
    return inclusion_proof_of_leaf_hashes([leaf_hash(leaf) for leaf in leaves], index)


def root_from_inclusion_proof(
    *, leaf_hash: bytes, leaf_index: int, tree_size: int, proof: Sequence[bytes]
) -> bytes | None:
    """The root a proof leads to (RFC 9162 §2.1.3.2), or None when the proof cannot be valid."""
    if not 0 <= leaf_index < tree_size or len(leaf_hash) != HASH_SIZE:
        return None
    fn, sn = leaf_index, tree_size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0 or len(p) != HASH_SIZE:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(
    *, leaf_hash: bytes, leaf_index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether `proof` shows the leaf with this leaf hash at `leaf_index` in the tree `root`."""
    computed = root_from_inclusion_proof(
        leaf_hash=leaf_hash, leaf_index=leaf_index, tree_size=tree_size, proof=proof
    )
    return computed is not None and computed == root
