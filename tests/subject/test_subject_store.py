"""The holder's index store and the indexing ledger writer, on real SQLite files."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import InvalidArgument, StorageFailure
from gateway.ledger.entry import decode_entry
from gateway.subject.index import blind_index, commit, subjects_of
from gateway.subject.indexer import Concerned
from gateway.subject.store import IndexedEntry, SqliteSubjectIndexStore
from tests.subject.subject_testkit import ALICE, BOB, FIELDS, Holder, named


def test_entry_commits_to_exactly_the_indexes_stored_for_it(holder: Holder) -> None:
    e = holder.exchange(1, named(ALICE, BOB))
    (rec,) = holder.ledger.find(e.request_id)
    s = subjects_of(decode_entry(rec.entry).event.details)
    assert s.commitment == commit(holder.store.indexes_of(e.request_id))
    assert s.commitment is not None and s.commitment.count == 2
    (row,) = holder.store.named(blind_index(holder.key, ALICE), 10)
    assert (row.request_id, row.entry_index, row.fields) == (e.request_id, rec.index, FIELDS)


def test_ledger_entry_never_holds_the_subject_id(holder: Holder) -> None:
    holder.exchange(1, named(ALICE))
    for path in holder.ledger.store.path.parent.glob("*.sqlite*"):
        assert ALICE.encode() not in path.read_bytes()


def test_failed_ledger_append_leaves_an_unlinked_row_never_shown(holder: Holder) -> None:
    class Broken:
        def append(self, event: object) -> object:
            raise StorageFailure("disk full")

    holder.indexer._ledger = Broken()  # type: ignore[assignment]
    with pytest.raises(StorageFailure):
        holder.exchange(1, named(ALICE))
    (row,) = holder.store.all_entries()
    assert row.entry_index is None
    proofs, _ = holder.history.answer(ALICE)
    assert list(proofs.entries) == []


def test_malformed_event_is_refused_before_any_index_row_is_written(holder: Holder) -> None:
    with pytest.raises(InvalidArgument):
        holder.exchange(1, named(ALICE), purpose="bad\x00purpose")
    assert list(holder.store.all_entries()) == []


def test_named_coverage_without_subject_ids_is_refused(holder: Holder) -> None:
    with pytest.raises(InvalidArgument):
        holder.exchange(1, Concerned("named", "household_register"))


def test_dataset_wide_entries_are_listed_newest_first(holder: Holder) -> None:
    a = holder.exchange(1, Concerned("dataset", "household_register", (), FIELDS))
    b = holder.exchange(2, None, kind="stats_release")
    assert [r.request_id for r in holder.store.covering(10)] == [b.request_id, a.request_id]
    assert [r.coverage for r in holder.store.covering(10)] == ["statistics", "dataset"]


def test_store_reopens_with_its_rows(tmp_path: Path) -> None:
    store = SqliteSubjectIndexStore(tmp_path / "s.sqlite")
    store.record(IndexedEntry("r1", "named", "d", (("a", "pass"),), 5), [b"\x01" * 32])
    store.close()
    again = SqliteSubjectIndexStore(tmp_path / "s.sqlite")
    assert [r.request_id for r in again.named(b"\x01" * 32, 5)] == ["r1"]
    again.close()


def test_link_is_seen_at_once_and_written_with_the_next_record_or_at_close(
    tmp_path: Path,
) -> None:
    path = tmp_path / "subject_index.sqlite"
    store = SqliteSubjectIndexStore(path)
    first = IndexedEntry("r-1", "named", "household_register", FIELDS, 1)
    store.record(first, [b"\x01" * 32])
    store.link("r-1", 7)
    (row,) = store.named(b"\x01" * 32, 10)
    assert row.entry_index == 7  # shown before it is written
    store.record(IndexedEntry("r-2", "named", "household_register", FIELDS, 2), [b"\x02" * 32])
    store.link("r-2", 8)
    store.close()  # r-1's link went with r-2's transaction, r-2's at close
    again = SqliteSubjectIndexStore(path)
    try:
        assert {e.request_id: e.entry_index for e in again.all_entries()} == {"r-1": 7, "r-2": 8}
    finally:
        again.close()


def test_concurrent_records_share_transactions_and_a_duplicate_fails_only_its_caller(
    tmp_path: Path,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = SqliteSubjectIndexStore(tmp_path / "subject_index.sqlite")
    store.record(IndexedEntry("dup", "named", "household_register", FIELDS, 0), [b"\x00" * 32])

    def one(i: int) -> str:
        rid = "dup" if i == 13 else f"r-{i}"
        try:
            store.record(
                IndexedEntry(rid, "named", "household_register", FIELDS, i), [bytes([i]) * 32]
            )
        except StorageFailure:
            return "failed"
        return "ok"

    try:
        with ThreadPoolExecutor(16) as pool:
            outcomes = list(pool.map(one, range(64)))
        assert outcomes.count("failed") == 1 and outcomes[13] == "failed"
        assert len(list(store.all_entries())) == 64  # "dup" once, 63 others
    finally:
        store.close()
