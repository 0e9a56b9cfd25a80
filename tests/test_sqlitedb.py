"""Opening the small SQLite stores: replicas sharing a data folder open one new file at once."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from gateway.sqlitedb import open_store


def _open(path: str) -> None:
    conn = open_store(
        path, what="test store", synchronous="FULL", schema=["CREATE TABLE IF NOT EXISTS t (a)"]
    )
    conn.execute("INSERT INTO t VALUES (1)")
    conn.close()


def test_processes_opening_one_new_store_at_once_do_not_fail_with_database_locked(
    tmp_path: Path,
) -> None:
    ctx = mp.get_context("spawn")
    for round_ in range(5):
        path = str(tmp_path / f"store{round_}.sqlite")
        procs = [ctx.Process(target=_open, args=(path,)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0, 0, 0, 0]
