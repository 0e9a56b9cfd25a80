"""The holder's blind-index store on PostgreSQL, shared by the gateway's replicas.

Owns: the ``SubjectIndexStore`` Protocol (``gateway.subject.store``) on the
shared database, with the SQLite store's rules: an entry row and its blind
indexes are written in one transaction before the ledger append, a request id
is indexed once (primary key: a second ``record`` for it fails and writes
nothing), and the ledger index is linked afterwards. Every replica reads and
writes the same rows, so a subject-access request answered by any replica sees
the entries every replica appended. Tables: ``subject_entries`` and
``subject_index`` (``gateway.storage.postgres.schema``, migration 2).

The rows are a covered commit (``gateway.storage.postgres.db``): written
before the ledger append, durable at the latest with the entry they index.

Holds no personal data: blind indexes are MACs under a key not stored here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.errors import StorageFailure
from gateway.groupcommit import GroupCommit
from gateway.storage.postgres.db import COVERED_COMMIT, PgDatabase
from gateway.subject.store import IndexedEntry, PendingLinks, SqlSubjectReads, fields_text

_WHAT = "subject index store"


class PgSubjectIndexStore(SqlSubjectReads):
    """Concurrent ``record`` calls of one replica are group-committed (one
    transaction for all waiting exchanges); links, only a cache of where an
    entry landed, go with the next transaction (``PendingLinks``)."""

    PLACEHOLDER = "%s"
    BYTE_ORDER = ' COLLATE "C"'

    def __init__(self, db: PgDatabase) -> None:
        self._db = db
        self._links = PendingLinks()
        self._group: GroupCommit[tuple[IndexedEntry, Sequence[bytes]]] = GroupCommit(
            self.record_many, retry_alone=lambda exc: not db.down
        )

    def record(self, entry: IndexedEntry, indexes: Sequence[bytes]) -> None:
        self._group.submit((entry, indexes))

    def record_many(self, rows: Sequence[tuple[IndexedEntry, Sequence[bytes]]]) -> None:
        if not rows:
            return
        blinds = [(b, e.request_id) for e, idx in rows for b in set(idx)]
        links = self._links.snapshot()
        with self._db.connection(_WHAT) as conn:
            # One statement, so one round trip and (autocommit) one atomic
            # transaction a group: the pending links of earlier entries, the
            # entry rows and their indexes (arrays, not a row at a time).
            conn.execute(
                "WITH l AS (UPDATE subject_entries s SET entry_index = u.i"
                " FROM unnest(%s::text[], %s::bigint[]) AS u(r, i) WHERE s.request_id = u.r),"
                " e AS (INSERT INTO subject_entries (request_id, coverage, dataset,"
                " fields, recorded_ms, entry_index) SELECT * FROM unnest(%s::text[],"
                " %s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[])"
                f" WHERE {COVERED_COMMIT})"
                " INSERT INTO subject_index (blind, request_id)"
                " SELECT * FROM unnest(%s::bytea[], %s::text[])",
                (
                    list(links),
                    list(links.values()),
                    [e.request_id for e, _ in rows],
                    [e.coverage for e, _ in rows],
                    [e.dataset for e, _ in rows],
                    [fields_text(e.fields) for e, _ in rows],
                    [e.recorded_ms for e, _ in rows],
                    [e.entry_index for e, _ in rows],
                    [b for b, _ in blinds],
                    [r for _, r in blinds],
                ),
            )
        self._links.written(links)

    def link(self, request_id: str, entry_index: int) -> None:
        self._links.add(request_id, entry_index)

    @staticmethod
    def _write_links(cur: Any, links: dict[str, int]) -> None:
        if links:
            cur.execute(
                "UPDATE subject_entries s SET entry_index = u.i"
                " FROM unnest(%s::text[], %s::bigint[]) AS u(r, i) WHERE s.request_id = u.r",
                (list(links), list(links.values())),
            )

    def _rows(self, sql: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        with self._db.connection(_WHAT) as conn:
            return conn.execute(sql, params).fetchall()

    def close(self) -> None:
        """Writes the links not yet written; the database is closed by its owner."""
        links = self._links.snapshot()
        if not links:
            return
        try:
            with self._db.transaction(_WHAT) as conn, conn.cursor() as cur:
                self._write_links(cur, links)
            self._links.written(links)
        except StorageFailure:
            pass  # only a cache: the rows are found through the ledger instead
