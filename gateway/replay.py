"""Replay memory: a request id is accepted once per sender.

Owns: the ``ReplayStore`` protocol and its SQLite implementation (persistent,
so a restart does not reopen the window). Does not own: the timestamp window
check (``gateway.envelope.check_header``), which bounds how long ids must be
remembered: ids older than twice the window are pruned.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from typing import Protocol

from gateway.errors import ReplayRejected, StorageFailure
from gateway.sqlitedb import open_store

log = logging.getLogger("gateway.replay")


class ReplayStore(Protocol):
    def check_and_record(
        self, sender: str, request_id: str, timestamp_ms: int, now_ms: int
    ) -> None:
        """Raise ReplayRejected if (sender, request_id) was seen; else remember it."""
        ...


class SqliteReplayStore:
    def __init__(self, path: Path, window_ms: int) -> None:
        self._window_ms = window_ms
        self._lock = threading.Lock()
        # NORMAL: survives a gateway crash; on power loss the last ids may be
        # forgotten, but every served request is also in the (FULL) ledger.
        self._conn = open_store(
            path,
            what="replay store",
            synchronous="NORMAL",
            schema=[
                "CREATE TABLE IF NOT EXISTS seen_requests ("
                " sender TEXT NOT NULL, request_id TEXT NOT NULL, timestamp_ms INTEGER NOT NULL,"
                " PRIMARY KEY (sender, request_id))"
            ],
        )
        self._inserts = 0

    def check_and_record(
        self, sender: str, request_id: str, timestamp_ms: int, now_ms: int
    ) -> None:
        with self._lock:
            try:
                self._conn.execute(
                    "INSERT INTO seen_requests (sender, request_id, timestamp_ms) VALUES (?, ?, ?)",
                    (sender, request_id, timestamp_ms),
                )
            except sqlite3.IntegrityError as exc:
                raise ReplayRejected(
                    f"request id {request_id} from {sender} was already processed; refusing a replay"
                ) from exc
            except sqlite3.Error as exc:
                raise StorageFailure(f"replay store: {exc}") from exc
            self._inserts += 1
            if self._inserts % 1000 == 0:
                try:  # housekeeping: the id is recorded; a failed cleanup is retried later
                    self._conn.execute(
                        "DELETE FROM seen_requests WHERE timestamp_ms < ?",
                        (now_ms - 2 * self._window_ms,),
                    )
                except sqlite3.Error as exc:
                    log.warning("replay store: pruning old request ids failed: %s", exc)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
