"""The ledger's storage on PostgreSQL, shared by every replica of one gateway.

Owns: the ``LedgerStore`` Protocol on PostgreSQL: one linear order across
replicas. ``exclusive()`` opens a transaction and takes a transaction-scoped
advisory lock (one per schema), then reads the stored head and the leaf hashes
appended since the caller's size; the ``Ledger`` catches its in-memory tail up
with them if another replica appended,
builds its whole group commit and appends it in that same transaction, which
commits (durably: ``synchronous_commit`` on) before any caller is answered.
The lock is released by the commit, so a replica that dies mid-batch leaves
nothing behind; one whose machine dies or whose process freezes holding it
blocks the others at most ``Limits.storage_idle_transaction_seconds``, after
which the server ends its idle transaction (``PgDatabase.sync`` makes the
session count as idle, not busy, while the batch is built). Unique indexes on entry index and checkpoint
size make a fork impossible even for a writer that skipped the lock.

Riders (``gateway.ledger.storage``): a ``RiderWriter`` given at construction
(the subject-access index store, same database) writes an entry's rider rows
in the append's transaction, with the entry's index; a conflict it reports
(its key already stored) is ``RiderConflict``.

Does not own: hashing, encoding or signing (``gateway.ledger.ledger`` computes
every hash with the ledger's own code; nothing here hashes), verification.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from gateway.errors import StorageFailure
from gateway.ledger.storage import (
    INSERT_CHECKPOINT_SQL,
    NODE_SHIFT,
    REPLACE_NOTE_SQL,
    SET_META_SQL,
    SIZE_SQL,
    EntryRow,
    Head,
    Rider,
    RiderConflict,
    SizeConflict,
    SqlLedgerReads,
    in_dialect,
    node_key,
)
from gateway.storage.postgres.db import Connection, PgDatabase

# At most this many leaf hashes come back with the lock (a replica that fell
# further behind reloads its tail from the stored nodes instead).
CATCH_UP_ROWS = 4096

_HEAD = (
    "SELECT (SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_entries),"
    " (SELECT COALESCE(MAX(seq), -1) FROM ledger_checkpoints)"
)


class RiderWriter(Protocol):
    def write(self, conn: Connection, riders: Sequence[Rider]) -> None:
        """Queue the riders' rows on ``conn``, inside the append's transaction."""
        ...

    def conflict(self, exc: BaseException) -> str | None:
        """If a failed commit failed on a rider's rows (their key taken), not
        on the ledger's own: what that means to the caller (never a value)."""
        ...


class PgLedgerStore(SqlLedgerReads):
    """``LedgerStore`` on a shared PostgreSQL database (the reads it shares with
    SQLite are ``SqlLedgerReads``'s, in psycopg's ``%s`` placeholder style)."""

    PLACEHOLDER = "%s"

    def __init__(self, db: PgDatabase, riders: RiderWriter | None = None) -> None:
        self._db = db
        self._riders = riders
        self._lock_key = db.lock_key("ledger-append")
        self._local = threading.local()

    # -- writes ------------------------------------------------------------

    @contextmanager
    def _rider_conflicts(self) -> Iterator[None]:
        try:
            yield
        except StorageFailure as exc:
            cause = exc.__cause__
            meaning = None
            if self._riders is not None and cause is not None:
                meaning = self._riders.conflict(cause)
            if meaning is not None:
                raise RiderConflict(f"ledger append refused: {meaning}") from cause
            raise

    @contextmanager
    def exclusive(self, since: int) -> Iterator[Head | None]:
        if getattr(self._local, "conn", None) is not None:
            yield None  # inner block: joins the outer transaction
            return
        with self._rider_conflicts():
            yield from self._exclusive(since)

    def _exclusive(self, since: int) -> Iterator[Head | None]:
        # Pipelined: BEGIN goes with the lock query, the group's insert with COMMIT.
        with self._db.transaction("ledger append", pipelined=True) as conn:
            # Lock, then the head as committed after the lock was granted, with
            # the leaf hashes other replicas appended since ``since`` (schema:
            # ledger_lock_tail): one round trip, and no reads under the lock.
            cur = conn.execute(
                "SELECT * FROM ledger_lock_tail(%s, %s, %s)",
                (self._lock_key, since, CATCH_UP_ROWS),
            )
            # Wait for the lock with a Sync (no extra round trip): while this
            # replica builds the batch the server then sees the session idle in
            # its transaction, and ends it (freeing the lock for the other
            # replicas) if this replica dies or freezes before committing.
            self._db.sync()
            row = cur.fetchone()
            assert row is not None
            head = Head(
                int(row[0]),
                int(row[1]),
                None if row[2] is None else tuple(bytes(h) for h in row[2]),
                int(row[3]),
            )
            self._local.conn, self._local.size, self._local.failed = conn, head.size, None
            try:
                yield head
                failed: BaseException | None = self._local.failed
                if failed is not None:  # roll everything back, fail the whole block
                    raise StorageFailure(
                        "ledger append failed; nothing of this batch was stored"
                    ) from (failed.__cause__ or failed)
            finally:
                self._local.conn = None

    def append(
        self,
        expected_size: int,
        entries: Sequence[EntryRow],
        nodes: Sequence[tuple[int, int, bytes]],
        checkpoints: Sequence[tuple[int, str, int]],
        riders: Sequence[Rider] = (),
    ) -> None:
        if riders and self._riders is None:
            raise StorageFailure("ledger append: this store was given no rider writer")
        joined: Connection | None = getattr(self._local, "conn", None)
        if joined is not None:
            try:
                if expected_size != self._local.size:
                    raise SizeConflict(
                        f"ledger size changed: {expected_size} -> {self._local.size}"
                    )
                with self._db.errors("ledger append"):
                    self._write(joined, entries, nodes, checkpoints, riders)
            except BaseException as exc:
                self._local.failed = exc
                raise
            self._local.size += len(entries)
            return
        with self._rider_conflicts(), self._db.transaction("ledger append") as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
            row = conn.execute(SIZE_SQL).fetchone()
            size = int(row[0]) if row else 0
            if size != expected_size:
                raise SizeConflict(f"ledger size changed: {expected_size} -> {size}")
            self._write(conn, entries, nodes, checkpoints, riders)

    def _write(
        self,
        conn: Connection,
        entries: Sequence[EntryRow],
        nodes: Sequence[tuple[int, int, bytes]],
        checkpoints: Sequence[tuple[int, str, int]],
        riders: Sequence[Rider],
    ) -> None:
        # Entries and nodes in one statement (arrays unnested server-side).
        if entries or nodes:
            conn.execute(
                "WITH e AS (INSERT INTO ledger_entries"
                " (idx, entry, entry_hash, request_id, timestamp_ms)"
                " SELECT * FROM unnest(%s::bigint[], %s::bytea[], %s::bytea[], %s::text[],"
                " %s::bigint[]))"
                " INSERT INTO ledger_nodes (id, hash) SELECT * FROM unnest(%s::bigint[], %s::bytea[])",
                (
                    [e.index for e in entries],
                    [e.entry for e in entries],
                    [e.entry_hash for e in entries],
                    [e.request_id for e in entries],
                    [e.timestamp_ms for e in entries],
                    [node_key(lv, ix) for lv, ix, _ in nodes],
                    [h for _, _, h in nodes],
                ),
            )
        for size_cp, note, issued_ms in checkpoints:
            conn.execute(in_dialect(INSERT_CHECKPOINT_SQL, "%s"), (size_cp, note, issued_ms))
        if riders:
            assert self._riders is not None
            self._riders.write(conn, riders)

    def replace_checkpoint_note(self, seq: int, note: str) -> None:
        with self._db.connection("ledger write") as conn:
            conn.execute(in_dialect(REPLACE_NOTE_SQL, "%s"), (note, seq))

    def set_meta(self, key: str, value: str) -> None:
        with self._db.connection("ledger write") as conn:
            conn.execute(in_dialect(SET_META_SQL, "%s"), (key, value))

    # -- reads -------------------------------------------------------------

    def _all(self, query: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._db.connection("ledger read") as conn:
            return conn.execute(query, params).fetchall()

    def head(self) -> Head:
        row = self._all(_HEAD)[0]
        return Head(int(row[0]), int(row[1]))

    def nodes(self, ids: Sequence[tuple[int, int]]) -> list[bytes]:
        leaves = [ix for lv, ix in ids if lv == 0]
        inner = [node_key(lv, ix) for lv, ix in ids if lv != 0]
        found: dict[tuple[int, int], bytes] = {}
        mask = (1 << NODE_SHIFT) - 1
        rows = self._all(
            "SELECT 0, idx, entry_hash FROM ledger_entries WHERE idx = ANY(%s)"
            " UNION ALL SELECT 1, id, hash FROM ledger_nodes WHERE id = ANY(%s)",
            (leaves, inner),
        )
        for inner_node, key, h in rows:
            k = int(key)
            found[(k >> NODE_SHIFT, k & mask) if inner_node else (0, k)] = bytes(h)
        out: list[bytes] = []
        for level, index in ids:
            h = found.get((level, index))
            if h is None:
                raise StorageFailure(f"ledger node ({level}, {index}) missing")
            out.append(h)
        return out

    def close(self) -> None:
        """The database is closed by its owner (``PgDatabase.close``)."""
