"""The RFC 6962 / RFC 9162 Merkle tree: small trees by hand, published vectors, every size to 70."""

import hashlib

import pytest

from app.registry import merkle


def h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf(data: bytes) -> bytes:
    return h(b"\x00" + data)


def node(left: bytes, right: bytes) -> bytes:
    return h(b"\x01" + left + right)


def reference_root(leaves: list[bytes]) -> bytes:
    """MTH straight from RFC 9162 §2.1.1, written independently of the module."""
    n = len(leaves)
    if n == 0:
        return h(b"")
    if n == 1:
        return leaf(leaves[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return node(reference_root(leaves[:k]), reference_root(leaves[k:]))


def reference_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) straight from RFC 9162 §2.1.3.1."""
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*reference_path(m, leaves[:k]), reference_root(leaves[k:])]
    return [*reference_path(m - k, leaves[k:]), reference_root(leaves[:k])]


A, B, C, D, E = b"a", b"b", b"c", b"d", b"e"


def test_hashes_are_domain_separated() -> None:
    assert merkle.leaf_hash(A) == h(b"\x00a")
    assert merkle.node_hash(leaf(A), leaf(B)) == h(b"\x01" + leaf(A) + leaf(B))
    # A leaf can never pass for an interior node.
    assert merkle.leaf_hash(leaf(A) + leaf(B)) != merkle.node_hash(leaf(A), leaf(B))


def test_small_trees_by_hand() -> None:
    assert merkle.root([]) == h(b"")
    assert merkle.root([A]) == leaf(A)
    assert merkle.root([A, B]) == node(leaf(A), leaf(B))
    # Three leaves split 2 + 1: the odd leaf is promoted, not duplicated.
    assert merkle.root([A, B, C]) == node(node(leaf(A), leaf(B)), leaf(C))
    assert merkle.root([A, B, C, D]) == node(node(leaf(A), leaf(B)), node(leaf(C), leaf(D)))
    assert merkle.root([A, B, C, D, E]) == node(
        node(node(leaf(A), leaf(B)), node(leaf(C), leaf(D))), leaf(E)
    )


def test_small_proofs_by_hand() -> None:
    assert merkle.inclusion_proof([A], 0) == []
    assert merkle.inclusion_proof([A, B], 0) == [leaf(B)]
    assert merkle.inclusion_proof([A, B], 1) == [leaf(A)]
    assert merkle.inclusion_proof([A, B, C], 0) == [leaf(B), leaf(C)]
    assert merkle.inclusion_proof([A, B, C], 2) == [node(leaf(A), leaf(B))]
    assert merkle.inclusion_proof([A, B, C, D, E], 4) == [
        node(node(leaf(A), leaf(B)), node(leaf(C), leaf(D)))
    ]
    assert merkle.inclusion_proof([A, B, C, D, E], 2) == [
        leaf(D),
        node(leaf(A), leaf(B)),
        leaf(E),
    ]


# The Certificate Transparency reference test vectors (RFC 6962 implementations share them).
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


@pytest.mark.parametrize("size", range(1, 9))
def test_certificate_transparency_vectors(size: int) -> None:
    assert merkle.root(CT_LEAVES[:size]).hex() == CT_ROOTS[size - 1]


def _flipped(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x80]) + data[at + 1 :]


EVERY_BYTE_SIZES = frozenset({1, 2, 3, 5, 7, 8, 9, 16, 17, 31, 64, 70})


@pytest.mark.parametrize("size", range(1, 71))
def test_every_leaf_of_every_tree_proves_and_nothing_else_does(size: int) -> None:
    leaves = [f"entry {i}".encode() for i in range(size)]
    root = merkle.root(leaves)
    assert root == reference_root(leaves)
    hashes = [merkle.leaf_hash(x) for x in leaves]
    for m in range(size):
        path = merkle.inclusion_proof(leaves, m)
        assert path == reference_path(m, leaves)
        assert merkle.inclusion_proof_of_leaf_hashes(hashes, m) == path

        def verifies(path: list[bytes], *, index: int = m, leaf_hash: bytes = hashes[m]) -> bool:
            return merkle.verify_inclusion(
                leaf_hash=leaf_hash, leaf_index=index, tree_size=size, proof=path, root=root
            )

        assert verifies(path)
        # Another leaf, or this leaf at another place, does not verify.
        for other in range(size):
            if other != m:
                assert not verifies(path, leaf_hash=hashes[other])
                assert not verifies(path, index=other)
        assert not verifies(path, index=size)
        assert not verifies(path, leaf_hash=_flipped(hashes[m], m % 32))
        # A proof cut short or padded out does not verify.
        assert not verifies([*path, hashes[m]])
        if path:
            assert not verifies(path[:-1])
        # Any byte flipped in any step fails: every byte for some sizes, a spread for the rest.
        for i, step in enumerate(path):
            positions = range(32) if size in EVERY_BYTE_SIZES else {0, (i * 7 + m) % 32, 31}
            for at in positions:
                assert not verifies([*path[:i], _flipped(step, at), *path[i + 1 :]])
        assert not merkle.verify_inclusion(
            leaf_hash=hashes[m],
            leaf_index=m,
            tree_size=size,
            proof=path,
            root=_flipped(root, 5),
        )


def test_impossible_indexes_are_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        merkle.inclusion_proof([A, B], 2)
    with pytest.raises(ValueError, match="outside"):
        merkle.inclusion_proof([], 0)
    assert not merkle.verify_inclusion(
        leaf_hash=leaf(A), leaf_index=0, tree_size=0, proof=[], root=h(b"")
    )
    assert not merkle.verify_inclusion(
        leaf_hash=leaf(A), leaf_index=-1, tree_size=2, proof=[leaf(B)], root=merkle.root([A, B])
    )
    # A proof step that is not a SHA-256 hash is refused, not hashed.
    assert not merkle.verify_inclusion(
        leaf_hash=leaf(A), leaf_index=0, tree_size=2, proof=[b"short"], root=merkle.root([A, B])
    )
