"""The highest accepted trust-bundle version on PostgreSQL, shared by replicas.

Owns: the bundle-version store on the shared database, with the file store's
rules (``gateway.trust``): the version never goes down, and a different bundle
under the version already accepted is refused. The single row is locked for
the read-compare-write, so replicas loading bundles at once agree.
"""

from __future__ import annotations

from gateway.storage.postgres.db import Connection, PgDatabase
from gateway.trust.state import advance_version


class PgVersionStore:
    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    def _load(self) -> tuple[int, str | None]:
        with self._db.connection("bundle version store") as conn:
            row = conn.execute("SELECT version, digest FROM bundle_version WHERE id = 1").fetchone()
        return (int(row[0]), row[1]) if row else (0, None)

    def highest(self) -> int:
        return self._load()[0]

    def highest_digest(self) -> str | None:
        return self._load()[1]

    def record(self, version: int, digest: str | None = None) -> None:
        with self._db.transaction("bundle version store") as conn:
            record_version(conn, version, digest)

    def close(self) -> None:
        """The database is closed by its owner."""


def record_version(conn: Connection, version: int, digest: str | None) -> None:
    """Inside the caller's transaction: advance the accepted version (never down;
    another bundle under the same version refused), the row locked meanwhile."""
    conn.execute(
        "INSERT INTO bundle_version (id, version, digest) VALUES (1, 0, NULL)"
        " ON CONFLICT (id) DO NOTHING"
    )
    row = conn.execute(
        "SELECT version, digest FROM bundle_version WHERE id = 1 FOR UPDATE"
    ).fetchone()
    assert row is not None
    version, digest = advance_version(int(row[0]), row[1], version, digest)
    conn.execute(
        "UPDATE bundle_version SET version = %s, digest = %s WHERE id = 1", (version, digest)
    )
