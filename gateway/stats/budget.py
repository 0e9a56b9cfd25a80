"""Privacy budgets: how much epsilon (and delta) each requester has spent per dataset.

Owns: the pure budget arithmetic (``check_charge``: exact integer units, never
overspend), the ``BudgetStore`` protocol and its SQLite implementation
(``SqliteBudgetStore``), the ``SpendIndex`` protocol (what the start-up and
restore checks of ``gateway.ops.spent`` read) and its read-only reader of a
``budget.sqlite`` file (``SqliteSpendIndex``): an append-only spend table, totals are sums of its
rows, and every reservation runs in one ``BEGIN IMMEDIATE`` transaction so
concurrent queries (threads or processes) can never overspend. Budgets survive
restarts because they are nothing but the rows of a real file.

Does not own: the caps (declared in ``policies/<code>/statistics.yaml``) or
computing releases.

Accounting rules (conservative by design):

* Amounts are stored as integers: epsilon in units of 1e-9, delta in units
  of 1e-18. No float drift. Conversions are exact (``fractions.Fraction``,
  no float multiplication or decimal rounding on the way): a charge is
  rounded UP, to at least one unit, a cap DOWN. Epsilon (charges and caps)
  is read as the shortest decimal that denotes the float (``repr``: what the
  agreement or the requester wrote, so 30 charges of 0.1 fit a cap of 3.0
  exactly); the engine calibrates noise to at most the charged units
  (``eps_loss_bound``), so the charge is never below the epsilon OpenDP
  says was spent. Delta charges are the float's exact value rounded up.
* Reserve-then-compute: a spend row (status ``reserved``) is committed BEFORE
  the data is touched; afterwards it is marked ``released`` or ``failed``.
  A failed computation is NOT refunded: we cannot prove nothing was
  observable. Rows are never deleted or changed except ``status`` moving from
  ``reserved`` (SQLite triggers enforce both). A row left ``reserved`` (its
  settle failed, or the process stopped between the ledger append and the
  settle) is settled at the next start-up (``gateway.ops.spent``): ``released``
  if the ledger holds its release, ``failed`` if it holds a charged refusal or,
  past ``Limits.stats_reservation_open_seconds``, nothing.
* A reservation whose request id was already used is refused (replay).
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, Protocol

from gateway.errors import BudgetExhausted, InvalidArgument, ReplayRejected, StorageFailure

EPS_UNIT = 10**9  # epsilon units per 1.0
DELTA_UNIT = 10**18  # delta units per 1.0


def _written(x: float) -> Fraction:
    """The shortest decimal that reads back as ``x`` (``repr``), exactly."""
    return Fraction(repr(x))


def eps_charge_units(epsilon: float) -> int:
    """Epsilon to charge, in integer units, rounded UP (exactly: never below
    the decimal epsilon by any amount): any epsilon > 0 costs at least one unit
    (rounding it to 0 would release for free, and every store refuses a 0-unit
    spend)."""
    if not math.isfinite(epsilon) or epsilon <= 0:
        raise InvalidArgument.expected("epsilon", "a finite number > 0", epsilon)
    return max(1, math.ceil(_written(epsilon) * EPS_UNIT))


def eps_loss_bound(epsilon: float) -> float:
    """The privacy loss a release charged ``eps_charge_units(epsilon)`` may
    have: the largest float that is at most both ``epsilon`` and the charged
    units exactly (e.g. the float just below 0.1, as the float 0.1 is
    0.1000000000000000055...). The engine calibrates noise to it, so what is
    charged is never below what is spent."""
    units = eps_charge_units(epsilon)
    bound = units / EPS_UNIT  # correctly rounded; may be above the exact quotient
    if Fraction(bound) > Fraction(units, EPS_UNIT):
        bound = math.nextafter(bound, 0.0)
    return min(epsilon, bound)


def eps_cap_units(epsilon: float) -> int:
    """A declared epsilon cap in integer units, rounded DOWN (exactly)."""
    return math.floor(_written(epsilon) * EPS_UNIT)


def delta_charge_units(delta: float) -> int:
    """Delta to charge, in integer units: the float's exact value rounded UP."""
    if not math.isfinite(delta) or not 0 <= delta < 1:
        raise InvalidArgument.expected("delta", "a number in [0, 1)", delta)
    return math.ceil(Fraction(delta) * DELTA_UNIT)


def delta_cap_units(delta: float) -> int:
    """A declared delta cap in integer units, rounded DOWN (exactly)."""
    return math.floor(_written(delta) * DELTA_UNIT)


@dataclass(frozen=True)
class Caps:
    """Budget caps for one dataset (from the statistics agreement)."""

    epsilon_per_requester: float
    epsilon_total: float
    delta_per_requester: float = 0.0
    delta_total: float = 0.0


@dataclass(frozen=True)
class Usage:
    """Spent units for one requester on one dataset, and for the whole dataset."""

    requester_eps: int
    total_eps: int
    requester_delta: int
    total_delta: int

    def after(self, eps_units: int, delta_units: int) -> Usage:
        """Usage once one more charge (same requester) is recorded."""
        return Usage(
            self.requester_eps + eps_units,
            self.total_eps + eps_units,
            self.requester_delta + delta_units,
            self.total_delta + delta_units,
        )

    def remaining(self, caps: Caps) -> tuple[float, float]:
        """(requester epsilon remaining, dataset epsilon remaining), never below 0."""
        req = max(0, eps_cap_units(caps.epsilon_per_requester) - self.requester_eps)
        tot = max(0, eps_cap_units(caps.epsilon_total) - self.total_eps)
        return req / EPS_UNIT, tot / EPS_UNIT


def check_charge(usage: Usage, eps_units: int, delta_units: int, caps: Caps, what: str) -> None:
    """Raise BudgetExhausted if charging would exceed any cap (pure)."""
    req_left = eps_cap_units(caps.epsilon_per_requester) - usage.requester_eps
    tot_left = eps_cap_units(caps.epsilon_total) - usage.total_eps
    if eps_units > req_left or eps_units > tot_left:
        r_req, r_tot = usage.remaining(caps)
        raise BudgetExhausted(
            f"privacy budget exhausted for {what}: query needs epsilon "
            f"{eps_units / EPS_UNIT:g}, remaining epsilon {min(r_req, r_tot):g} "
            f"(requester {r_req:g} of {caps.epsilon_per_requester:g}, "
            f"dataset {r_tot:g} of {caps.epsilon_total:g})"
        )
    dreq_left = delta_cap_units(caps.delta_per_requester) - usage.requester_delta
    dtot_left = delta_cap_units(caps.delta_total) - usage.total_delta
    if delta_units > dreq_left or delta_units > dtot_left:
        raise BudgetExhausted(
            f"privacy budget exhausted for {what}: query needs delta "
            f"{delta_units / DELTA_UNIT:g}, remaining delta "
            f"{max(0, min(dreq_left, dtot_left)) / DELTA_UNIT:g}"
        )


@dataclass(frozen=True)
class Spend:
    dataset: str
    requester: str  # "<jurisdiction>/<service system>"
    epsilon: float
    delta: float
    request_id: str
    query_digest: str
    at_ms: int


@dataclass(frozen=True)
class SpendRow:
    dataset: str
    requester: str
    epsilon: float
    delta: float
    request_id: str
    query_digest: str
    at_ms: int
    status: str


@dataclass(frozen=True)
class UsageRow:
    dataset: str
    requester: str
    epsilon: float
    delta: float
    releases: int


Status = Literal["released", "failed"]


class BudgetStore(Protocol):
    def reserve(self, spend: Spend, caps: Caps) -> Usage:
        """Atomically check the caps and record the spend; return usage AFTER it.

        Raises BudgetExhausted (nothing recorded) or ReplayRejected."""
        ...

    def settle(self, request_id: str, status: Status) -> None:
        """Mark a reservation released or failed (it stays counted either way)."""
        ...

    def usage(self, dataset: str, requester: str) -> Usage: ...

    def totals(self) -> list[UsageRow]:
        """Spent per (dataset, requester), for operators."""
        ...

    def open_reservations(self) -> list[tuple[str, int]]:
        """(request id, at_ms) of every spend still ``reserved``, oldest first
        (the start-up check settles those the ledger or their age decide)."""
        ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS spends (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset TEXT NOT NULL,
    requester TEXT NOT NULL,
    epsilon_units INTEGER NOT NULL CHECK (epsilon_units > 0),
    delta_units INTEGER NOT NULL CHECK (delta_units >= 0),
    request_id TEXT NOT NULL UNIQUE,
    query_digest TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('reserved', 'released', 'failed'))
);
CREATE INDEX IF NOT EXISTS spends_by_requester ON spends (dataset, requester);
CREATE TRIGGER IF NOT EXISTS spends_no_delete BEFORE DELETE ON spends
BEGIN SELECT RAISE(ABORT, 'spends are append-only'); END;
CREATE TRIGGER IF NOT EXISTS spends_only_settle BEFORE UPDATE ON spends
WHEN OLD.status != 'reserved' OR NEW.status = 'reserved'
  OR NEW.epsilon_units != OLD.epsilon_units OR NEW.delta_units != OLD.delta_units
  OR NEW.dataset != OLD.dataset OR NEW.requester != OLD.requester
  OR NEW.request_id != OLD.request_id OR NEW.query_digest != OLD.query_digest
  OR NEW.at_ms != OLD.at_ms
BEGIN SELECT RAISE(ABORT, 'only a reservation may be settled'); END;
"""


class SpendIndex(Protocol):
    """Which spends a budget store holds, for checking it against a ledger."""

    def recorded(self, request_ids: Collection[str]) -> set[str]:
        """Those of ``request_ids`` that have a spend row (whatever its status)."""
        ...

    def newest(self) -> tuple[int, int, str]:
        """(rows, newest seq, its request id); (0, 0, "") for an empty store."""
        ...

    def request_at(self, seq: int) -> str | None:
        """The request id of spend ``seq`` (None: no such row)."""
        ...


class SqliteSpendIndex:
    """``SpendIndex`` of a ``budget.sqlite`` file, opened read-only for each
    question (a missing file holds no spends); never changes the file."""

    def __init__(self, path: Path, timeout_seconds: float = 30.0) -> None:
        self.path = path
        self._timeout = timeout_seconds

    def _rows(self, query: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        if not self.path.is_file():
            return []
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=self._timeout)
            try:
                return list(conn.execute(query, params).fetchall())
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise StorageFailure(f"budget store {self.path}: {exc}") from exc

    def recorded(self, request_ids: Collection[str]) -> set[str]:
        if not request_ids:
            return set()
        have = {str(r[0]) for r in self._rows("SELECT request_id FROM spends")}
        return have & set(request_ids)

    def newest(self) -> tuple[int, int, str]:
        count = self._rows("SELECT COUNT(*) FROM spends")
        last = self._rows("SELECT seq, request_id FROM spends ORDER BY seq DESC LIMIT 1")
        rows = int(count[0][0]) if count else 0
        if not last:
            return rows, 0, ""
        return rows, int(last[0][0]), str(last[0][1])

    def request_at(self, seq: int) -> str | None:
        row = self._rows("SELECT request_id FROM spends WHERE seq = ?", (seq,))
        return str(row[0][0]) if row else None


class SqliteBudgetStore:
    """Budget store in a real SQLite file (WAL, synchronous=FULL)."""

    def __init__(self, path: Path, timeout_seconds: float = 30.0) -> None:
        self._path = path
        self._timeout = timeout_seconds
        # Serialises this process's writers; BEGIN IMMEDIATE serialises processes.
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as conn:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StorageFailure(f"cannot open budget store {path}: {exc}") from exc

    @property
    def path(self) -> Path:
        return self._path

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self._path, timeout=self._timeout, isolation_level=None)
        try:
            conn.execute("PRAGMA synchronous=FULL")
            yield conn
        finally:
            conn.close()

    @staticmethod
    def _usage(conn: sqlite3.Connection, dataset: str, requester: str) -> Usage:
        req = conn.execute(
            "SELECT COALESCE(SUM(epsilon_units), 0), COALESCE(SUM(delta_units), 0) "
            "FROM spends WHERE dataset = ? AND requester = ?",
            (dataset, requester),
        ).fetchone()
        tot = conn.execute(
            "SELECT COALESCE(SUM(epsilon_units), 0), COALESCE(SUM(delta_units), 0) "
            "FROM spends WHERE dataset = ?",
            (dataset,),
        ).fetchone()
        return Usage(int(req[0]), int(tot[0]), int(req[1]), int(tot[1]))

    def reserve(self, spend: Spend, caps: Caps) -> Usage:
        e = eps_charge_units(spend.epsilon)
        d = delta_charge_units(spend.delta)
        with self._lock:
            try:
                with self._connect() as conn:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        usage = self._usage(conn, spend.dataset, spend.requester)
                        check_charge(usage, e, d, caps, f"{spend.requester} on {spend.dataset}")
                        conn.execute(
                            "INSERT INTO spends (dataset, requester, epsilon_units, delta_units, "
                            "request_id, query_digest, at_ms, status) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, 'reserved')",
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
                        conn.execute("COMMIT")
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
            except sqlite3.IntegrityError as exc:
                if "UNIQUE" in str(exc):
                    raise ReplayRejected(
                        f"request id {spend.request_id} already spent budget"
                    ) from exc
                raise StorageFailure(f"budget store refused the spend: {exc}") from exc
            except sqlite3.Error as exc:
                raise StorageFailure(f"budget store failed: {exc}") from exc
        return usage.after(e, d)

    def settle(self, request_id: str, status: Status) -> None:
        if status not in ("released", "failed"):
            raise InvalidArgument.expected("status", "released or failed", status)
        try:
            with self._lock, self._connect() as conn:
                cur = conn.execute(
                    "UPDATE spends SET status = ? WHERE request_id = ? AND status = 'reserved'",
                    (status, request_id),
                )
                if cur.rowcount != 1:
                    raise StorageFailure(f"no open reservation for request {request_id}")
        except sqlite3.Error as exc:
            raise StorageFailure(f"budget store failed: {exc}") from exc

    def usage(self, dataset: str, requester: str) -> Usage:
        try:
            with self._connect() as conn:
                return self._usage(conn, dataset, requester)
        except sqlite3.Error as exc:
            raise StorageFailure(f"budget store failed: {exc}") from exc

    def totals(self) -> list[UsageRow]:
        try:
            with self._connect() as conn:
                rows = conn.execute(
                    "SELECT dataset, requester, SUM(epsilon_units), SUM(delta_units), COUNT(*) "
                    "FROM spends GROUP BY dataset, requester ORDER BY dataset, requester"
                ).fetchall()
        except sqlite3.Error as exc:
            raise StorageFailure(f"budget store failed: {exc}") from exc
        return [
            UsageRow(ds, rq, int(e) / EPS_UNIT, int(d) / DELTA_UNIT, int(n))
            for ds, rq, e, d, n in rows
        ]

    def open_reservations(self) -> list[tuple[str, int]]:
        try:
            with self._connect() as conn:
                rows = conn.execute(
                    "SELECT request_id, at_ms FROM spends WHERE status = 'reserved' ORDER BY seq"
                ).fetchall()
        except sqlite3.Error as exc:
            raise StorageFailure(f"budget store failed: {exc}") from exc
        return [(str(r[0]), int(r[1])) for r in rows]

    def spends(self, limit: int = 1000) -> list[SpendRow]:
        """The most recent spend rows (operators, tests)."""
        try:
            with self._connect() as conn:
                rows = conn.execute(
                    "SELECT dataset, requester, epsilon_units, delta_units, request_id, "
                    "query_digest, at_ms, status FROM spends ORDER BY seq DESC LIMIT ?",
                    (limit,),
                ).fetchall()
        except sqlite3.Error as exc:
            raise StorageFailure(f"budget store failed: {exc}") from exc
        return [
            SpendRow(
                r[0], r[1], int(r[2]) / EPS_UNIT, int(r[3]) / DELTA_UNIT, r[4], r[5], r[6], r[7]
            )
            for r in rows
        ]


def requester_key(jurisdiction: str, service_system: str) -> str:
    return f"{jurisdiction}/{service_system}"
