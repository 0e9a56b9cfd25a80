"""A holder's subject-access answer verifies, and every mutation of it fails.

The answer is built by the real holder code over a real ledger and index store
(SQLite files, and the PostgreSQL database replicas share: ``holder`` runs
each test on both); mutations change what an attacker (a lying holder, or someone who edited
the holder's stores) could change, and verification must fail naming the check.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway._proto.dataexchange.gateway.v1 import common_pb2, subject_pb2
from gateway.crypto import SigningKey
from gateway.errors import VerificationFailed
from gateway.ledger.note import Checkpoint, parse_note, sign_checkpoint
from gateway.limits import DEFAULT_LIMITS
from gateway.subject.index import blind_index
from gateway.subject.indexer import Concerned
from gateway.subject.verify import verify_answer
from tests.ledger.ledger_testkit import ORIGIN
from tests.pgtest import fresh_schema, postgres_dsn
from tests.subject.subject_testkit import ALICE, BOB, FIELDS, Holder, named, open_holder


def _answer(h: Holder, who: str = ALICE) -> subject_pb2.SubjectHistoryProofs:
    proofs, _ = h.history.answer(who)
    return proofs


def _kinds(h: Holder, proofs: subject_pb2.SubjectHistoryProofs) -> list[str]:
    return [i.kind for i in verify_answer(proofs, h.keys(), DEFAULT_LIMITS)]


def test_history_lists_entries_naming_the_person_and_dataset_wide_ones_only(
    holder: Holder,
) -> None:
    a = holder.exchange(1, named(ALICE))
    holder.exchange(2, named(BOB))
    both = holder.exchange(3, named(ALICE, BOB))
    refused = holder.exchange(4, named(ALICE, fields=()), kind="refusal", decision="deny")
    bulk = holder.exchange(5, Concerned("pseudonymised", "household_register", (), FIELDS))
    stats = holder.exchange(6, None, kind="stats_release")
    holder.exchange(7, None)  # concerns nobody that can be named
    holder.cosign_latest()
    items = verify_answer(_answer(holder), holder.keys(), DEFAULT_LIMITS)
    assert {i.request_id: i.kind for i in items} == {
        a.request_id: "records",
        both.request_id: "records",
        refused.request_id: "refusal",
        bulk.request_id: "bulk_pseudonymised",
        stats.request_id: "statistics",
    }
    assert all(i.cosigned_by == ("120000.gateway.dataexchange.cn/witness",) for i in items)
    assert items[0].fields == FIELDS


def test_unknown_person_gets_an_empty_answer_like_anyone_else(holder: Holder) -> None:
    holder.exchange(1, named(BOB))
    proofs = _answer(holder, "999999999999999999")
    assert list(proofs.entries) == [] and len(proofs.blind_index) == 32


def test_entries_newer_than_the_cosigned_checkpoint_are_proven_against_a_fresh_one(
    holder: Holder,
) -> None:
    holder.exchange(1, named(ALICE))
    holder.cosign_latest()
    holder.exchange(2, named(ALICE))
    proofs = _answer(holder)
    assert len(proofs.checkpoints) == 2
    items = verify_answer(proofs, holder.keys(), DEFAULT_LIMITS)
    assert [len(i.cosigned_by) for i in items] == [1, 0]


def test_history_counts_a_witness_that_rotated_its_key_since_it_cosigned(
    holder: Holder, tmp_path: Path
) -> None:
    """120000 and 130000 cosigned the checkpoint, then 120000 rotated its witness
    key: its cosignature verifies with the key the trust bundle lists for that time
    (the retired one), as the audit report counts it. Only the current key was
    tried, so `audit subject` and the portal showed one cosigner instead of two."""
    from gateway.subject.verify import holder_keys
    from gateway.trust import load_bundle
    from tests.ledger.ledger_testkit import witness_name, witness_round, write_trust_bundle

    holder.exchange(1, named(ALICE))
    holder.ledger.checkpoint_now()
    for j in ("120000", "130000"):
        witness_round(holder.ledger, j, tmp_path / f"w{j}.db")
    bundle = load_bundle(write_trust_bundle(tmp_path / "trust", rotated_witnesses=("120000",)))
    items = verify_answer(_answer(holder), holder_keys(bundle, "110000", None), DEFAULT_LIMITS)
    assert [i.cosigned_by for i in items] == [(witness_name("120000"), witness_name("130000"))]


def _resolved(h: Holder) -> subject_pb2.SubjectHistoryProofs:
    h.exchange(1, named(ALICE))
    h.exchange(2, named(ALICE, BOB))
    h.cosign_latest()
    return _answer(h)


def test_index_row_added_in_the_store_later_fails_its_proof(holder: Holder) -> None:
    bob_only = holder.exchange(1, named(BOB))
    holder.cosign_latest()
    holder.tamper(
        "subject",
        "INSERT INTO subject_index (blind, request_id) VALUES (?, ?)",
        blind_index(holder.key, ALICE),
        bob_only.request_id,
    )
    with pytest.raises(VerificationFailed, match="index-set proof"):
        verify_answer(_answer(holder), holder.keys(), DEFAULT_LIMITS)


def test_index_row_moved_to_another_entry_fails_its_proof(holder: Holder) -> None:
    a = holder.exchange(1, named(ALICE, BOB))
    b = holder.exchange(2, named(BOB))
    holder.cosign_latest()
    holder.tamper(
        "subject",
        "UPDATE subject_index SET request_id = ? WHERE request_id = ? AND blind = ?",
        b.request_id,
        a.request_id,
        blind_index(holder.key, ALICE),
    )
    with pytest.raises(VerificationFailed, match="index-set proof"):
        verify_answer(_answer(holder), holder.keys(), DEFAULT_LIMITS)


def test_ledger_entry_edited_in_the_store_fails_its_inclusion_proof(holder: Holder) -> None:
    holder.exchange(1, named(ALICE))
    holder.cosign_latest()
    ((entry,),) = holder.tamper("ledger", "SELECT entry FROM ledger_entries WHERE idx = 0")
    holder.tamper(
        "ledger",
        "UPDATE ledger_entries SET entry = ? WHERE idx = 0",
        bytes(entry).replace(b"benefit_eligibility", b"benefit_eligibilitx"),
    )
    with pytest.raises(VerificationFailed, match="inclusion proof"):
        verify_answer(_answer(holder), holder.keys(), DEFAULT_LIMITS)


def test_fields_shown_other_than_those_released_fail(holder: Holder) -> None:
    proofs = _resolved(holder)
    proofs.entries[0].fields.append(common_pb2.FieldRelease(name="phone", transform="pass"))
    with pytest.raises(VerificationFailed, match="fields"):
        verify_answer(proofs, holder.keys(), DEFAULT_LIMITS)


def test_blind_index_of_someone_else_fails(holder: Holder) -> None:
    proofs = _resolved(holder)
    proofs.blind_index = blind_index(holder.key, BOB)
    with pytest.raises(VerificationFailed, match="index-set proof"):
        verify_answer(proofs, holder.keys(), DEFAULT_LIMITS)


def test_checkpoint_resigned_by_a_key_not_in_the_trust_bundle_fails(holder: Holder) -> None:
    proofs = _resolved(holder)
    body, _ = parse_note(proofs.checkpoints[0])
    attacker = SigningKey(bytes(range(2, 34)))
    proofs.checkpoints[0] = sign_checkpoint(Checkpoint.parse(body), attacker)
    with pytest.raises(VerificationFailed, match="checkpoint 0"):
        verify_answer(proofs, holder.keys(), DEFAULT_LIMITS)


def test_checkpoint_of_a_forged_tree_resigned_by_the_attacker_fails(holder: Holder) -> None:
    proofs = _resolved(holder)
    attacker = SigningKey(bytes(range(2, 34)))
    forged = Checkpoint(ORIGIN, proofs.entries[0].tree_size, bytes(32))
    proofs.checkpoints[0] = sign_checkpoint(forged, attacker)
    with pytest.raises(VerificationFailed):
        verify_answer(proofs, holder.keys(), DEFAULT_LIMITS)


def test_two_checkpoints_of_one_size_with_different_roots_fail(holder: Holder) -> None:
    """The holder's own key signed a second tree of the cosigned size (a fork). Keeping
    whichever came last dropped the other without a word: the answer verified while
    carrying the holder's signed equivocation."""
    from gateway.ledger.note import open_checkpoint

    proofs = _resolved(holder)
    cp = open_checkpoint(proofs.checkpoints[0], ORIGIN, holder.keys().ledger_keys)
    forked = sign_checkpoint(Checkpoint(ORIGIN, cp.size, bytes(32)), holder.log_key)
    proofs.checkpoints.insert(0, forked)
    with pytest.raises(VerificationFailed, match="fork"):
        verify_answer(proofs, holder.keys(), DEFAULT_LIMITS)


def test_entry_listed_twice_or_at_another_index_fails(holder: Holder) -> None:
    proofs = _resolved(holder)
    twice = subject_pb2.SubjectHistoryProofs()
    twice.CopyFrom(proofs)
    twice.entries.append(proofs.entries[0])
    with pytest.raises(VerificationFailed, match="twice"):
        verify_answer(twice, holder.keys(), DEFAULT_LIMITS)
    proofs.entries[0].index = 1
    with pytest.raises(VerificationFailed):
        verify_answer(proofs, holder.keys(), DEFAULT_LIMITS)


def test_inclusion_proof_against_a_checkpoint_not_in_the_answer_fails(holder: Holder) -> None:
    proofs = _resolved(holder)
    proofs.entries[0].tree_size += 5
    with pytest.raises(VerificationFailed, match="checkpoint not in the answer"):
        verify_answer(proofs, holder.keys(), DEFAULT_LIMITS)


def test_another_holders_entry_passed_off_as_this_holders_fails(holder: Holder) -> None:
    holder.exchange(1, named(ALICE), local="120000", counterparty="110000")
    holder.cosign_latest()
    with pytest.raises(VerificationFailed, match="not a holder entry of 110000"):
        verify_answer(_answer(holder), holder.keys(), DEFAULT_LIMITS)


def test_set_proof_hash_changed_fails(holder: Holder) -> None:
    proofs = _resolved(holder)
    second = proofs.entries[1]
    second.set_proof[0] = bytes(32)
    with pytest.raises(VerificationFailed, match="index-set proof"):
        verify_answer(proofs, holder.keys(), DEFAULT_LIMITS)
    assert _kinds(holder, _answer(holder)) == ["records", "records"]


def test_more_matches_than_one_answer_holds_keeps_the_newest_and_says_so(
    holder: Holder,
) -> None:
    from dataclasses import replace

    from gateway.subject.holder import HistoryResponder

    for i in range(5):
        holder.exchange(i, named(ALICE))
    holder.cosign_latest()
    limits = replace(DEFAULT_LIMITS, max_history_entries=3)
    proofs, truncated = HistoryResponder(holder.ledger, holder.store, holder.key, limits).answer(
        ALICE
    )
    assert truncated and [e.index for e in proofs.entries] == [2, 3, 4]
    assert len(verify_answer(proofs, holder.keys(), limits)) == 3
    with pytest.raises(VerificationFailed, match="more than 2 entries"):
        verify_answer(proofs, holder.keys(), replace(limits, max_history_entries=2))


def test_replica_that_has_not_appended_lately_still_lists_entries_another_replica_linked(
    tmp_path: Path,
) -> None:
    """Two replicas share the holder's PostgreSQL ledger and index store. Replica 1
    ledgers two exchanges naming alice (the first one's link is written with the
    second's rows); replica 2, which has appended nothing since it started, answers.
    It used to compare the linked index with its own in-memory ledger size and drop
    the entry silently (no truncation, no verification failure)."""
    dsn = postgres_dsn()
    with fresh_schema(dsn, "subj") as schema:
        one = open_holder(tmp_path / "1", (dsn, schema))
        two = open_holder(tmp_path / "2", (dsn, schema))
        try:
            first = one.exchange(1, named(ALICE))
            second = one.exchange(2, named(ALICE))
            (linked,) = one.tamper(
                "subject",
                "SELECT entry_index FROM subject_entries WHERE request_id = ?",
                first.request_id,
            )
            assert linked == (0,)
            one.cosign_latest()
            items = verify_answer(_answer(two), two.keys(), DEFAULT_LIMITS)
            assert {i.request_id for i in items} == {first.request_id, second.request_id}
        finally:
            two.close()
            one.close()
