"""Subject-index rows ride with their ledger entry on PostgreSQL.

The holder's index rows are written by the ledger append itself, in the
entry's transaction with its index (``gateway.ledger.storage``: riders): they
are linked at once, and a rider whose request id is indexed already (another
requester reusing an id) fails its own append, never the other exchanges of
its group commit.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from gateway.errors import StorageFailure
from gateway.ledger.events import LedgerEvent
from gateway.subject.index import blind_index
from tests.ledger.ledger_testkit import make_event
from tests.pgtest import fresh_schema, postgres_dsn
from tests.subject.subject_testkit import ALICE, BOB, Holder, named, open_holder


@pytest.fixture
def pg_holder(tmp_path: Path) -> Iterator[Holder]:
    dsn = postgres_dsn()
    with fresh_schema(dsn, "ride") as schema:
        h = open_holder(tmp_path, (dsn, schema))
        yield h
        h.close()


def _event(i: int, request_id: str | None = None) -> LedgerEvent:
    return replace(make_event(i, details=()), request_id=request_id or str(uuid.uuid4()))


def test_index_rows_are_stored_with_their_entry_and_linked_at_once(pg_holder: Holder) -> None:
    event = _event(1)
    receipt = pg_holder.indexer.append(event, named(ALICE, BOB))
    stored = pg_holder.tamper("subject", "SELECT request_id, entry_index FROM subject_entries")
    assert stored == [(event.request_id, receipt.index)]
    (row,) = pg_holder.store.named(blind_index(pg_holder.key, ALICE), 10)
    assert row.entry_index == receipt.index


def test_a_reused_request_id_fails_alone_in_its_group_commit(pg_holder: Holder) -> None:
    taken = str(uuid.uuid4())
    pg_holder.indexer.append(_event(0, taken), named(ALICE))
    size = pg_holder.ledger.size
    # Another replica holds the append lock: the appends below queue up and go
    # into one group commit once it is released.
    ledger_store = pg_holder.stores.ledger
    blocker = psycopg.connect(postgres_dsn(), autocommit=True)
    blocker.execute("BEGIN")
    blocker.execute("SELECT pg_advisory_xact_lock(%s)", (ledger_store._lock_key,))  # type: ignore[attr-defined]
    events = [_event(i) for i in range(1, 5)] + [_event(5, taken)]
    outcomes: dict[str, object] = {}

    def append(e: LedgerEvent) -> None:
        try:
            outcomes[e.request_id] = pg_holder.indexer.append(e, named(BOB))
        except StorageFailure as exc:
            outcomes[e.request_id] = exc

    threads = [threading.Thread(target=append, args=(e,)) for e in events]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(pg_holder.ledger._pending) < len(events) - 1:  # one leads, waiting for the lock
        assert time.monotonic() < deadline, "the appends never queued up"
        time.sleep(0.01)
    blocker.execute("COMMIT")
    blocker.close()
    for t in threads:
        t.join(30)
    failed = [rid for rid, o in outcomes.items() if isinstance(o, StorageFailure)]
    assert failed == [taken]
    assert "subject_entries_pkey" in str(outcomes[taken].__cause__)  # type: ignore[union-attr]
    assert "new request id" in str(outcomes[taken])
    assert pg_holder.ledger.size == size + 4
    assert len(pg_holder.ledger.find(taken)) == 1  # only the first exchange's entry
    for e in events[:-1]:
        (entry,) = pg_holder.ledger.find(e.request_id)
        assert pg_holder.store.indexes_of(e.request_id) == [blind_index(pg_holder.key, BOB)]
        linked = pg_holder.tamper(
            "subject", "SELECT entry_index FROM subject_entries WHERE request_id = ?", e.request_id
        )
        assert linked == [(entry.index,)]
    # The ledger goes on from a consistent tail.
    after = pg_holder.indexer.append(_event(9), named(ALICE))
    assert after.index == size + 4
