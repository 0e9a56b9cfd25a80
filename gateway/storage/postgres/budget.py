"""Privacy budgets on PostgreSQL: racing replicas never overspend.

Owns: the ``BudgetStore`` Protocol on the shared database, with the same
accounting as ``gateway.stats.budget`` (its pure ``check_charge`` and integer
units). Each reservation is one transaction holding a transaction-scoped
advisory lock for its dataset (the dataset-wide cap couples every requester
of a dataset), then summing, checking and inserting; the lock ends with the
commit. The unique request id refuses a replayed reservation; triggers keep
the spend table append-only (``schema``). Also the ``SpendIndex`` the start-up
check reads (which spends exist; the newest row).
"""

from __future__ import annotations

from collections.abc import Collection

import psycopg

from gateway.errors import InvalidArgument, ReplayRejected, StorageFailure
from gateway.stats.budget import (
    DELTA_UNIT,
    EPS_UNIT,
    Caps,
    Spend,
    SpendRow,
    Status,
    Usage,
    UsageRow,
    check_charge,
    delta_charge_units,
    eps_charge_units,
)
from gateway.storage.postgres.db import Connection, PgDatabase


def _usage(conn: Connection, dataset: str, requester: str) -> Usage:
    row = conn.execute(
        "SELECT COALESCE(SUM(epsilon_units) FILTER (WHERE requester = %s), 0),"
        " COALESCE(SUM(epsilon_units), 0),"
        " COALESCE(SUM(delta_units) FILTER (WHERE requester = %s), 0),"
        " COALESCE(SUM(delta_units), 0)"
        " FROM spends WHERE dataset = %s",
        (requester, requester, dataset),
    ).fetchone()
    assert row is not None
    return Usage(int(row[0]), int(row[1]), int(row[2]), int(row[3]))


class PgBudgetStore:
    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    def reserve(self, spend: Spend, caps: Caps) -> Usage:
        e = eps_charge_units(spend.epsilon)
        d = delta_charge_units(spend.delta)
        try:
            with self._db.transaction("budget store") as conn:
                conn.execute(
                    "SELECT pg_advisory_xact_lock(%s)",
                    (self._db.lock_key("budget:" + spend.dataset),),
                )
                usage = _usage(conn, spend.dataset, spend.requester)
                check_charge(usage, e, d, caps, f"{spend.requester} on {spend.dataset}")
                conn.execute(
                    "INSERT INTO spends (dataset, requester, epsilon_units, delta_units,"
                    " request_id, query_digest, at_ms, status)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, 'reserved')",
                    (
                        spend.dataset,
                        spend.requester,
                        e,
                        d,
                        spend.request_id,
                        spend.query_digest,
                        spend.at_ms,
                    ),
                )
        except StorageFailure as exc:
            if isinstance(exc.__cause__, psycopg.errors.UniqueViolation):
                raise ReplayRejected(f"request id {spend.request_id} already spent budget") from exc
            raise
        return usage.after(e, d)

    def settle(self, request_id: str, status: Status) -> None:
        if status not in ("released", "failed"):
            raise InvalidArgument.expected("status", "released or failed", status)
        with self._db.connection("budget store") as conn:
            cur = conn.execute(
                "UPDATE spends SET status = %s WHERE request_id = %s AND status = 'reserved'",
                (status, request_id),
            )
            if cur.rowcount != 1:
                raise StorageFailure(f"no open reservation for request {request_id}")

    def usage(self, dataset: str, requester: str) -> Usage:
        with self._db.connection("budget store") as conn:
            return _usage(conn, dataset, requester)

    def totals(self) -> list[UsageRow]:
        with self._db.connection("budget store") as conn:
            rows = conn.execute(
                "SELECT dataset, requester, SUM(epsilon_units), SUM(delta_units), COUNT(*)"
                " FROM spends GROUP BY dataset, requester ORDER BY dataset, requester"
            ).fetchall()
        return [
            UsageRow(str(ds), str(rq), int(e) / EPS_UNIT, int(dl) / DELTA_UNIT, int(n))
            for ds, rq, e, dl, n in rows
        ]

    def open_reservations(self) -> list[tuple[str, int]]:
        with self._db.connection("budget store") as conn:
            rows = conn.execute(
                "SELECT request_id, at_ms FROM spends WHERE status = 'reserved' ORDER BY seq"
            ).fetchall()
        return [(str(r[0]), int(r[1])) for r in rows]

    def spends(self, limit: int = 1000) -> list[SpendRow]:
        with self._db.connection("budget store") as conn:
            rows = conn.execute(
                "SELECT dataset, requester, epsilon_units, delta_units, request_id,"
                " query_digest, at_ms, status FROM spends ORDER BY seq DESC LIMIT %s",
                (limit,),
            ).fetchall()
        return [
            SpendRow(
                str(r[0]),
                str(r[1]),
                int(r[2]) / EPS_UNIT,
                int(r[3]) / DELTA_UNIT,
                str(r[4]),
                str(r[5]),
                int(r[6]),
                str(r[7]),
            )
            for r in rows
        ]

    def recorded(self, request_ids: Collection[str]) -> set[str]:
        ids = list(request_ids)
        have: set[str] = set()
        with self._db.connection("budget store") as conn:
            for a in range(0, len(ids), 10_000):
                rows = conn.execute(
                    "SELECT request_id FROM spends WHERE request_id = ANY(%s)",
                    (ids[a : a + 10_000],),
                ).fetchall()
                have.update(str(r[0]) for r in rows)
        return have

    def newest(self) -> tuple[int, int, str]:
        with self._db.connection("budget store") as conn:
            count = conn.execute("SELECT COUNT(*) FROM spends").fetchone()
            last = conn.execute(
                "SELECT seq, request_id FROM spends ORDER BY seq DESC LIMIT 1"
            ).fetchone()
        rows = int(count[0]) if count else 0
        return (rows, int(last[0]), str(last[1])) if last else (rows, 0, "")

    def request_at(self, seq: int) -> str | None:
        with self._db.connection("budget store") as conn:
            row = conn.execute("SELECT request_id FROM spends WHERE seq = %s", (seq,)).fetchone()
        return str(row[0]) if row else None

    def close(self) -> None:
        """The database is closed by its owner."""
