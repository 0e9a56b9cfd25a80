"""`gateway backup` of SQLite stores that a running gateway keeps writing to.

No federation: the stores are real SQLite files written by another connection,
as the gateway process does while an operator runs ``gateway backup``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from gateway.ledger.storage import SqliteLedgerStore
from gateway.ops.backup import check_backup, take_backup

BJ = "110000"


def _large_ledger(path: Path, rows: int, size: int) -> None:
    SqliteLedgerStore(path).close()  # the ledger's own tables, WAL
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO ledger_entries (idx, entry, entry_hash, request_id, timestamp_ms)"
            " VALUES (?, ?, ?, ?, ?)",
            ((i, os.urandom(size), os.urandom(32), f"r{i}", i) for i in range(rows)),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def test_backup_finishes_while_the_gateway_keeps_committing_to_a_large_ledger(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _large_ledger(data / "ledger.sqlite", rows=60_000, size=1000)  # ~60 MB
    stop = threading.Event()
    writes = [0]

    def gateway_writes() -> None:  # a commit every few ms, as exchanges arrive
        conn = sqlite3.connect(data / "ledger.sqlite", isolation_level=None)
        try:
            while not stop.is_set():
                conn.execute(
                    "INSERT INTO ledger_nodes (id, hash) VALUES (?, ?)", (writes[0], bytes(32))
                )
                writes[0] += 1
                stop.wait(0.002)
        finally:
            conn.close()

    done = threading.Event()
    failed: list[BaseException] = []

    def backup() -> None:
        try:
            take_backup(data, tmp_path / "b", BJ)
        except BaseException as exc:  # reported below
            failed.append(exc)
        done.set()

    writer = threading.Thread(target=gateway_writes)
    writer.start()
    try:
        threading.Thread(target=backup, daemon=True).start()
        finished = done.wait(20)
        seen = writes[0]
    finally:
        stop.set()
        writer.join()
    # Copied in small steps, every commit between two steps restarted the copy
    # from page one: the backup of a busy gateway never ended.
    assert finished, "backup did not finish while the gateway kept writing"
    assert not failed, failed
    assert seen > 0  # the gateway was not blocked meanwhile
    manifest = check_backup(tmp_path / "b", BJ)
    assert manifest.ledger_size == 60_000
