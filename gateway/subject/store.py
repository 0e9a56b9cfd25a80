"""The holder's blind-index store: a small Protocol and its SQLite implementation.

Owns: the rows linking each blind index to the exchanges that named it, one
row per indexed entry (request id, coverage, dataset, released fields, and the
ledger index once the entry is appended), and the queries subject access
needs: the entries naming one index, the entries covering whole datasets
(bulk transfers, statistics), the full index set of one entry (to prove
membership), and every row (for the officer's audit).

Does not own: computing indexes or commitments (``gateway.subject.index``),
the order of writes around a ledger append (``gateway.subject.indexer``).

Holds no personal data: blind indexes are MACs under a key that is not
stored here. The PostgreSQL implementation, shared by replicas, is
``gateway.storage.postgres.subject.PgSubjectIndexStore``; both are opened by
``gateway.storage.backend.open_stores``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from gateway.errors import StorageFailure
from gateway.groupcommit import GroupCommit
from gateway.ledger.storage import in_dialect
from gateway.sqlitedb import open_store
from gateway.subject.index import COVERAGES, Coverage


@dataclass(frozen=True)
class IndexedEntry:
    """One ledger entry the store knows the subjects of."""

    request_id: str
    coverage: Coverage
    dataset: str
    fields: tuple[tuple[str, str], ...]  # released (field, transform), in order
    recorded_ms: int
    entry_index: int | None = None  # None until linked (or if the append failed)


@dataclass(frozen=True)
class SubjectRows:
    """An entry row and its blind indexes, as a ledger rider: written by the
    ledger append in the entry's own transaction, with its index."""

    entry: IndexedEntry
    indexes: tuple[bytes, ...]


class SubjectIndexStore(Protocol):
    def rider(self, entry: IndexedEntry, indexes: Sequence[bytes]) -> SubjectRows | None:
        """The rows as a rider for the ledger append, if this store lives in the
        ledger's database (they are then written with the entry, atomically and
        linked); None: ``record`` them before the append, ``link`` them after."""
        ...

    def record(self, entry: IndexedEntry, indexes: Sequence[bytes]) -> None:
        """Atomically store the entry row and its blind indexes (before the ledger append)."""
        ...

    def record_many(self, rows: Sequence[tuple[IndexedEntry, Sequence[bytes]]]) -> None:
        """``record`` for many entries in one transaction (bulk loading)."""
        ...

    def link(self, request_id: str, entry_index: int) -> None:
        """Remember the ledger index of an entry once it is appended."""
        ...

    def named(self, blind: bytes, limit: int) -> list[IndexedEntry]:
        """Entries whose index set contains ``blind``, newest first, at most ``limit``."""
        ...

    def covering(self, limit: int) -> list[IndexedEntry]:
        """Entries covering a whole dataset (bulk, statistics), newest first."""
        ...

    def indexes_of(self, request_id: str) -> list[bytes]:
        """The blind indexes stored for one entry."""
        ...

    def all_entries(self) -> Iterator[IndexedEntry]:
        """Every entry row, in request-id order."""
        ...

    def close(self) -> None: ...


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS subject_entries (
        request_id TEXT PRIMARY KEY,
        coverage TEXT NOT NULL,
        dataset TEXT NOT NULL,
        fields TEXT NOT NULL,
        recorded_ms INTEGER NOT NULL,
        entry_index INTEGER)""",
    """CREATE INDEX IF NOT EXISTS subject_entries_coverage
        ON subject_entries (coverage, recorded_ms)""",
    """CREATE TABLE IF NOT EXISTS subject_index (
        blind BLOB NOT NULL,
        request_id TEXT NOT NULL,
        PRIMARY KEY (blind, request_id))""",
    "CREATE INDEX IF NOT EXISTS subject_index_request ON subject_index (request_id)",
)
_COLS = "e.request_id, e.coverage, e.dataset, e.fields, e.recorded_ms, e.entry_index"


def fields_text(fields: Sequence[tuple[str, str]]) -> str:
    """The released (field, transform) pairs as stored: one ``name:transform`` a line."""
    return "\n".join(f"{n}:{t}" for n, t in fields)


def entry_from_row(r: Sequence[Any]) -> IndexedEntry:
    """An ``IndexedEntry`` from a (request_id, coverage, dataset, fields, recorded_ms,
    entry_index) row (shared with the PostgreSQL store)."""
    request_id, coverage, dataset, fields, recorded_ms, entry_index = r
    if coverage not in COVERAGES:
        raise StorageFailure(f"subject index store: unknown coverage {str(coverage)[:20]!r}")
    pairs = tuple(
        (name, transform)
        for name, _, transform in (f.partition(":") for f in str(fields).split("\n") if f)
    )
    return IndexedEntry(
        request_id=str(request_id),
        coverage=coverage,
        dataset=str(dataset),
        fields=pairs,
        recorded_ms=int(recorded_ms),
        entry_index=None if entry_index is None else int(entry_index),
    )


class SqlSubjectReads:
    """The queries subject access needs, shared by the SQLite and PostgreSQL
    stores: written with ``?`` placeholders, run through ``_rows`` in the
    store's own style (``PLACEHOLDER``), with the store's pending links shown."""

    PLACEHOLDER = "?"
    # Request-id order by bytes on every backend (PostgreSQL's default follows the
    # database's locale; SQLite's is bytes already), so paging never depends on it.
    BYTE_ORDER = ""
    PAGE = 1000

    _links: PendingLinks

    def _rows(self, sql: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _entries(self, sql: str, params: tuple[object, ...]) -> list[IndexedEntry]:
        rows = self._rows(in_dialect(sql, self.PLACEHOLDER), params)
        return self._links.overlay([entry_from_row(r) for r in rows])

    def named(self, blind: bytes, limit: int) -> list[IndexedEntry]:
        return self._entries(
            f"SELECT {_COLS} FROM subject_index i JOIN subject_entries e"
            " ON e.request_id = i.request_id WHERE i.blind = ?"
            " ORDER BY e.recorded_ms DESC, e.request_id LIMIT ?",
            (blind, limit),
        )

    def covering(self, limit: int) -> list[IndexedEntry]:
        return self._entries(
            f"SELECT {_COLS} FROM subject_entries e WHERE e.coverage IN (?, ?, ?)"
            " ORDER BY e.recorded_ms DESC, e.request_id LIMIT ?",
            ("dataset", "pseudonymised", "statistics", limit),
        )

    def indexes_of(self, request_id: str) -> list[bytes]:
        rows = self._rows(
            in_dialect("SELECT blind FROM subject_index WHERE request_id = ?", self.PLACEHOLDER),
            (request_id,),
        )
        return [bytes(r[0]) for r in rows]

    def all_entries(self) -> Iterator[IndexedEntry]:
        last = ""
        while True:
            rows = self._entries(
                f"SELECT {_COLS} FROM subject_entries e WHERE e.request_id > ?{self.BYTE_ORDER}"
                f" ORDER BY e.request_id{self.BYTE_ORDER} LIMIT ?",
                (last, self.PAGE),
            )
            if not rows:
                return
            yield from rows
            last = rows[-1].request_id


class PendingLinks:
    """Links (request id -> ledger index) not yet written. A link only caches
    where an entry landed (an unlinked row is found through the ledger's
    request-id index), so stores write links with their next transaction
    instead of paying one of their own, and show them to readers at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # never waits for a write in progress
        self._links: dict[str, int] = {}

    def add(self, request_id: str, entry_index: int) -> None:
        with self._lock:
            self._links[request_id] = entry_index

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._links)

    def written(self, links: dict[str, int]) -> None:
        with self._lock:
            for rid, index in links.items():
                if self._links.get(rid) == index:
                    del self._links[rid]

    def overlay(self, rows: list[IndexedEntry]) -> list[IndexedEntry]:
        with self._lock:
            found = {e.request_id: self._links.get(e.request_id) for e in rows}
        return [
            replace(e, entry_index=found[e.request_id])
            if e.entry_index is None and found[e.request_id] is not None
            else e
            for e in rows
        ]


class SqliteSubjectIndexStore(SqlSubjectReads):
    """``SubjectIndexStore`` in one SQLite file (``data/subject_index.sqlite``).

    Concurrent ``record`` calls are group-committed (one transaction and one
    fsync for all waiting exchanges). ``link`` is a cache of where an entry
    landed, not part of what is proven: links are kept in memory, written with
    the next transaction (or at close) and shown to readers at once; a link
    lost in a crash leaves the row found through the ledger's request-id
    index, as for a failed link."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = open_store(path, what="subject index store", synchronous="FULL", schema=_SCHEMA)
        self._lock = threading.Lock()
        self._links = PendingLinks()
        self._group: GroupCommit[tuple[IndexedEntry, Sequence[bytes]]] = GroupCommit(self._tx)

    def _tx(self, rows: Sequence[tuple[IndexedEntry, Sequence[bytes]]]) -> None:
        with self._lock:
            links = self._links.snapshot()
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany(
                        "INSERT INTO subject_entries (request_id, coverage, dataset, fields, "
                        "recorded_ms, entry_index) VALUES (?, ?, ?, ?, ?, ?)",
                        [
                            (
                                e.request_id,
                                e.coverage,
                                e.dataset,
                                fields_text(e.fields),
                                e.recorded_ms,
                                e.entry_index,
                            )
                            for e, _ in rows
                        ],
                    )
                    self._db.executemany(
                        "INSERT INTO subject_index (blind, request_id) VALUES (?, ?)",
                        [(b, e.request_id) for e, idx in rows for b in set(idx)],
                    )
                    self._write_links(links)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StorageFailure(f"subject index store: write failed: {exc}") from exc
            self._links.written(links)

    def _write_links(self, links: dict[str, int]) -> None:
        self._db.executemany(
            "UPDATE subject_entries SET entry_index = ? WHERE request_id = ?",
            [(index, rid) for rid, index in links.items()],
        )

    def rider(self, entry: IndexedEntry, indexes: Sequence[bytes]) -> None:
        return None  # another file than the ledger's: recorded before the append

    def record(self, entry: IndexedEntry, indexes: Sequence[bytes]) -> None:
        self._group.submit((entry, indexes))

    def record_many(self, rows: Sequence[tuple[IndexedEntry, Sequence[bytes]]]) -> None:
        self._tx(rows)

    def link(self, request_id: str, entry_index: int) -> None:
        self._links.add(request_id, entry_index)

    def _rows(self, sql: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StorageFailure(f"subject index store: read failed: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            try:
                links = self._links.snapshot()
                if links:
                    with self._db:
                        self._write_links(links)
                    self._links.written(links)
            except sqlite3.Error:
                pass  # only a cache: the rows are found through the ledger instead
            finally:
                self._db.close()
