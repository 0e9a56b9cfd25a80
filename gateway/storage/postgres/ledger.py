"""The ledger's storage on PostgreSQL, shared by every replica of one gateway.

Owns: the ``LedgerStore`` Protocol on PostgreSQL: one linear order across
replicas. ``exclusive()`` opens a transaction and takes a transaction-scoped
advisory lock (one per schema), then reads the stored head; the ``Ledger``
refreshes its in-memory tail from that head if another replica appended,
builds its whole group commit and appends it in that same transaction, which
commits (durably: ``synchronous_commit`` on) before any caller is answered.
The lock is released by the commit, so a replica that dies mid-batch leaves
nothing behind and blocks nobody. Unique indexes on entry index and checkpoint
size make a fork impossible even for a writer that skipped the lock.

Does not own: hashing, encoding or signing (``gateway.ledger.ledger`` computes
every hash with the ledger's own code; nothing here hashes), verification.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from gateway.errors import StorageFailure
from gateway.ledger.storage import (
    CheckpointRow,
    EntryRow,
    Head,
    SizeConflict,
    node_key,
)
from gateway.storage.postgres.db import Connection, PgDatabase

_ENTRY_COLS = "idx, entry, entry_hash, request_id, timestamp_ms"
_HEAD = (
    "SELECT (SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_entries),"
    " (SELECT COALESCE(MAX(seq), -1) FROM ledger_checkpoints)"
)


def _row(r: Sequence[Any]) -> EntryRow:
    return EntryRow(int(r[0]), bytes(r[1]), bytes(r[2]), str(r[3]), int(r[4]))


def _cp(r: Sequence[Any]) -> CheckpointRow:
    return CheckpointRow(int(r[0]), int(r[1]), str(r[2]), int(r[3]))


class PgLedgerStore:
    """``LedgerStore`` on a shared PostgreSQL database."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db
        self._lock_key = db.lock_key("ledger-append")
        self._local = threading.local()

    # -- writes ------------------------------------------------------------

    @contextmanager
    def exclusive(self) -> Iterator[Head | None]:
        if getattr(self._local, "conn", None) is not None:
            yield None  # inner block: joins the outer transaction
            return
        with self._db.transaction("ledger append") as conn:
            # Lock, then the head as committed after the lock was granted
            # (schema: ledger_lock_head).
            row = conn.execute("SELECT * FROM ledger_lock_head(%s)", (self._lock_key,)).fetchone()
            assert row is not None
            head = Head(int(row[0]), int(row[1]))
            self._local.conn, self._local.size, self._local.failed = conn, head.size, False
            try:
                yield head
                if self._local.failed:  # roll everything back, fail the whole block
                    raise StorageFailure("ledger append failed; nothing of this batch was stored")
            finally:
                self._local.conn = None

    def append(
        self,
        expected_size: int,
        entries: Sequence[EntryRow],
        nodes: Sequence[tuple[int, int, bytes]],
        checkpoints: Sequence[tuple[int, str, int]],
    ) -> None:
        joined: Connection | None = getattr(self._local, "conn", None)
        if joined is not None:
            try:
                if expected_size != self._local.size:
                    raise SizeConflict(
                        f"ledger size changed: {expected_size} -> {self._local.size}"
                    )
                with self._db.errors("ledger append"):
                    self._write(joined, entries, nodes, checkpoints)
            except BaseException:
                self._local.failed = True
                raise
            self._local.size += len(entries)
            return
        with self._db.transaction("ledger append") as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
            row = conn.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_entries").fetchone()
            size = int(row[0]) if row else 0
            if size != expected_size:
                raise SizeConflict(f"ledger size changed: {expected_size} -> {size}")
            self._write(conn, entries, nodes, checkpoints)

    def _write(
        self,
        conn: Connection,
        entries: Sequence[EntryRow],
        nodes: Sequence[tuple[int, int, bytes]],
        checkpoints: Sequence[tuple[int, str, int]],
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
            conn.execute(
                "INSERT INTO ledger_checkpoints (seq, size, note, issued_ms) VALUES "
                "((SELECT COALESCE(MAX(seq) + 1, 0) FROM ledger_checkpoints), %s, %s, %s)",
                (size_cp, note, issued_ms),
            )

    def replace_checkpoint_note(self, seq: int, note: str) -> None:
        with self._db.connection("ledger write") as conn:
            conn.execute("UPDATE ledger_checkpoints SET note = %s WHERE seq = %s", (note, seq))

    def set_meta(self, key: str, value: str) -> None:
        with self._db.connection("ledger write") as conn:
            conn.execute(
                "INSERT INTO ledger_meta (k, v) VALUES (%s, %s) "
                "ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
                (key, value),
            )

    # -- reads -------------------------------------------------------------

    def _all(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._db.connection("ledger read") as conn:
            return conn.execute(query, params).fetchall()

    def size(self) -> int:
        return int(self._all("SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_entries")[0][0])

    def head(self) -> Head:
        row = self._all(_HEAD)[0]
        return Head(int(row[0]), int(row[1]))

    def nodes(self, ids: Sequence[tuple[int, int]]) -> list[bytes]:
        leaves = [ix for lv, ix in ids if lv == 0]
        inner = [node_key(lv, ix) for lv, ix in ids if lv != 0]
        found: dict[tuple[int, int], bytes] = {}
        mask = (1 << 56) - 1
        rows = self._all(
            "SELECT 0, idx, entry_hash FROM ledger_entries WHERE idx = ANY(%s)"
            " UNION ALL SELECT 1, id, hash FROM ledger_nodes WHERE id = ANY(%s)",
            (leaves, inner),
        )
        for inner_node, key, h in rows:
            k = int(key)
            found[(k >> 56, k & mask) if inner_node else (0, k)] = bytes(h)
        out: list[bytes] = []
        for level, index in ids:
            h = found.get((level, index))
            if h is None:
                raise StorageFailure(f"ledger node ({level}, {index}) missing")
            out.append(h)
        return out

    def nodes_range(self, level: int, start: int, stop: int) -> list[bytes]:
        rows = self._all(
            "SELECT hash FROM ledger_nodes WHERE id >= %s AND id < %s ORDER BY id",
            (node_key(level, start), node_key(level, stop)),
        )
        return [bytes(r[0]) for r in rows]

    def entries(self, start: int, stop: int) -> list[EntryRow]:
        rows = self._all(
            f"SELECT {_ENTRY_COLS} FROM ledger_entries WHERE idx >= %s AND idx < %s ORDER BY idx",
            (start, stop),
        )
        return [_row(r) for r in rows]

    def iter_entries(self, batch: int = 10_000) -> Iterator[EntryRow]:
        last = -1
        while True:
            rows = self._all(
                f"SELECT {_ENTRY_COLS} FROM ledger_entries WHERE idx > %s ORDER BY idx LIMIT %s",
                (last, batch),
            )
            if not rows:
                return
            for r in rows:
                yield _row(r)
            last = int(rows[-1][0])

    def entry_range(self, start: int, stop: int) -> list[bytes]:
        rows = self._all(
            "SELECT entry FROM ledger_entries WHERE idx >= %s AND idx < %s ORDER BY idx",
            (start, stop),
        )
        return [bytes(r[0]) for r in rows]

    def raw_range(self, start: int, stop: int) -> list[tuple[int, bytes, bytes]]:
        rows = self._all(
            "SELECT idx, entry, entry_hash FROM ledger_entries WHERE idx >= %s AND idx < %s "
            "ORDER BY idx",
            (start, stop),
        )
        return [(int(a), bytes(b), bytes(c)) for a, b, c in rows]

    def find_request(self, request_id: str) -> list[EntryRow]:
        rows = self._all(
            f"SELECT {_ENTRY_COLS} FROM ledger_entries WHERE request_id = %s ORDER BY idx",
            (request_id,),
        )
        return [_row(r) for r in rows]

    def entries_between(self, since_ms: int, until_ms: int, limit: int) -> list[EntryRow]:
        rows = self._all(
            f"SELECT {_ENTRY_COLS} FROM ledger_entries WHERE timestamp_ms >= %s AND "
            "timestamp_ms < %s ORDER BY idx LIMIT %s",
            (since_ms, until_ms, limit),
        )
        return [_row(r) for r in rows]

    def checkpoints(self) -> list[CheckpointRow]:
        rows = self._all("SELECT seq, size, note, issued_ms FROM ledger_checkpoints ORDER BY seq")
        return [_cp(r) for r in rows]

    def latest_checkpoint(self) -> CheckpointRow | None:
        rows = self._all(
            "SELECT seq, size, note, issued_ms FROM ledger_checkpoints ORDER BY seq DESC LIMIT 1"
        )
        return _cp(rows[0]) if rows else None

    def checkpoint_covering(self, size: int) -> CheckpointRow | None:
        rows = self._all(
            "SELECT seq, size, note, issued_ms FROM ledger_checkpoints WHERE size >= %s "
            "ORDER BY seq LIMIT 1",
            (size,),
        )
        return _cp(rows[0]) if rows else None

    def get_meta(self, key: str) -> str | None:
        rows = self._all("SELECT v FROM ledger_meta WHERE k = %s", (key,))
        return str(rows[0][0]) if rows else None

    def close(self) -> None:
        """The database is closed by its owner (``PgDatabase.close``)."""
