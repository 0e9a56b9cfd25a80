"""Ledger storage: a small Protocol and its SQLite implementation.

Owns: the tables (entries, interior Merkle nodes, signed checkpoints, witness
cosignatures, metadata), atomic batched appends with an optimistic size check,
and O(log n) node reads. Does not own: hashing, encoding, signing or
verification (``gateway.ledger.ledger`` and ``gateway.ledger.verify``).

Other backends: ``gateway.storage.postgres.ledger`` implements the same
Protocol on PostgreSQL, shared by several replicas (``exclusive()`` there is a
cross-replica lock). Both run the same read queries (``SqlLedgerReads``) and
the same small write statements, written once with ``?`` placeholders and
rewritten for psycopg's ``%s`` (``in_dialect``). The optimistic ``expected_size`` check inside the write
transaction is what keeps concurrent writers from forking the log: a writer
that lost the race gets ``SizeConflict`` and reloads the tail.

Riders: rows that belong to one entry and live in another table of the same
database (PostgreSQL's subject-access index), handed to ``append`` with the
entry's index and written in the entry's own transaction: both are stored, or
neither. A store that cannot write them in one transaction (SQLite: separate
files) is never given any (``gateway.subject.indexer`` writes rows first there).

Node ids: interior node (level, index), level >= 1, is stored under the single
integer key ``level << 56 | index`` (portable BIGINT, one B-tree, fast bulk
inserts). Level 0 nodes are the entries' own hashes.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from gateway.errors import NotFound, StorageFailure

NODE_SHIFT = 56


def node_key(level: int, index: int) -> int:
    return (level << NODE_SHIFT) | index


@dataclass(frozen=True)
class EntryRow:
    index: int
    entry: bytes
    entry_hash: bytes
    request_id: str
    timestamp_ms: int


@dataclass(frozen=True)
class CheckpointRow:
    seq: int  # issue order, from 0
    size: int
    note: str  # full signed note (log signature, plus cosignatures merged in)
    issued_ms: int


@dataclass(frozen=True)
class Head:
    """The stored tail a writer must build on: entry count and newest checkpoint
    seq (-1: none). A shared store may add what others appended since the
    writer's own size (``exclusive(since)``): their leaf hashes in index order
    and the newest entry's time, so the writer catches up without reading
    nodes back (``tail`` None: not sent, reload)."""

    size: int
    checkpoint_seq: int
    tail: tuple[bytes, ...] | None = None
    last_ms: int = 0


class SizeConflict(StorageFailure):
    """Another writer appended first; reload the tail and retry."""


class RiderConflict(StorageFailure):
    """A rider's rows conflict with rows already stored (their key is taken):
    nothing of the transaction was stored. The ledger commits the other
    entries of the batch without the one that brought it."""


# An entry's rider: its ledger index and the rows, opaque to the ledger.
Rider = tuple[int, object]


class LedgerStore(Protocol):
    def size(self) -> int: ...

    def exclusive(self, since: int) -> AbstractContextManager[Head | None]:
        """Hold the log's write lock across all writers (threads, processes,
        replicas) until the block ends; ``append`` calls inside it join the
        same transaction, committed when the block ends (a failed append
        inside it makes the whole block fail). Re-entrant on one thread: an
        inner block joins the outer one. Yields the stored head (with the
        entries after ``since``, the caller's own size, when the store can
        send them), or None when the caller's in-memory tail is known to be
        current (the only writer, or an inner block)."""
        ...

    def append(
        self,
        expected_size: int,
        entries: Sequence[EntryRow],
        nodes: Sequence[tuple[int, int, bytes]],
        checkpoints: Sequence[tuple[int, str, int]],
        riders: Sequence[Rider] = (),
    ) -> None:
        """Atomically add entries, nodes, (size, note, issued_ms) checkpoints and
        the entries' riders (only a store that writes riders is given any);
        raise SizeConflict if the stored size is not expected_size."""
        ...

    def nodes(self, ids: Sequence[tuple[int, int]]) -> list[bytes]: ...

    def nodes_range(self, level: int, start: int, stop: int) -> list[bytes]: ...

    def entries(self, start: int, stop: int) -> list[EntryRow]: ...

    def entry_range(self, start: int, stop: int) -> list[bytes]: ...

    def raw_range(self, start: int, stop: int) -> list[tuple[int, bytes, bytes]]: ...

    def iter_entries(self, batch: int = 10_000) -> Iterator[EntryRow]: ...

    def find_request(self, request_id: str) -> list[EntryRow]: ...

    def find_requests(self, request_ids: Sequence[str]) -> list[EntryRow]: ...

    def entries_between(self, since_ms: int, until_ms: int, limit: int) -> list[EntryRow]: ...

    def checkpoints(self) -> list[CheckpointRow]: ...

    def latest_checkpoint(self) -> CheckpointRow | None: ...

    def checkpoint_covering(self, size: int) -> CheckpointRow | None: ...

    def replace_checkpoint_note(self, seq: int, note: str) -> None: ...

    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...

    def close(self) -> None: ...


_DDL = (
    """CREATE TABLE IF NOT EXISTS ledger_meta (
        k TEXT PRIMARY KEY, v TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS ledger_entries (
        idx INTEGER PRIMARY KEY,
        entry BLOB NOT NULL,
        entry_hash BLOB NOT NULL,
        request_id TEXT NOT NULL,
        timestamp_ms INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS ledger_entries_request ON ledger_entries (request_id)",
    """CREATE TABLE IF NOT EXISTS ledger_nodes (
        id INTEGER PRIMARY KEY, hash BLOB NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS ledger_checkpoints (
        seq INTEGER PRIMARY KEY,
        size INTEGER NOT NULL,
        note TEXT NOT NULL,
        issued_ms INTEGER NOT NULL)""",
)

_ENTRY_COLS = "idx, entry, entry_hash, request_id, timestamp_ms"
FIND_PAGE = 500  # request ids per query (SQLite allows 32,766 parameters)
_CP_COLS = "seq, size, note, issued_ms"

# Statements both SQL backends run, written with ``?`` placeholders
# (``in_dialect`` rewrites them for drivers that use ``%s``).
SIZE_SQL = "SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_entries"
INSERT_CHECKPOINT_SQL = (
    "INSERT INTO ledger_checkpoints (seq, size, note, issued_ms) VALUES "
    "((SELECT COALESCE(MAX(seq) + 1, 0) FROM ledger_checkpoints), ?, ?, ?)"
)
REPLACE_NOTE_SQL = "UPDATE ledger_checkpoints SET note = ? WHERE seq = ?"
SET_META_SQL = (
    "INSERT INTO ledger_meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v"
)


@functools.cache
def in_dialect(sql: str, placeholder: str) -> str:
    """``sql`` with each ``?`` placeholder written as ``placeholder`` (none of
    these statements has a ``?`` or ``%`` anywhere else)."""
    return sql if placeholder == "?" else sql.replace("?", placeholder)


def _row(r: Sequence[Any]) -> EntryRow:
    return EntryRow(int(r[0]), bytes(r[1]), bytes(r[2]), str(r[3]), int(r[4]))


def _cp(r: Sequence[Any]) -> CheckpointRow:
    return CheckpointRow(int(r[0]), int(r[1]), str(r[2]), int(r[3]))


class SqlLedgerReads:
    """The ``LedgerStore`` reads every SQL backend shares: one set of queries over
    the same tables, whatever the driver's placeholder style (``PLACEHOLDER``).

    A backend supplies ``_all`` (run one query, return every row, raising
    ``StorageFailure`` on a database error) and its writes.
    """

    PLACEHOLDER: ClassVar[str] = "?"
    # The driver already returns BLOBs as ``bytes`` and integers as ``int``
    # (sqlite3 does): the verifier's page reads then skip a copy per row.
    TYPED_ROWS: ClassVar[bool] = False

    def _all(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _read(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        return self._all(in_dialect(sql, self.PLACEHOLDER), params)

    def size(self) -> int:
        return int(self._read(SIZE_SQL)[0][0])

    def nodes_range(self, level: int, start: int, stop: int) -> list[bytes]:
        rows = self._read(
            "SELECT hash FROM ledger_nodes WHERE id >= ? AND id < ? ORDER BY id",
            (node_key(level, start), node_key(level, stop)),
        )
        return [bytes(r[0]) for r in rows]

    def entries(self, start: int, stop: int) -> list[EntryRow]:
        rows = self._read(
            f"SELECT {_ENTRY_COLS} FROM ledger_entries WHERE idx >= ? AND idx < ? ORDER BY idx",
            (start, stop),
        )
        return [_row(r) for r in rows]

    def iter_entries(self, batch: int = 10_000) -> Iterator[EntryRow]:
        """Every stored row in index order, in pages (gaps are visible to the caller)."""
        for rows in self._pages(_ENTRY_COLS, batch):
            yield from (_row(r) for r in rows)

    def _pages(self, cols: str, batch: int) -> Iterator[list[tuple[Any, ...]]]:
        last = -1
        while True:
            rows = self._read(
                f"SELECT {cols} FROM ledger_entries WHERE idx > ? ORDER BY idx LIMIT ?",
                (last, batch),
            )
            if not rows:
                return
            yield rows
            last = int(rows[-1][0])

    def entry_range(self, start: int, stop: int) -> list[bytes]:
        """Entry bytes with start <= index < stop, in order (each entry's header
        carries its own index, so the verifier needs nothing else)."""
        rows = self._read(
            "SELECT entry FROM ledger_entries WHERE idx >= ? AND idx < ? ORDER BY idx",
            (start, stop),
        )
        return [r[0] for r in rows] if self.TYPED_ROWS else [bytes(r[0]) for r in rows]

    def raw_range(self, start: int, stop: int) -> list[tuple[int, bytes, bytes]]:
        """(index, entry, entry_hash) rows with start <= index < stop, in order."""
        rows = self._read(
            "SELECT idx, entry, entry_hash FROM ledger_entries WHERE idx >= ? AND idx < ? "
            "ORDER BY idx",
            (start, stop),
        )
        if self.TYPED_ROWS:
            return rows
        return [(int(a), bytes(b), bytes(c)) for a, b, c in rows]

    def find_request(self, request_id: str) -> list[EntryRow]:
        rows = self._read(
            f"SELECT {_ENTRY_COLS} FROM ledger_entries WHERE request_id = ? ORDER BY idx",
            (request_id,),
        )
        return [_row(r) for r in rows]

    def find_requests(self, request_ids: Sequence[str]) -> list[EntryRow]:
        """The entries of several exchanges, in index order: one query a page of ids."""
        ids = sorted(set(request_ids))
        out: list[EntryRow] = []
        for start in range(0, len(ids), FIND_PAGE):
            page = ids[start : start + FIND_PAGE]
            out += [
                _row(r)
                for r in self._read(
                    f"SELECT {_ENTRY_COLS} FROM ledger_entries WHERE request_id IN "
                    f"({', '.join('?' * len(page))})",
                    tuple(page),
                )
            ]
        return sorted(out, key=lambda e: e.index)

    def entries_between(self, since_ms: int, until_ms: int, limit: int) -> list[EntryRow]:
        rows = self._read(
            f"SELECT {_ENTRY_COLS} FROM ledger_entries WHERE timestamp_ms >= ? AND "
            "timestamp_ms < ? ORDER BY idx LIMIT ?",
            (since_ms, until_ms, limit),
        )
        return [_row(r) for r in rows]

    def checkpoints(self) -> list[CheckpointRow]:
        return [
            _cp(r) for r in self._read(f"SELECT {_CP_COLS} FROM ledger_checkpoints ORDER BY seq")
        ]

    def latest_checkpoint(self) -> CheckpointRow | None:
        rows = self._read(f"SELECT {_CP_COLS} FROM ledger_checkpoints ORDER BY seq DESC LIMIT 1")
        return _cp(rows[0]) if rows else None

    def checkpoint_covering(self, size: int) -> CheckpointRow | None:
        """The earliest checkpoint whose tree has at least ``size`` entries."""
        rows = self._read(
            f"SELECT {_CP_COLS} FROM ledger_checkpoints WHERE size >= ? ORDER BY seq LIMIT 1",
            (size,),
        )
        return _cp(rows[0]) if rows else None

    def get_meta(self, key: str) -> str | None:
        rows = self._read("SELECT v FROM ledger_meta WHERE k = ?", (key,))
        return str(rows[0][0]) if rows else None


class SqliteLedgerStore(SqlLedgerReads):
    """One SQLite file (WAL, synchronous=FULL: durable when ``append`` returns)."""

    TYPED_ROWS = True

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            if readonly:
                if not self.path.exists():
                    raise NotFound(f"ledger file not found: {self.path}")
                uri = f"file:{self.path.resolve()}?mode=ro"
                self._db = sqlite3.connect(
                    uri, uri=True, check_same_thread=False, isolation_level=None
                )
            else:
                self._db = sqlite3.connect(
                    str(self.path), check_same_thread=False, isolation_level=None, timeout=30
                )
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                for stmt in _DDL:
                    self._db.execute(stmt)
            self._db.execute("SELECT count(*) FROM ledger_entries").fetchone()
        except sqlite3.Error as exc:
            raise StorageFailure(f"cannot open ledger {self.path}: {exc}") from exc

    # -- writes ------------------------------------------------------------

    @contextmanager
    def exclusive(self, since: int) -> Iterator[Head | None]:
        # One process owns a SQLite ledger; another process appending anyway is
        # caught by the size check in ``append`` (SizeConflict).
        with self._lock:
            yield None

    def append(
        self,
        expected_size: int,
        entries: Sequence[EntryRow],
        nodes: Sequence[tuple[int, int, bytes]],
        checkpoints: Sequence[tuple[int, str, int]],
        riders: Sequence[Rider] = (),
    ) -> None:
        if riders:  # a wiring error: the SQLite index store writes its own rows
            raise StorageFailure("the SQLite ledger store writes no riders")
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    (size,) = db.execute(SIZE_SQL).fetchone()
                    if size != expected_size:
                        raise SizeConflict(f"ledger size changed: {expected_size} -> {size}")
                    db.executemany(
                        "INSERT INTO ledger_entries (idx, entry, entry_hash, request_id, "
                        "timestamp_ms) VALUES (?, ?, ?, ?, ?)",
                        [
                            (e.index, e.entry, e.entry_hash, e.request_id, e.timestamp_ms)
                            for e in entries
                        ],
                    )
                    db.executemany(
                        "INSERT INTO ledger_nodes (id, hash) VALUES (?, ?)",
                        [(node_key(lv, ix), h) for lv, ix, h in nodes],
                    )
                    for size_cp, note, issued_ms in checkpoints:
                        db.execute(INSERT_CHECKPOINT_SQL, (size_cp, note, issued_ms))
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StorageFailure(f"ledger append failed: {exc}") from exc

    def replace_checkpoint_note(self, seq: int, note: str) -> None:
        self._write(REPLACE_NOTE_SQL, (note, seq))

    def set_meta(self, key: str, value: str) -> None:
        self._write(SET_META_SQL, (key, value))

    def _write(self, sql: str, params: tuple[object, ...]) -> None:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.execute(sql, params)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StorageFailure(f"ledger write failed: {exc}") from exc

    # -- reads -------------------------------------------------------------

    def _all(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StorageFailure(f"ledger read failed: {exc}") from exc

    def nodes(self, ids: Sequence[tuple[int, int]]) -> list[bytes]:
        out: list[bytes] = []
        with self._lock:
            try:
                for level, index in ids:
                    if level == 0:
                        row = self._db.execute(
                            "SELECT entry_hash FROM ledger_entries WHERE idx = ?", (index,)
                        ).fetchone()
                    else:
                        row = self._db.execute(
                            "SELECT hash FROM ledger_nodes WHERE id = ?", (node_key(level, index),)
                        ).fetchone()
                    if row is None:
                        raise StorageFailure(f"ledger node ({level}, {index}) missing")
                    out.append(bytes(row[0]))
            except sqlite3.Error as exc:
                raise StorageFailure(f"ledger read failed: {exc}") from exc
        return out

    def iter_raw(self, batch: int = 50_000) -> Iterator[list[tuple[int, bytes, bytes]]]:
        """Pages of (index, entry, entry_hash) for the fast verifier."""
        yield from self._pages("idx, entry, entry_hash", batch)

    def reopener(self) -> Callable[[], SqliteLedgerStore]:
        """A picklable way for another process to open this file read-only."""
        return functools.partial(SqliteLedgerStore, self.path, readonly=True)

    def close(self) -> None:
        with self._lock:
            self._db.close()
