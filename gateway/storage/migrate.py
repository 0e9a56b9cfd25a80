"""Moving a single-machine gateway's SQLite state into PostgreSQL.

Owns: ``migrate_from_sqlite``: verify the SQLite ledger against the ledger keys
from the trust bundle (the key ring: current and retired keys), copy every store
(ledger entries, nodes, checkpoints and metadata; replay ids; quotas; budget
spends with their status; witness state and evidence; the subject-access
blind-index store; the accepted bundle version) into an EMPTY PostgreSQL
schema in one transaction (all or nothing), then verify the PostgreSQL ledger
and require the same size, checkpoints and root. Rows are copied verbatim:
nothing is re-encoded or re-hashed, so the log is the same log.

Does not own: either backend's schema (``gateway.storage.postgres.schema``,
the SQLite stores), verification (``gateway.ledger.verify``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.crypto import AnyVerifyKey
from gateway.errors import InvalidArgument, NotFound, StorageFailure, VerificationFailed
from gateway.keyring import KeyRing
from gateway.ledger.storage import SqliteLedgerStore
from gateway.ledger.verify import LedgerReport, verify_store
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.storage.backend import (
    BUDGET_FILE,
    LEDGER_FILE,
    QUOTA_FILE,
    REPLAY_FILE,
    SUBJECT_FILE,
    WITNESS_FILE,
)
from gateway.storage.postgres.db import Connection, PgDatabase
from gateway.storage.postgres.ledger import PgLedgerStore
from gateway.storage.postgres.versions import record_version
from gateway.trust import FileVersionStore

BATCH = 20_000


@dataclass
class MigrationReport:
    before: LedgerReport
    after: LedgerReport
    copied: dict[str, int] = field(default_factory=dict)


# (file, table, columns) copied verbatim, in this order.
_TABLES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (LEDGER_FILE, "ledger_meta", ("k", "v")),
    (LEDGER_FILE, "ledger_entries", ("idx", "entry", "entry_hash", "request_id", "timestamp_ms")),
    (LEDGER_FILE, "ledger_nodes", ("id", "hash")),
    (LEDGER_FILE, "ledger_checkpoints", ("seq", "size", "note", "issued_ms")),
    (REPLAY_FILE, "seen_requests", ("sender", "request_id", "timestamp_ms")),
    (
        QUOTA_FILE,
        "quota_usage",
        ("holder", "dataset", "requester", "service_system", "day", "used"),
    ),
    (
        BUDGET_FILE,
        "spends",
        (
            "seq",
            "dataset",
            "requester",
            "epsilon_units",
            "delta_units",
            "request_id",
            "query_digest",
            "at_ms",
            "status",
        ),
    ),
    (WITNESS_FILE, "witness_state", ("origin", "size", "root", "note", "updated_ms")),
    (
        WITNESS_FILE,
        "witness_evidence",
        ("id", "origin", "kind", "held_note", "shown_note", "detail", "recorded_ms"),
    ),
    (
        SUBJECT_FILE,
        "subject_entries",
        ("request_id", "coverage", "dataset", "fields", "recorded_ms", "entry_index"),
    ),
    (SUBJECT_FILE, "subject_index", ("blind", "request_id")),
)
_SERIALS = (("spends", "seq"), ("witness_evidence", "id"))


def _sqlite_rows(path: Path, table: str, cols: Sequence[str]) -> Iterator[list[tuple[Any, ...]]]:
    conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
    try:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        if not exists:
            return
        cur = conn.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY 1")
        while rows := cur.fetchmany(BATCH):
            yield rows
    except sqlite3.Error as exc:
        raise StorageFailure(f"{path}: cannot read {table}: {exc}") from exc
    finally:
        conn.close()


def _require_empty(conn: Connection) -> None:
    for _file, table, _cols in _TABLES:
        row = conn.execute(f"SELECT EXISTS (SELECT 1 FROM {table})").fetchone()
        if row and row[0]:
            raise InvalidArgument(
                f"the PostgreSQL schema already holds gateway state (table {table} is not "
                "empty); migrate into a new database or schema"
            )
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM bundle_version)").fetchone()
    if row and row[0]:
        raise InvalidArgument("the PostgreSQL schema already holds a bundle version")


def migrate_from_sqlite(
    data_dir: Path,
    db: PgDatabase,
    origin: str,
    ledger_key: AnyVerifyKey | KeyRing,
    progress: Callable[[str, int], None] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> MigrationReport:
    """Copy ``data_dir``'s SQLite state into ``db``; verify before and after
    (``ledger_key``: the log's key, or its key ring when it was rotated)."""
    ledger_path = data_dir / LEDGER_FILE
    if not ledger_path.is_file():
        raise NotFound(f"{ledger_path}: no ledger to migrate")
    source = SqliteLedgerStore(ledger_path, readonly=True)
    try:
        stored_origin = source.get_meta("origin")
        if stored_origin not in (None, origin):
            raise InvalidArgument.expected("ledger origin", origin, stored_origin)
        before = verify_store(source, origin, ledger_key, limits=limits)
    finally:
        source.close()
    if not before.ok:
        assert before.problem is not None
        raise VerificationFailed(
            f"the SQLite ledger does not verify; not migrating it: {before.problem}"
        )
    copied: dict[str, int] = {}
    with db.transaction("migrating SQLite state") as conn:
        # One long transaction that waits on SQLite reads and verification.
        conn.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
        _require_empty(conn)
        for file, table, cols in _TABLES:
            path = data_dir / file
            if not path.is_file():
                continue
            n = 0
            with conn.cursor().copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                for rows in _sqlite_rows(path, table, cols):
                    for r in rows:
                        copy.write_row(r)
                    n += len(rows)
                    if progress is not None:
                        progress(table, n)
            copied[table] = n
        for table, column in _SERIALS:
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"
                f" COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
            )
        versions = FileVersionStore.in_dir(data_dir)
        if versions.highest() > 0:
            record_version(conn, versions.highest(), versions.highest_digest())
            copied["bundle_version"] = versions.highest()
        # Verified before the commit, on this transaction's own view: a copy
        # that differs (the SQLite gateway still appending, say) commits nothing.
        after = verify_store(_Uncommitted(db, conn), origin, ledger_key, limits=limits)
        same = (
            after.ok
            and after.entries == before.entries
            and after.checkpoints == before.checkpoints
            and after.root == before.root
        )
        if not same:
            raise VerificationFailed(
                "the migrated PostgreSQL ledger does not match the SQLite one "
                f"({after.entries} entries, root {after.root.hex()[:16]} vs {before.entries}, "
                f"{before.root.hex()[:16]}): {after.problem}; nothing was copied (is a "
                "gateway still running on the SQLite files? stop it first)"
            )
    return MigrationReport(before, after, copied)


class _Uncommitted(PgLedgerStore):
    """The ledger as the migrating transaction sees it (not yet committed)."""

    def __init__(self, db: PgDatabase, conn: Connection) -> None:
        super().__init__(db)
        self._conn = conn

    def _all(self, query: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._db.errors("verifying the migrated ledger"):
            return self._conn.execute(query, params).fetchall()
