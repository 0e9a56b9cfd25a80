"""Opening the gateway's small SQLite stores one way.

Owns: connection settings shared by the replay, quota and witness stores
(WAL journal, explicit durability level, autocommit so each store manages its
own transactions, usable from gRPC worker threads under the store's lock),
creating their schema, and turning failures into ``StorageFailure``. Does not
own: any schema or query (each store keeps its own), the ledger's storage
(``gateway.ledger.storage``, which also opens read-only).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from gateway.errors import StorageFailure


def open_store(
    path: str | Path,
    *,
    what: str,
    synchronous: Literal["NORMAL", "FULL"],
    schema: Sequence[str],
    timeout: float = 30.0,
) -> sqlite3.Connection:
    """Open (creating if needed) a store. ``synchronous="FULL"``: durable when a
    commit returns; ``"NORMAL"``: survives a process crash, may lose the last
    commits on power loss."""
    # Two processes opening one new file at once (replicas sharing a data
    # folder) can get "database is locked" from the switch to WAL, which SQLite
    # reports without waiting on the busy handler: retry that, within ``timeout``.
    give_up = time.monotonic() + timeout
    while True:
        try:
            conn = sqlite3.connect(
                str(path), check_same_thread=False, isolation_level=None, timeout=timeout
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={synchronous}")
            for statement in schema:
                conn.execute(statement)
            return conn
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= give_up:
                raise StorageFailure(f"{what} {path}: {exc}") from exc
            time.sleep(0.05)
        except sqlite3.Error as exc:
            raise StorageFailure(f"{what} {path}: {exc}") from exc
