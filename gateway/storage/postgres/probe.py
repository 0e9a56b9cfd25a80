"""Readiness and row counts of the PostgreSQL database a gateway's replicas share.

Owns: ``PgProbe`` (the ``StoreProbe`` of ``gateway.storage.probe``): a replica
is ready when the shared database answers from its pool within a short
statement timeout and its schema is at the version this gateway knows (a
database migrated by a newer gateway, or wiped, is reported); row counts are
those of the shared tables, so every replica reports the same figures.
"""

from __future__ import annotations

from gateway.errors import StorageFailure
from gateway.storage.postgres.db import PgDatabase
from gateway.storage.postgres.schema import MIGRATIONS
from gateway.storage.probe import COUNTED

_TIMEOUT = "SET LOCAL statement_timeout = 2000"


class PgProbe:
    def __init__(self, db: PgDatabase) -> None:
        self._db = db
        self._version = max(m.version for m in MIGRATIONS)

    def problem(self) -> str | None:
        try:
            with self._db.transaction("readiness check") as conn:
                conn.execute(_TIMEOUT)
                row = conn.execute(
                    "SELECT COALESCE(MAX(version), 0) FROM gateway_schema"
                ).fetchone()
        except StorageFailure as exc:
            return exc.message[:300]
        version = int(row[0]) if row else 0
        if version != self._version:
            return (
                f"PostgreSQL {self._db.where} (schema {self._db.schema}) is at schema version "
                f"{version}, this gateway runs on {self._version}"
            )
        return None

    def rows(self) -> dict[str, int]:
        out: dict[str, int] = {}
        try:
            with self._db.transaction("counting store rows") as conn:
                conn.execute(_TIMEOUT)
                for store, table in COUNTED:
                    row = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
                    out[store] = int(row[0]) if row else 0
        except StorageFailure:
            return out
        return out
