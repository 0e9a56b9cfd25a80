"""Blind indexes and the index-set commitment: pure properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import crypto, domains, identifiers
from gateway.errors import InvalidArgument, VerificationFailed
from gateway.subject.index import (
    SetCommitment,
    SetProof,
    blind_index,
    bulk_coverage,
    commit,
    entry_details,
    fields_digest,
    index_key,
    prove,
    subjects_of,
    verify_membership,
)

KEY = index_key(b"k" * 32)
indexes = st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=40, unique=True)


def test_id_forms_of_one_person_share_one_blind_index() -> None:
    forms = ["11010519900307851x", " 11010519900307851X ", "１１０１０５１９９００３０７８５１Ｘ"]
    normal = {identifiers.subject_id(f) for f in forms}
    assert normal == {"11010519900307851X"}
    assert len({blind_index(KEY, n) for n in normal}) == 1


def test_invalid_subject_id_refusal_does_not_echo_the_id() -> None:
    with pytest.raises(InvalidArgument) as err:
        identifiers.subject_id("110105-1990-0307")
    assert "1990" not in str(err.value)


def test_blind_index_key_is_not_the_pseudonym_key_and_differs_per_holder() -> None:
    secret = b"s" * 32
    assert index_key(secret) != crypto.keyed_hash(secret, domains.PSEUDONYM, b"")
    assert blind_index(index_key(b"a" * 32), "X1") != blind_index(index_key(b"b" * 32), "X1")


@given(indexes)
def test_every_member_of_the_set_proves_against_its_commitment(ids: list[bytes]) -> None:
    c = commit(ids)
    assert c.count == len(ids)
    for member in ids:
        verify_membership(member, prove(ids, member), c)


@given(indexes, st.binary(min_size=32, max_size=32))
def test_index_row_added_later_has_no_proof_to_the_committed_root(
    ids: list[bytes], intruder: bytes
) -> None:
    if intruder in ids:
        return
    c = commit(ids)
    forged_set = [*ids, intruder]
    with pytest.raises(VerificationFailed):
        verify_membership(intruder, prove(forged_set, intruder), c)


@given(indexes)
def test_index_row_removed_later_changes_the_root(ids: list[bytes]) -> None:
    if len(ids) < 2:
        return
    assert commit(ids[1:]).root != commit(ids).root


def test_proof_with_a_moved_position_or_changed_hash_fails() -> None:
    ids = [bytes([i]) * 32 for i in range(5)]
    c = commit(ids)
    p = prove(ids, ids[2])
    with pytest.raises(VerificationFailed):
        verify_membership(ids[2], SetProof(p.position + 1, p.hashes), c)
    with pytest.raises(VerificationFailed):
        verify_membership(ids[2], SetProof(p.position, (bytes(32), *p.hashes[1:])), c)
    with pytest.raises(VerificationFailed):
        verify_membership(ids[2], p, SetCommitment(bytes(32), c.count))


def test_details_round_trip_and_are_sorted() -> None:
    fields = (("person_id", "mask"), ("name", "mask"))
    d = entry_details("named", commit([b"\x01" * 32]), fields)
    assert [k for k, _ in d] == sorted(k for k, _ in d)
    s = subjects_of(d)
    assert s.coverage == "named" and s.commitment == commit([b"\x01" * 32])
    assert s.fields_sha256 == fields_digest(fields)
    assert subjects_of(entry_details("statistics", None, ())).commitment is None


def test_commitment_without_named_coverage_is_refused() -> None:
    with pytest.raises(VerificationFailed):
        subjects_of((("subjects_coverage", "dataset"), ("subjects_root", "00" * 32)))
    with pytest.raises(VerificationFailed):
        subjects_of((("subjects_coverage", "named"),))
    with pytest.raises(VerificationFailed):
        subjects_of(
            (("subjects_count", "01"), ("subjects_coverage", "named"), ("subjects_root", "00" * 32))
        )


def test_bulk_release_with_subject_pseudonymised_or_dropped_is_a_pseudonymised_extract() -> None:
    assert (
        bulk_coverage("person_id", (("person_id", "pseudonymise"), ("age", "pass")))
        == "pseudonymised"
    )
    assert bulk_coverage("person_id", (("age", "pass"),)) == "pseudonymised"
    assert bulk_coverage("person_id", (("person_id", "mask"),)) == "dataset"
