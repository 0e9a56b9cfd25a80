"""The SQLite replay store (``gateway.replay``): housekeeping never fails a request."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import ReplayRejected
from gateway.replay import SqliteReplayStore


class _PruneFails:
    """The store's connection, with every DELETE failing as a full disk would."""

    def __init__(self, real: sqlite3.Connection) -> None:
        self._real = real

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.lstrip().upper().startswith("DELETE"):
            raise sqlite3.OperationalError("database or disk is full")
        return self._real.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_failed_pruning_of_old_ids_does_not_fail_the_request_it_follows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every 1000th request also prunes ids older than the window; a failure there
    was raised as a raw sqlite3 error (INTERNAL to the peer) although the request's
    own id was recorded."""
    store = SqliteReplayStore(tmp_path / "replay.sqlite", window_ms=300_000)
    real = store._conn
    store._conn = _PruneFails(real)  # type: ignore[assignment]
    store._inserts = 999
    store.check_and_record("130000", "req-1000", 1_000_000, 1_000_000)  # prunes: fails
    assert "pruning old request ids failed" in caplog.text
    with pytest.raises(ReplayRejected):  # the id itself was recorded
        store.check_and_record("130000", "req-1000", 1_000_000, 1_000_000)
    store._conn = real
    store.close()
