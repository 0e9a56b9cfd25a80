"""Every store contract test runs against SQLite and PostgreSQL (``backend``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.config import StorageSettings
from gateway.storage.backend import Stores, open_postgres_stores, open_sqlite_stores
from gateway.storage.postgres.db import PgDatabase
from tests.pgtest import fresh_schema, postgres_dsn

WINDOW_MS = 300_000


@dataclass
class Backend:
    """Opens stores on one shared state; each call is another "replica"."""

    name: str
    _open: Callable[[], Stores]
    opened: list[Stores] = field(default_factory=list)

    def open(self) -> Stores:
        stores = self._open()
        self.opened.append(stores)
        return stores

    def close_all(self) -> None:
        for s in self.opened:
            s.close()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        b = Backend("sqlite", lambda: open_sqlite_stores(tmp_path, WINDOW_MS))
        yield b
        b.close_all()
        return
    dsn = postgres_dsn()
    with fresh_schema(dsn) as schema:
        settings = StorageSettings(url=dsn, schema=schema, pool_size=8)
        b = Backend("postgres", lambda: open_postgres_stores(settings, WINDOW_MS))
        yield b
        b.close_all()


@pytest.fixture
def pg_settings() -> Iterator[StorageSettings]:
    dsn = postgres_dsn()
    with fresh_schema(dsn) as schema:
        yield StorageSettings(url=dsn, schema=schema, pool_size=8)


@pytest.fixture
def pg_db(pg_settings: StorageSettings) -> Iterator[PgDatabase]:
    """The database layer alone (a pool of two) on a fresh schema."""
    assert pg_settings.url is not None
    d = PgDatabase(pg_settings.url, schema=pg_settings.db_schema, pool_size=2)
    yield d
    d.close()
