"""RFC 9162 Merkle tree hashing, proof generation plans and proof verification.

Owns: leaf and node hashing (leaf = H(0x00 || data), node =
H(0x01 || left || right), H the federation suite's hash: SHA-256 for intl, SM3
for gm; a ``TreeHasher`` carries it, SHA-256 by default), verification of inclusion and consistency
proofs (RFC 9162 sections 2.1.3.2 and 2.1.4.2), the *plans* that say which
subtree hashes a proof consists of, the decomposition of a range into stored
perfect subtrees, and an append-only frontier. Everything here is a pure
function over bytes and integers.

Does not own: where node hashes are stored (``gateway.ledger.storage``) or
what a leaf's bytes mean (``gateway.ledger.entry``).

Node addressing: a *perfect* subtree of ``2**level`` leaves starting at leaf
``index << level`` is the node ``(level, index)``; level 0 nodes are leaf
hashes. A range ``[lo, hi)`` of an RFC 9162 tree decomposes into at most
``log2(n)`` perfect nodes, so any proof reads O(log n) stored hashes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from gateway.crypto import INTL, Suite, digest_equal, sha256
from gateway.errors import VerificationFailed

HASH_LEN: Final = 32
# A property of the RFC 9162 format, not a deployment limit (so not in
# ``Limits``): tree sizes are 64-bit, so any tree has fewer than 2**64 leaves
# and a proof has at most 64 hashes; longer inputs are refused before any hashing.
MAX_PROOF_HASHES: Final = 64
EMPTY_ROOT: Final = sha256(b"")
NodeId = tuple[int, int]  # (level, index)
NodeReader = Callable[[Sequence[NodeId]], Sequence[bytes]]


def leaf_hash(data: bytes) -> bytes:
    return sha256(b"\x00" + data)


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


def _sha256_leaves(entries: Sequence[bytes]) -> list[bytes]:
    """SHA-256(0x00 || entry) per entry from a pre-fed hasher: no entry is copied."""
    out: list[bytes] = []
    append, prefix = out.append, _LEAF_PREFIX
    for e in entries:
        h = prefix.copy()
        h.update(e)
        append(h.digest())
    return out


def _sha256_parents(level: Sequence[bytes]) -> list[bytes]:
    """SHA-256(0x01 || a || b) for each adjacent pair (an odd last node is left out)."""
    out: list[bytes] = []
    append, prefix = out.append, _NODE_PREFIX
    for a, b in zip(level[0::2], level[1::2], strict=False):
        h = prefix.copy()
        h.update(a)
        h.update(b)
        append(h.digest())
    return out


_LEAF_PREFIX = INTL.hasher(b"\x00")
_NODE_PREFIX = INTL.hasher(b"\x01")


@dataclass(frozen=True)
class TreeHasher:
    """RFC 9162 hashing with one suite's hash (``for_suite``); SHA-256 by default.

    ``leaves`` and ``parents`` hash a whole page or tree level at once (the
    verifier's hot loops), each in the fastest form its library offers.
    """

    suite: str = "intl"
    leaf: Callable[[bytes], bytes] = leaf_hash
    node: Callable[[bytes, bytes], bytes] = node_hash
    empty_root: bytes = field(default=EMPTY_ROOT)
    leaves: Callable[[Sequence[bytes]], list[bytes]] = _sha256_leaves
    parents: Callable[[Sequence[bytes]], list[bytes]] = _sha256_parents

    @classmethod
    def for_suite(cls, suite: Suite) -> TreeHasher:
        if suite.name == "intl":
            return SHA256_TREE
        digest = suite.digest

        def leaf(data: bytes) -> bytes:
            return digest(b"\x00" + data)

        def node(left: bytes, right: bytes) -> bytes:
            return digest(b"\x01" + left + right)

        def leaves(entries: Sequence[bytes]) -> list[bytes]:
            return [digest(b"\x00" + e) for e in entries]

        def parents(level: Sequence[bytes]) -> list[bytes]:
            return [digest(b"\x01" + a + b) for a, b in zip(level[0::2], level[1::2], strict=False)]

        return cls(suite.name, leaf, node, digest(b""), leaves, parents)


SHA256_TREE: Final = TreeHasher()


def subtree_levels(leaf_hashes: list[bytes], th: TreeHasher) -> list[list[bytes]]:
    """Every level of the perfect subtrees over ``leaf_hashes``, bottom-up:
    level k holds the nodes of 2**k leaves (an unpaired last node is dropped),
    hashed a level at a time with ``th``'s batch form."""
    levels = [leaf_hashes]
    cur = leaf_hashes
    while len(cur) > 1:
        cur = th.parents(cur)
        levels.append(cur)
    return levels


# --------------------------------------------------------------------------
# Roots
# --------------------------------------------------------------------------


def root_of(leaf_hashes: Sequence[bytes], th: TreeHasher = SHA256_TREE) -> bytes:
    """MTH over already-hashed leaves (level by level; an unpaired last node is
    promoted unchanged, which equals RFC 9162's largest-power-of-two split)."""
    if not leaf_hashes:
        return th.empty_root
    node_hash = th.node
    level = list(leaf_hashes)
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def decompose(lo: int, hi: int) -> list[NodeId]:
    """Perfect aligned nodes covering ``[lo, hi)``, left to right."""
    if not 0 <= lo <= hi:
        raise ValueError("bad range")
    out: list[NodeId] = []
    while lo < hi:
        level = (lo & -lo).bit_length() - 1 if lo else (hi - lo).bit_length() - 1
        while (1 << level) > hi - lo:
            level -= 1
        out.append((level, lo >> level))
        lo += 1 << level
    return out


def prefix_nodes(size: int) -> list[NodeId]:
    """Perfect nodes covering ``[0, size)``: one per set bit of ``size``."""
    return [
        (level, (size >> level) - 1)
        for level in range(size.bit_length() - 1, -1, -1)
        if size >> level & 1
    ]


def fold(hashes: Sequence[bytes], th: TreeHasher = SHA256_TREE) -> bytes:
    """Hash of a range from its perfect pieces (left to right), folded from the right."""
    if not hashes:
        return th.empty_root
    node_hash = th.node
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


# --------------------------------------------------------------------------
# Proof plans: which subtree ranges a proof consists of (bottom-up order)
# --------------------------------------------------------------------------


def _split(n: int) -> int:
    """Largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_plan(index: int, size: int) -> list[tuple[int, int]]:
    """RFC 9162 PATH(index, D[0:size]) as ranges ``[lo, hi)``, bottom-up."""
    if not 0 <= index < size:
        raise ValueError("index outside tree")
    out: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo += k
    out.reverse()
    return out


def consistency_plan(size1: int, size2: int) -> list[tuple[int, int]]:
    """RFC 9162 PROOF(size1, D[0:size2]) as ranges ``[lo, hi)``, bottom-up."""
    if not 0 < size1 <= size2:
        raise ValueError("need 0 < size1 <= size2")
    out: list[tuple[int, int]] = []
    lo, hi, complete = 0, size2, True
    while True:
        n, m = hi - lo, size1 - lo
        if m == n:
            if not complete:
                out.append((lo, hi))
            break
        k = _split(n)
        if m <= k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo += k
            complete = False
    out.reverse()
    return out


def build_proof(
    plan: Sequence[tuple[int, int]], read: NodeReader, th: TreeHasher = SHA256_TREE
) -> list[bytes]:
    """Turn a plan into hashes, reading every needed node in one call."""
    pieces = [decompose(lo, hi) for lo, hi in plan]
    flat = [node for p in pieces for node in p]
    hashes = list(read(flat))
    if len(hashes) != len(flat):
        raise VerificationFailed("node store returned the wrong number of hashes")
    out: list[bytes] = []
    pos = 0
    for p in pieces:
        out.append(fold(hashes[pos : pos + len(p)], th))
        pos += len(p)
    return out


# --------------------------------------------------------------------------
# Verification (RFC 9162 2.1.3.2 and 2.1.4.2)
# --------------------------------------------------------------------------


def _check_proof_shape(proof: Sequence[bytes]) -> None:
    if len(proof) > MAX_PROOF_HASHES:
        raise VerificationFailed(
            f"proof: expected at most {MAX_PROOF_HASHES} hashes, got {len(proof)}"
        )
    for i, p in enumerate(proof):
        if len(p) != HASH_LEN:
            raise VerificationFailed(f"proof hash {i}: expected {HASH_LEN} bytes, got {len(p)}")


def root_from_inclusion_proof(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], th: TreeHasher = SHA256_TREE
) -> bytes:
    if size <= 0 or not 0 <= index < size:
        raise VerificationFailed(f"inclusion proof: index {index} outside tree of size {size}")
    if len(leaf) != HASH_LEN:
        raise VerificationFailed(f"leaf hash: expected {HASH_LEN} bytes, got {len(leaf)}")
    _check_proof_shape(proof)
    node_hash = th.node
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise VerificationFailed("inclusion proof: too many hashes")
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
    if sn != 0:
        raise VerificationFailed("inclusion proof: too few hashes")
    return r


def verify_inclusion(
    index: int,
    size: int,
    leaf: bytes,
    proof: Sequence[bytes],
    root: bytes,
    th: TreeHasher = SHA256_TREE,
) -> None:
    """Raise VerificationFailed unless ``proof`` shows leaf ``index`` in the tree."""
    computed = root_from_inclusion_proof(index, size, leaf, proof, th)
    if not digest_equal(computed, root):
        raise VerificationFailed("inclusion proof: root mismatch")


def verify_consistency(
    size1: int,
    size2: int,
    proof: Sequence[bytes],
    root1: bytes,
    root2: bytes,
    th: TreeHasher = SHA256_TREE,
) -> None:
    """Raise VerificationFailed unless tree ``size1`` is a prefix of tree ``size2``.

    ``size1 == 0`` is refused: every tree extends the empty tree, so such a
    "proof" proves nothing (witnesses treat a first sighting separately).
    """
    if size1 < 0 or size2 < 0:
        raise VerificationFailed("consistency proof: negative size")
    if size2 < size1:
        raise VerificationFailed(f"consistency proof: size2 {size2} < size1 {size1}")
    if size1 == 0:
        raise VerificationFailed("consistency proof: size1 must be at least 1")
    _check_proof_shape(proof)
    if size1 == size2:
        if proof:
            raise VerificationFailed("consistency proof: sizes equal but proof not empty")
        if not digest_equal(root1, root2):
            raise VerificationFailed("consistency proof: sizes equal but roots differ")
        return
    if not proof:
        raise VerificationFailed("consistency proof: empty")
    node_hash = th.node
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationFailed("consistency proof: too many hashes")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationFailed("consistency proof: too few hashes")
    if not digest_equal(fr, root1):
        raise VerificationFailed("consistency proof: old root mismatch")
    if not digest_equal(sr, root2):
        raise VerificationFailed("consistency proof: new root mismatch")


# --------------------------------------------------------------------------
# Append-only frontier
# --------------------------------------------------------------------------


class Frontier:
    """The perfect nodes covering ``[0, size)`` (one per set bit of size).

    ``push`` appends a leaf hash and returns the interior nodes it completed,
    which the store persists so that later proofs can read them.
    """

    __slots__ = ("_nodes", "_th", "size")

    def __init__(
        self, size: int = 0, nodes: Sequence[bytes] = (), th: TreeHasher = SHA256_TREE
    ) -> None:
        if len(nodes) != bin(size).count("1"):
            raise ValueError("frontier: one node per set bit of size expected")
        self.size = size
        self._nodes = list(nodes)  # highest level first
        self._th = th

    def copy(self) -> Frontier:
        return Frontier(self.size, self._nodes, self._th)

    def push(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        created: list[tuple[int, int, bytes]] = []
        i = self.size
        h = leaf
        level = 0
        node_hash = self._th.node
        while i & 1:
            h = node_hash(self._nodes.pop(), h)
            i >>= 1
            level += 1
            created.append((level, i, h))
        self._nodes.append(h)
        self.size += 1
        return created

    def root(self) -> bytes:
        return fold(self._nodes, self._th)
