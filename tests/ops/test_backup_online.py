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


def test_restore_finds_where_a_backup_stops_extending_the_ledger_in_place(
    tmp_path: Path,
) -> None:
    from dataclasses import replace

    from gateway.crypto import SigningKey
    from gateway.ledger.ledger import SqliteLedger
    from gateway.ops.backup import first_difference
    from tests.ledger.ledger_testkit import ORIGIN, make_event

    key = SigningKey.generate()
    paths = {name: tmp_path / f"{name}.sqlite" for name in ("short", "long", "fork", "empty")}
    ledgers = {name: SqliteLedger(p, key, ORIGIN) for name, p in paths.items()}
    for i in range(7):
        ledgers["long"].append(make_event(i))
        if i < 4:
            ledgers["short"].append(make_event(i))
        ledgers["fork"].append(
            make_event(i) if i < 5 else replace(make_event(i), request_id=f"other-{i}")
        )
    for ledger in ledgers.values():
        ledger.close()

    def diff(backup: str, current: str) -> int | None:
        b = SqliteLedgerStore(paths[backup], readonly=True)
        c = SqliteLedgerStore(paths[current], readonly=True)
        try:
            return first_difference(b, c)
        finally:
            b.close()
            c.close()

    assert diff("long", "short") is None  # a continuation: restorable
    assert diff("long", "long") is None
    assert diff("long", "empty") is None
    assert diff("fork", "long") == 5
    assert diff("long", "fork") == 5
    assert diff("short", "long") == 4  # shorter: refused as a rollback anyway
