"""The holder's index store and the indexing ledger writer: one contract, run on
real SQLite files and on the PostgreSQL database a gateway's replicas share
(``holder`` is parametrised over both; ``two_stores`` opens the same state twice)."""

from __future__ import annotations

import pytest

from gateway.errors import InvalidArgument, StorageFailure
from gateway.ledger.entry import decode_entry
from gateway.storage.backend import Stores
from gateway.subject.index import blind_index, commit, subjects_of
from gateway.subject.indexer import Concerned
from gateway.subject.store import IndexedEntry
from tests.storage.conftest import Backend
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
    if holder.backend == "sqlite":
        for path in holder.ledger.store.path.parent.glob("*.sqlite*"):  # type: ignore[attr-defined]
            assert ALICE.encode() not in path.read_bytes()
        return
    for table in ("ledger_entries", "ledger_meta", "subject_entries", "subject_index"):
        for row in holder.tamper("ledger", f"SELECT * FROM {table}"):
            for value in row:
                raw = (
                    bytes(value) if isinstance(value, (bytes, memoryview)) else str(value).encode()
                )
                assert ALICE.encode() not in raw, table


def test_failed_ledger_append_leaves_no_row_shown(holder: Holder) -> None:
    if holder.backend == "postgres":
        # The rows ride in the append's own transaction: make the ledger's own
        # insert fail there (as a full disk would), after the rows were queued.
        holder.tamper(
            "ledger",
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'disk full'; END $$",
        )
        holder.tamper(
            "ledger",
            "CREATE TRIGGER refuse BEFORE INSERT ON ledger_entries"
            " FOR EACH ROW EXECUTE FUNCTION refuse()",
        )
    else:

        class Broken:
            def append(self, event: object) -> object:
                raise StorageFailure("disk full")

        holder.indexer._ledger = Broken()  # type: ignore[assignment]
    with pytest.raises(StorageFailure):
        holder.exchange(1, named(ALICE))
    rows = list(holder.store.all_entries())
    if holder.backend == "postgres":
        assert rows == []  # neither the entry nor its rows
    else:  # rows first, in another file: left unlinked
        (row,) = rows
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


def _entry(rid: str, ms: int, coverage: str = "named") -> IndexedEntry:
    return IndexedEntry(rid, coverage, "d", (("a", "pass"), ("b", "mask")), ms)  # type: ignore[arg-type]


def test_store_reopens_with_its_rows(backend: Backend) -> None:
    store = backend.open().subject
    store.record(_entry("r1", 5), [b"\x01" * 32])
    store.link("r1", 7)
    backend.opened.pop().close()
    again = backend.open().subject
    (row,) = again.named(b"\x01" * 32, 5)
    assert (row.request_id, row.entry_index, row.fields) == (
        "r1",
        7,
        (("a", "pass"), ("b", "mask")),
    )


def test_a_request_id_indexed_twice_is_refused_and_writes_nothing(backend: Backend) -> None:
    store = backend.open().subject
    store.record(_entry("r1", 5), [b"\x01" * 32])
    with pytest.raises(StorageFailure):
        store.record_many([(_entry("r2", 6), [b"\x02" * 32]), (_entry("r1", 7), [b"\x03" * 32])])
    assert [e.request_id for e in store.all_entries()] == ["r1"]
    assert store.named(b"\x02" * 32, 5) == [] and store.named(b"\x03" * 32, 5) == []
    assert store.indexes_of("r1") == [b"\x01" * 32]


def test_every_replica_sees_the_index_rows_another_replica_wrote(backend: Backend) -> None:
    """On PostgreSQL replicas share one index (a request answered by any replica
    sees every exchange); on SQLite the second "replica" is the same process's
    files reopened."""
    a, b = backend.open().subject, backend.open().subject
    a.record_many(
        [(_entry(f"r{i:04d}", i), [b"\x01" * 32, bytes([i % 256]) * 32]) for i in range(1, 2501)]
    )
    b.link("r0001", 0)  # a cache: written with b's next transaction
    b.record(_entry("bulk", 9999, "dataset"), [])
    assert len(b.named(b"\x01" * 32, 10_000)) == 2500
    assert [e.request_id for e in b.named(b"\x01" * 32, 2)] == ["r2500", "r2499"]
    assert [e.request_id for e in a.covering(5)] == ["bulk"]
    ids = [e.request_id for e in a.all_entries()]  # pages of 1000, byte order
    assert ids == sorted(ids) and len(ids) == 2501
    assert next(e for e in a.all_entries() if e.request_id == "r0001").entry_index == 0
    assert sorted(a.indexes_of("r0002")) == [b"\x01" * 32, b"\x02" * 32]


def test_stores_open_the_subject_index_on_the_configured_backend(backend: Backend) -> None:
    stores: Stores = backend.open()
    kind = type(stores.subject).__name__
    assert kind == (
        "SqliteSubjectIndexStore" if backend.name == "sqlite" else "PgSubjectIndexStore"
    )


def test_link_is_seen_at_once_and_kept_after_reopening(backend: Backend) -> None:
    store = backend.open().subject
    store.record(_entry("r-1", 1), [b"\x01" * 32])
    store.link("r-1", 7)
    (row,) = store.named(b"\x01" * 32, 10)
    assert row.entry_index == 7  # shown before it is written (kept in memory until then)
    store.record(_entry("r-2", 2), [b"\x02" * 32])
    store.link("r-2", 8)
    backend.opened.pop().close()  # r-1's link went with r-2's transaction, r-2's at close
    again = backend.open().subject
    assert {e.request_id: e.entry_index for e in again.all_entries()} == {"r-1": 7, "r-2": 8}


def test_concurrent_records_share_transactions_and_a_duplicate_fails_only_its_caller(
    backend: Backend,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = backend.open().subject
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

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(one, range(64)))
    assert outcomes.count("failed") == 1 and outcomes[13] == "failed"
    assert len(list(store.all_entries())) == 64  # "dup" once, 63 others
