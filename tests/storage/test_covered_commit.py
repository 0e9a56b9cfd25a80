"""Covered commits on PostgreSQL: which writes wait for the disk, and which do not.

The holder's replay id, quota charge and refund commit asynchronously (``COVERED_COMMIT``): the ledger's synchronous commit that
follows them flushes their WAL too. These tests pin the mechanism (such a
statement's commit does not wait for the flush, the session's own setting is
untouched, a plain statement's commit does wait) and which statements use it:
every per-exchange write of those stores, and nothing of the ledger's.
"""

from __future__ import annotations

import itertools
from typing import Any

import psycopg
import pytest

from gateway.config import StorageSettings
from gateway.crypto import SigningKey
from gateway.ledger.ledger import Ledger
from gateway.policy.quota import QuotaKey
from gateway.storage.backend import open_postgres_stores
from gateway.storage.postgres.db import COVERED_COMMIT, PgDatabase
from tests.ledger.ledger_testkit import make_event

WINDOW_MS = 300_000
ORIGIN = "110000.gateway.dataexchange.cn/ledger"


@pytest.fixture
def db(pg_db: PgDatabase) -> PgDatabase:
    with pg_db.connection("test") as conn:
        conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
    return pg_db


_keys = itertools.count()


def _flushed_past_own_write(db: PgDatabase, covered: bool) -> bool:
    """Insert a row (covered or not) in its own autocommit transaction and say
    whether the WAL was already flushed past where that statement wrote when
    the commit returned (always, for a synchronous commit)."""
    where = f" WHERE {COVERED_COMMIT}" if covered else ""
    with db.connection("test") as conn:
        row = conn.execute(
            f"INSERT INTO t (k) SELECT %s{where} RETURNING pg_current_wal_insert_lsn()::text",
            (f"k{next(_keys)}",),
        ).fetchone()
        assert row is not None
        flushed = conn.execute(
            "SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", (row[0],)
        ).fetchone()
        assert flushed is not None
        return bool(flushed[0])


def test_a_plain_write_commits_only_once_its_wal_is_on_disk(db: PgDatabase) -> None:
    assert all(_flushed_past_own_write(db, covered=False) for _ in range(20))


def test_a_covered_write_commits_without_waiting_for_the_disk(db: PgDatabase) -> None:
    # The WAL writer (or another session's synchronous commit) may flush it
    # before we look; over many writes, some are seen not yet flushed.
    assert not all(_flushed_past_own_write(db, covered=True) for _ in range(200))


def test_a_covered_write_leaves_the_pooled_session_synchronous(db: PgDatabase) -> None:
    with db.connection("test") as conn:
        conn.execute(f"INSERT INTO t (k) SELECT 'once' WHERE {COVERED_COMMIT}")
        row = conn.execute("SHOW synchronous_commit").fetchone()
    assert row == ("on",)


class _Recorder:
    """Every statement text any psycopg connection executes, in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.statements: list[str] = []
        real = psycopg.Connection.execute

        def execute(conn: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            self.statements.append(str(query))
            return real(conn, query, *args, **kwargs)

        monkeypatch.setattr(psycopg.Connection, "execute", execute)

    def take(self) -> list[str]:
        out, self.statements = self.statements, []
        return out


def test_the_exchange_writes_are_covered_and_the_ledger_append_is_not(
    pg_settings: StorageSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    stores = open_postgres_stores(pg_settings, WINDOW_MS)
    ledger = Ledger(stores.ledger, SigningKey(bytes(range(32))), ORIGIN, checkpoint_every=1000)
    key = QuotaKey("110000", "household_register", "120000", "tj-social-security", "2026-12-01")
    rec = _Recorder(monkeypatch)
    try:
        writes = {
            "replay id": lambda: stores.replay.check_and_record("120000", "req-1", 1, 1),
            "quota charge": lambda: stores.quota.consume(key, 2, 10),
            "quota refund": lambda: stores.quota.refund(key, 1),
        }
        for what, write in writes.items():
            rec.take()
            write()
            sent = [
                s for s in rec.take() if s.lstrip().upper().startswith(("INSERT", "UPDATE", "WITH"))
            ]
            assert sent, what
            assert all(COVERED_COMMIT in s for s in sent), what
        ledger.append(make_event(0))
        sent = rec.take()
        assert sent  # the append went through psycopg
        assert not any("synchronous_commit" in s for s in sent)
    finally:
        ledger.close()
        stores.close()


def test_a_server_default_of_asynchronous_commit_is_overridden_for_the_ledger(
    pg_settings: StorageSettings,
) -> None:
    # A role or server whose default is synchronous_commit=off (here: the
    # connection string's startup options) would make every ledger commit,
    # and with it every covered write, lost on a server crash.
    assert pg_settings.url is not None
    url = pg_settings.url + ("&" if "?" in pg_settings.url else "?")
    url += "options=-csynchronous_commit%3Doff"
    with psycopg.connect(url) as plain:
        assert plain.execute("SHOW synchronous_commit").fetchone() == ("off",)
    d = PgDatabase(url, schema=pg_settings.db_schema, pool_size=2)
    try:
        with d.connection("test") as conn:
            assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
        with d.transaction("test", pipelined=True) as conn:
            row = conn.execute("SHOW synchronous_commit").fetchone()
        assert row == ("on",)
    finally:
        d.close()
