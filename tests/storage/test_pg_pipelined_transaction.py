"""``PgDatabase.transaction(pipelined=True)``: fewer round trips, same guarantees.

In pipeline mode a statement's error may only surface when the pipeline is
synced (at COMMIT). These tests pin that a failing statement still fails the
whole block with ``StorageFailure``, commits nothing, and leaves the pooled
connection usable; and that a successful block is committed when it returns.
"""

from __future__ import annotations

import pytest

from gateway.errors import StorageFailure
from gateway.storage.postgres.db import PgDatabase


@pytest.fixture
def db(pg_db: PgDatabase) -> PgDatabase:
    with pg_db.connection("test") as conn:
        conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
    return pg_db


def _keys(db: PgDatabase) -> list[int]:
    with db.connection("test") as conn:
        return [int(r[0]) for r in conn.execute("SELECT k FROM t ORDER BY k")]


def test_pipelined_block_is_committed_when_it_returns(db: PgDatabase) -> None:
    with db.transaction("test", pipelined=True) as conn:
        (n,) = conn.execute("SELECT count(*) FROM t").fetchone()  # type: ignore[misc]
        conn.execute("INSERT INTO t VALUES (%s)", (n + 1,))
        conn.execute("INSERT INTO t VALUES (%s)", (n + 2,))
    assert _keys(db) == [1, 2]


def test_duplicate_key_in_a_pipelined_block_fails_it_whole_and_commits_nothing(
    db: PgDatabase,
) -> None:
    with db.transaction("test") as conn:
        conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(StorageFailure, match="duplicate key"):
        with db.transaction("test", pipelined=True) as conn:
            conn.execute("INSERT INTO t VALUES (2)")
            conn.execute("INSERT INTO t VALUES (1)")  # a fork attempt: same key
    assert _keys(db) == [1]
    # Every pooled connection is still usable afterwards.
    for _ in range(3):
        with db.transaction("test", pipelined=True) as conn:
            conn.execute("SELECT 1")
    with db.transaction("test", pipelined=True) as conn:
        conn.execute("INSERT INTO t VALUES (3)")
    assert _keys(db) == [1, 3]
