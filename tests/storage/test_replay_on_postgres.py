"""PostgreSQL replay memory: pruning old ids never fails the request it follows."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from gateway.config import StorageSettings
from gateway.errors import ReplayRejected, StorageFailure
from gateway.storage.backend import open_postgres_stores
from gateway.storage.postgres import replay as pg_replay

WINDOW_MS = 300_000


class _DeleteFails:
    """The store's database, whose DELETE statements fail (a prune that cannot run)."""

    def __init__(self, real: Any) -> None:
        self._real = real

    @contextmanager
    def connection(self, what: str) -> Iterator[Any]:
        with self._real.connection(what) as conn:
            yield _Conn(conn)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _Conn:
    def __init__(self, real: Any) -> None:
        self._real = real

    def execute(self, sql: str, params: Any = None) -> Any:
        if sql.startswith("DELETE"):
            raise StorageFailure("replay store: statement timeout")
        return self._real.execute(sql, params)


def test_a_prune_that_fails_does_not_fail_the_requests_whose_ids_it_recorded(
    pg_settings: StorageSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """The group's ids are committed before the prune runs: telling their callers
    the store failed would make each retry a "replay" of itself."""
    stores = open_postgres_stores(pg_settings, WINDOW_MS)
    try:
        store = stores.replay
        assert isinstance(store, pg_replay.PgReplayStore)
        store._db = _DeleteFails(store._db)  # type: ignore[assignment]
        store._inserts = itertools.count(pg_replay.PRUNE_EVERY)
        store.check_and_record("130000", "req-prune", 1_000_000, 1_000_000)  # prunes: fails
        assert "replay memory not pruned" in caplog.text
        with pytest.raises(ReplayRejected):  # the id itself was recorded
            store.check_and_record("130000", "req-prune", 1_000_000, 1_000_000)
    finally:
        stores.close()
