"""Daily record quotas on PostgreSQL: no replica can take the last unit twice.

Owns: the ``QuotaStore`` Protocol on the shared database. ``consume`` is one
statement: an upsert whose UPDATE only applies while the new total stays
within the limit, so racing replicas are serialised by the row lock and the
loser sees no row come back (refused, nothing changed).
"""

from __future__ import annotations

from gateway.errors import InvalidArgument, QuotaExceeded
from gateway.policy.quota import QuotaKey
from gateway.storage.postgres.db import PgDatabase

_WHERE = "holder=%s AND dataset=%s AND requester=%s AND service_system=%s AND day=%s"


def _args(key: QuotaKey) -> tuple[str, str, str, str, str]:
    return (key.holder, key.dataset, key.requester, key.service_system, key.day)


class PgQuotaStore:
    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    def used(self, key: QuotaKey) -> int:
        with self._db.connection("quota store") as conn:
            row = conn.execute(
                f"SELECT used FROM quota_usage WHERE {_WHERE}", _args(key)
            ).fetchone()
        return int(row[0]) if row else 0

    def consume(self, key: QuotaKey, count: int, limit: int) -> int:
        if count < 0:
            raise InvalidArgument.expected("quota increment", ">= 0", count)
        with self._db.connection("quota store") as conn:
            row = None
            if count <= limit:
                row = conn.execute(
                    "INSERT INTO quota_usage AS q"
                    " (holder, dataset, requester, service_system, day, used)"
                    " VALUES (%s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (holder, dataset, requester, service_system, day)"
                    " DO UPDATE SET used = q.used + EXCLUDED.used"
                    " WHERE q.used + EXCLUDED.used <= %s"
                    " RETURNING used",
                    (*_args(key), count, limit),
                ).fetchone()
            if row is not None:
                return int(row[0])
            held = conn.execute(
                f"SELECT used FROM quota_usage WHERE {_WHERE}", _args(key)
            ).fetchone()
        used = int(held[0]) if held else 0
        raise QuotaExceeded(
            f"quota exceeded: {key.requester}/{key.service_system} has used {used} "
            f"of {limit} {key.dataset} records on {key.day} (UTC); {count} more refused"
        )

    def close(self) -> None:
        """The database is closed by its owner."""
