"""Merkle proofs: stored-node proofs verify, and interoperate with a naive RFC 9162 reference."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import VerificationFailed
from gateway.ledger.ledger import SqliteLedger
from gateway.ledger.merkle import (
    Frontier,
    build_proof,
    consistency_plan,
    inclusion_plan,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from tests.ledger.ledger_testkit import make_event

# -- naive reference implementation, straight from RFC 9162 section 2.1 ------


def mth(leaves: list[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def ref_path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*ref_path(m, leaves[:k]), mth(leaves[k:])]
    return [*ref_path(m - k, leaves[k:]), mth(leaves[:k])]


def ref_subproof(m: int, leaves: list[bytes], b: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if b else [mth(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*ref_subproof(m, leaves[:k], b), mth(leaves[k:])]
    return [*ref_subproof(m - k, leaves[k:], False), mth(leaves[:k])]


def leaves_of(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def stored(leaves: list[bytes]) -> Callable[[list[tuple[int, int]]], list[bytes]]:
    f = Frontier()
    nodes: dict[tuple[int, int], bytes] = {}
    for i, h in enumerate(leaves):
        nodes[(0, i)] = h
        for level, idx, nh in f.push(h):
            nodes[(level, idx)] = nh
    assert f.root() == mth(leaves)
    return lambda ids: [nodes[i] for i in ids]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.data())
def test_proofs_from_stored_nodes_equal_reference_and_verify(n: int, data: st.DataObject) -> None:
    leaves = leaves_of(n)
    read = stored(leaves)
    root = mth(leaves)
    assert root_of(leaves) == root
    m = data.draw(st.integers(0, n - 1))
    proof = build_proof(inclusion_plan(m, n), read)
    assert proof == ref_path(m, leaves)
    verify_inclusion(m, n, leaves[m], proof, root)
    s1 = data.draw(st.integers(1, n))
    cproof = build_proof(consistency_plan(s1, n), read)
    assert cproof == ref_subproof(s1, leaves, True)
    verify_consistency(s1, n, cproof, mth(leaves[:s1]), root)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 200), st.data())
def test_reference_proofs_with_a_flipped_bit_are_rejected(n: int, data: st.DataObject) -> None:
    leaves = leaves_of(n)
    root = mth(leaves)
    m = data.draw(st.integers(0, n - 1))
    proof = ref_path(m, leaves)
    if proof:
        j = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        bad = list(proof)
        bad[j] = bytes(b ^ (1 << (bit % 8)) if k == bit // 8 else b for k, b in enumerate(bad[j]))
        with pytest.raises(VerificationFailed):
            verify_inclusion(m, n, leaves[m], bad, root)
    with pytest.raises(VerificationFailed):
        verify_inclusion(m, n, leaves[m], [*proof, leaves[0]], root)  # trailing garbage
    s1 = data.draw(st.integers(1, n - 1))
    cproof = ref_subproof(s1, leaves, True)
    with pytest.raises(VerificationFailed):
        verify_consistency(
            s1, n, cproof, mth(leaves[:s1]), mth(leaves[:-1]) if n > s1 + 1 else leaf_hash(b"x")
        )


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.integers(1, 40), st.data())
def test_ledger_proofs_verify_against_signed_roots(
    new_ledger: Callable[..., SqliteLedger], n: int, data: st.DataObject
) -> None:
    ledger = new_ledger(name=f"h{n}-{data.draw(st.integers(0, 10**9))}.db", n=n, every=5)
    i = data.draw(st.integers(0, n - 1))
    root = ledger.root_at(n)
    th = ledger.tree
    verify_inclusion(i, n, ledger.entry(i).entry_hash, ledger.inclusion_proof(i, n), root, th)
    s1 = data.draw(st.integers(1, n))
    verify_consistency(s1, n, ledger.consistency_proof(s1, n), ledger.root_at(s1), root, th)
    for cp in ledger.checkpoints():
        assert ledger.root_at(cp.checkpoint.size) == cp.checkpoint.root


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert root_of([]) == hashlib.sha256(b"").digest()


def test_overlong_proof_is_refused_before_hashing() -> None:
    with pytest.raises(VerificationFailed, match="at most 64"):
        verify_inclusion(0, 2, bytes(32), [bytes(32)] * 65, bytes(32))


def test_single_entry_ledger_event_is_its_own_root(new_ledger: Callable[..., SqliteLedger]) -> None:
    ledger = new_ledger(n=1, every=1)
    assert ledger.root_at(1) == ledger.entry(0).entry_hash
    assert make_event(0).request_id == ledger.entry(0).event.request_id
