"""Per-requester daily quotas: the storage behind a small protocol.

Owns: counting the units charged per (holder, dataset, requester jurisdiction,
service system, UTC day), refusing, atomically, a charge that would pass the
limit, and giving back (``refund``) a charge whose exchange failed before
anything was released. Does not own: what the limit is (the agreement;
``gateway.policy.engine``), what a unit is (the engine: a subject asked by a
named request, a record released by a bulk one) or which day a request falls
on (the request's ``timestamp_ms``, mapped by ``utc_day``).

The SQLite store uses ``BEGIN IMMEDIATE`` so two gateways' worker threads
(or processes) sharing the file can never both take the last unit of quota.
A refund only lowers a counter, so it can never let a charge pass the limit.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gateway.errors import InvalidArgument, QuotaExceeded, StorageFailure
from gateway.sqlitedb import open_store

_MS_PER_DAY = 86_400_000


def utc_day(timestamp_ms: int) -> str:
    """The UTC calendar day of a Unix-millisecond timestamp, ISO format."""
    return (dt.date(1970, 1, 1) + dt.timedelta(days=timestamp_ms // _MS_PER_DAY)).isoformat()


@dataclass(frozen=True)
class QuotaKey:
    holder: str
    dataset: str
    requester: str
    service_system: str
    day: str  # ISO date, UTC


class QuotaStore(Protocol):
    def used(self, key: QuotaKey) -> int:
        """Units already charged under ``key`` (0 if none)."""
        ...

    def reading(self, key: QuotaKey) -> int:
        """``used`` for the policy's early refusal: on a store that replicas
        share it may be up to ``Limits.quota_reading_seconds`` old, so a
        request another replica just pushed over the limit is refused by
        ``consume`` instead (same status, nothing released). Exact elsewhere."""
        ...

    def consume(self, key: QuotaKey, count: int, limit: int) -> int:
        """Atomically add ``count``; return the new total. Raise QuotaExceeded
        (and change nothing) if the total would pass ``limit``."""
        ...

    def refund(self, key: QuotaKey, count: int) -> int:
        """Atomically take back ``count`` that ``consume`` charged (never below
        0); return the new total."""
        ...


def exceeded(key: QuotaKey, used: int, limit: int, count: int) -> str:
    """The refusal of a charge that would pass the limit (both stores give it)."""
    return (
        f"quota exceeded: {key.requester}/{key.service_system} has used {used} of {limit} "
        f"on its {key.dataset} quota for {key.day} (UTC); {count} more refused"
    )


_SCHEMA = """
CREATE TABLE IF NOT EXISTS quota_usage (
    holder TEXT NOT NULL,
    dataset TEXT NOT NULL,
    requester TEXT NOT NULL,
    service_system TEXT NOT NULL,
    day TEXT NOT NULL,
    used INTEGER NOT NULL CHECK (used >= 0),
    PRIMARY KEY (holder, dataset, requester, service_system, day)
) WITHOUT ROWID
"""


class SqliteQuotaStore:
    """Quota counters in a SQLite file. Thread-safe; one connection, one lock."""

    def __init__(self, path: Path | str) -> None:
        self._path = str(path)
        self._lock = threading.Lock()
        self._db = open_store(
            self._path, what="quota store", synchronous="NORMAL", schema=[_SCHEMA], timeout=10.0
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def used(self, key: QuotaKey) -> int:
        try:
            with self._lock:
                row = self._db.execute(
                    "SELECT used FROM quota_usage WHERE holder=? AND dataset=? AND requester=?"
                    " AND service_system=? AND day=?",
                    (key.holder, key.dataset, key.requester, key.service_system, key.day),
                ).fetchone()
        except sqlite3.Error as exc:
            raise StorageFailure(f"quota store {self._path}: {exc}") from exc
        return int(row[0]) if row else 0

    def reading(self, key: QuotaKey) -> int:
        return self.used(key)  # a library call: always exact

    def consume(self, key: QuotaKey, count: int, limit: int) -> int:
        if count < 0:
            raise InvalidArgument.expected("quota increment", ">= 0", count)
        args = (key.holder, key.dataset, key.requester, key.service_system, key.day)
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StorageFailure(f"quota store {self._path}: {exc}") from exc
            try:
                row = self._db.execute(
                    "SELECT used FROM quota_usage WHERE holder=? AND dataset=? AND requester=?"
                    " AND service_system=? AND day=?",
                    args,
                ).fetchone()
                used = int(row[0]) if row else 0
                total = used + count
                if total > limit:
                    self._db.execute("ROLLBACK")
                    raise QuotaExceeded(exceeded(key, used, limit, count))
                self._db.execute(
                    "INSERT INTO quota_usage"
                    " (holder, dataset, requester, service_system, day, used)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (holder, dataset, requester,"
                    " service_system, day) DO UPDATE SET used = excluded.used",
                    (*args, total),
                )
                self._db.execute("COMMIT")
                return total
            except sqlite3.Error as exc:
                self._rollback()
                raise StorageFailure(f"quota store {self._path}: {exc}") from exc

    def refund(self, key: QuotaKey, count: int) -> int:
        if count < 0:
            raise InvalidArgument.expected("quota refund", ">= 0", count)
        try:
            with self._lock:
                # One statement: atomic on its own (autocommit), and it only lowers.
                row = self._db.execute(
                    "UPDATE quota_usage SET used = MAX(used - ?, 0) WHERE holder=? AND dataset=?"
                    " AND requester=? AND service_system=? AND day=? RETURNING used",
                    (count, key.holder, key.dataset, key.requester, key.service_system, key.day),
                ).fetchone()
        except sqlite3.Error as exc:
            raise StorageFailure(f"quota store {self._path}: {exc}") from exc
        return int(row[0]) if row else 0

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass
