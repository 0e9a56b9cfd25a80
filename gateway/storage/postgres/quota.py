"""Daily record quotas on PostgreSQL: no replica can take the last unit twice.

Owns: the ``QuotaStore`` Protocol on the shared database. ``consume`` is one
statement: an upsert whose UPDATE only applies while the new total stays
within the limit, so racing replicas are serialised by the row lock and the
loser sees no row come back (refused, nothing changed). ``refund`` is one
UPDATE that only lowers the counter (never below 0), so it can never let a
racing charge pass the limit. ``reading`` (the
policy's early check) answers from this replica's last reading of a key while
it is at most ``Limits.quota_reading_seconds`` old (refreshed by every
``consume``; at most ``Limits.max_quota_readings`` keys remembered);
only ``consume`` decides, so a stale reading can never release past the quota.
Charges and refunds are covered commits (``gateway.storage.postgres.db``): a
charge is durable at the latest with the ledger entry of the exchange that
released records under it; a refund lost in a server crash over-charges.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from gateway.errors import InvalidArgument, QuotaExceeded
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.policy.quota import QuotaKey, exceeded
from gateway.storage.postgres.db import COVERED_COMMIT, PgDatabase

_WHERE = "holder=%s AND dataset=%s AND requester=%s AND service_system=%s AND day=%s"


def _args(key: QuotaKey) -> tuple[str, str, str, str, str]:
    return (key.holder, key.dataset, key.requester, key.service_system, key.day)


class PgQuotaStore:
    def __init__(
        self,
        db: PgDatabase,
        limits: Limits = DEFAULT_LIMITS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._fresh = limits.quota_reading_seconds
        self._max_readings = limits.max_quota_readings
        self._clock = clock
        self._lock = threading.Lock()
        self._readings: dict[QuotaKey, tuple[int, float]] = {}

    def _remember(self, key: QuotaKey, used: int, at: float) -> None:
        with self._lock:
            if len(self._readings) >= self._max_readings:
                self._readings.clear()
            self._readings[key] = (used, at)

    def used(self, key: QuotaKey) -> int:
        at = self._clock()
        with self._db.connection("quota store") as conn:
            row = conn.execute(
                f"SELECT used FROM quota_usage WHERE {_WHERE}", _args(key)
            ).fetchone()
        used = int(row[0]) if row else 0
        self._remember(key, used, at)
        return used

    def reading(self, key: QuotaKey) -> int:
        with self._lock:
            hit = self._readings.get(key)
        if hit is not None and self._clock() - hit[1] <= self._fresh:
            return hit[0]
        return self.used(key)

    def consume(self, key: QuotaKey, count: int, limit: int) -> int:
        if count < 0:
            raise InvalidArgument.expected("quota increment", ">= 0", count)
        at = self._clock()
        with self._db.connection("quota store") as conn:
            row = None
            if count <= limit:
                row = conn.execute(
                    "INSERT INTO quota_usage AS q"
                    " (holder, dataset, requester, service_system, day, used)"
                    f" SELECT %s, %s, %s, %s, %s, %s WHERE {COVERED_COMMIT}"
                    " ON CONFLICT (holder, dataset, requester, service_system, day)"
                    " DO UPDATE SET used = q.used + EXCLUDED.used"
                    " WHERE q.used + EXCLUDED.used <= %s"
                    " RETURNING used",
                    (*_args(key), count, limit),
                ).fetchone()
            if row is not None:
                self._remember(key, int(row[0]), at)
                return int(row[0])
            held = conn.execute(
                f"SELECT used FROM quota_usage WHERE {_WHERE}", _args(key)
            ).fetchone()
        used = int(held[0]) if held else 0
        self._remember(key, used, at)
        raise QuotaExceeded(exceeded(key, used, limit, count))

    def refund(self, key: QuotaKey, count: int) -> int:
        if count < 0:
            raise InvalidArgument.expected("quota refund", ">= 0", count)
        at = self._clock()
        with self._db.connection("quota store") as conn:
            row = conn.execute(
                "UPDATE quota_usage SET used = GREATEST(used - %s, 0)"
                f" WHERE {_WHERE} AND {COVERED_COMMIT} RETURNING used",
                (count, *_args(key)),
            ).fetchone()
        used = int(row[0]) if row else 0
        self._remember(key, used, at)
        return used

    def close(self) -> None:
        """The database is closed by its owner."""
