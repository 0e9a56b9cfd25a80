"""The holder's blind-index store on PostgreSQL, shared by the gateway's replicas.

Owns: the ``SubjectIndexStore`` Protocol (``gateway.subject.store``) on the
shared database. An exchange's entry row and blind indexes ride with its
ledger entry (``rider``; this store is the ``RiderWriter`` of
``gateway.storage.postgres.ledger``): the append writes them in the entry's own
transaction, with its index, so they are stored together or not at all, and
linked from the start. A request id is indexed once (primary key): a rider
whose request id is stored already fails its own append (``conflict``:
``RiderConflict``), not the others of its group commit. ``record`` (bulk
loading, tools) writes rows on their own, linked afterwards (``link``,
written with the next ``record``). Every replica reads and writes the same
rows, so a subject-access request answered by any replica sees the entries
every replica appended. Tables: ``subject_entries`` and ``subject_index``
(``gateway.storage.postgres.schema``, migration 2).

Holds no personal data: blind indexes are MACs under a key not stored here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Final

import psycopg

from gateway.errors import StorageFailure
from gateway.ledger.storage import Rider
from gateway.storage.postgres.db import Connection, PgDatabase
from gateway.subject.store import (
    IndexedEntry,
    PendingLinks,
    SqlSubjectReads,
    SubjectRows,
    fields_text,
)

_WHAT = "subject index store"
# The keys whose conflict is a rider's own (the request id indexed already).
_KEYS: Final = frozenset({"subject_entries_pkey", "subject_index_pkey"})
# The entry rows and their indexes: one statement (arrays, not a row at a time).
_INSERT: Final = (
    "e AS (INSERT INTO subject_entries (request_id, coverage, dataset,"
    " fields, recorded_ms, entry_index) SELECT * FROM unnest(%s::text[],"
    " %s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[]))"
    " INSERT INTO subject_index (blind, request_id)"
    " SELECT * FROM unnest(%s::bytea[], %s::text[])"
)
_RIDERS: Final = "WITH " + _INSERT  # linked already
# ``record``: with the pending links of earlier rows.
_WRITE: Final = (
    "WITH l AS (UPDATE subject_entries s SET entry_index = u.i"
    " FROM unnest(%s::text[], %s::bigint[]) AS u(r, i) WHERE s.request_id = u.r), " + _INSERT
)


def _params(rows: Sequence[tuple[IndexedEntry, Sequence[bytes]]]) -> tuple[list[Any], ...]:
    blinds = [(b, e.request_id) for e, idx in rows for b in set(idx)]
    return (
        [e.request_id for e, _ in rows],
        [e.coverage for e, _ in rows],
        [e.dataset for e, _ in rows],
        [fields_text(e.fields) for e, _ in rows],
        [e.recorded_ms for e, _ in rows],
        [e.entry_index for e, _ in rows],
        [b for b, _ in blinds],
        [r for _, r in blinds],
    )


class PgSubjectIndexStore(SqlSubjectReads):
    PLACEHOLDER = "%s"
    BYTE_ORDER = ' COLLATE "C"'

    def __init__(self, db: PgDatabase) -> None:
        self._db = db
        self._links = PendingLinks()

    # -- as the ledger's rider writer ------------------------------------------

    def rider(self, entry: IndexedEntry, indexes: Sequence[bytes]) -> SubjectRows:
        return SubjectRows(entry, tuple(indexes))

    def write(self, conn: Connection, riders: Sequence[Rider]) -> None:
        rows: list[tuple[IndexedEntry, Sequence[bytes]]] = []
        for index, rider in riders:
            if not isinstance(rider, SubjectRows):
                raise StorageFailure(f"{_WHAT}: a ledger rider that is not subject rows")
            rows.append((replace(rider.entry, entry_index=index), rider.indexes))
        conn.execute(_RIDERS, _params(rows))

    def conflict(self, exc: BaseException) -> str | None:
        if isinstance(exc, psycopg.errors.UniqueViolation) and exc.diag.constraint_name in _KEYS:
            return (
                "the request id is indexed already (another exchange used it); "
                "send the request again with a new request id"
            )
        return None

    # -- on its own ---------------------------------------------------------------

    def record(self, entry: IndexedEntry, indexes: Sequence[bytes]) -> None:
        self.record_many([(entry, indexes)])

    def record_many(self, rows: Sequence[tuple[IndexedEntry, Sequence[bytes]]]) -> None:
        if not rows:
            return
        links = self._links.snapshot()
        with self._db.connection(_WHAT) as conn:  # one statement: one transaction
            conn.execute(_WRITE, (list(links), list(links.values()), *_params(rows)))
        self._links.written(links)

    def link(self, request_id: str, entry_index: int) -> None:
        self._links.add(request_id, entry_index)

    def _rows(self, sql: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        with self._db.connection(_WHAT) as conn:
            return conn.execute(sql, params).fetchall()

    def close(self) -> None:
        """Writes the links not yet written; the database is closed by its owner."""
        links = self._links.snapshot()
        if not links:
            return
        try:
            with self._db.transaction(_WHAT) as conn:
                conn.execute(_WRITE, (list(links), list(links.values()), *_params([])))
            self._links.written(links)
        except StorageFailure:
            pass  # only a cache: the rows are found through the ledger instead
