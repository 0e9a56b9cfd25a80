"""What a ledger shows as spent, and whether the budget and quota stores cover it.

Owns: the rule a restore and a starting gateway enforce so that privacy budget
or quota already spent can never be reopened: every statistics release (and
every refusal that was charged) the holder's ledger records must have its
spend, by request id, in the budget store; and for each requester, service
system and dataset, the quota store must show at least as many units charged
on the last two UTC days as the ledger's transfers were charged (an entry's
``quota_charged``: the distinct subjects a named request asked for; else,
for bulk and streamed transfers, its record count). Also the
start-up cover (``BudgetCover``) that lets a restart read only new entries.
At start-up, spends left ``reserved`` are settled from what the ledger shows
(``settle_open_reservations``). The rule reads the stores through small Protocols (``LedgerStore``,
``SpendIndex``, ``QuotaCounts``), so a gateway on PostgreSQL checks the shared
database at start-up just as one on SQLite checks its files; a backup folder's
files are read read-only (``check_stores_cover_ledger``).

Does not own: the stores' formats (``gateway.stats.budget``,
``gateway.policy.quota``, ``gateway.ledger``) or taking backups
(``gateway.ops.backup``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from gateway.errors import StorageFailure, VerificationFailed
from gateway.ledger.entry import decode_entry
from gateway.ledger.events import QUOTA_CHARGED, LedgerEvent
from gateway.ledger.storage import EntryRow, LedgerStore, SqliteLedgerStore
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.policy.quota import QuotaKey
from gateway.stats.budget import SpendIndex, SqliteSpendIndex, Status

DAY_MS: Final = 86_400_000
QUOTA_DAYS: Final = 2


class QuotaCounts(Protocol):
    """What the check reads of a quota store (every ``QuotaStore`` has it)."""

    def used(self, key: QuotaKey) -> int: ...


class SqliteQuotaCounts:
    """``QuotaCounts`` of a ``quota.sqlite`` file, read-only (missing: nothing used)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def used(self, key: QuotaKey) -> int:
        if not self.path.is_file():
            return 0
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30.0)
            try:
                row = conn.execute(
                    "SELECT used FROM quota_usage WHERE holder = ? AND dataset = ? AND "
                    "requester = ? AND service_system = ? AND day = ?",
                    (key.holder, key.dataset, key.requester, key.service_system, key.day),
                ).fetchone()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise StorageFailure(f"quota store {self.path}: {exc}") from exc
        return int(row[0]) if row else 0


@dataclass(frozen=True)
class Shortfall:
    """A store shows less spent than the ledger: restoring it would reopen budget."""

    store: str  # "budget" or "quota"
    what: str  # dataset / requester / service system (and day for quotas)
    ledger_shows: str
    store_has: str

    def __str__(self) -> str:
        return (
            f"{self.store} store: {self.what}: the ledger shows {self.ledger_shows} spent, "
            f"the store only {self.store_has}"
        )


def _rows_from(store: LedgerStore, start: int, page: int = 10_000) -> Iterator[EntryRow]:
    size = store.size()
    for a in range(start, size, page):
        yield from store.entries(a, min(size, a + page))


def _holder_events(
    store: LedgerStore, local: str, kinds: bytes, start: int, limits: Limits
) -> Iterable[LedgerEvent]:
    for row in _rows_from(store, start):
        if kinds not in row.entry:  # cheap filter before decoding
            continue
        event = decode_entry(row.entry, limits).event
        if event.role == "holder" and event.local == local:
            yield event


def _charged(event: LedgerEvent) -> bool:
    if event.kind == "stats_release":
        return True
    return event.kind == "stats_refusal" and dict(event.details).get("charged") == "true"


def quota_charged(event: LedgerEvent) -> int:
    """The units a holder's transfer entry charged to the daily quota: what it
    records as ``quota_charged``, else (bulk and streamed transfers, entries
    written before named requests were charged per subject asked) its record count."""
    given = dict(event.details).get(QUOTA_CHARGED, "")
    if given.isascii() and given.isdigit():
        return int(given)
    return event.record_count


def budget_shortfalls(
    ledger: LedgerStore,
    local: str,
    spends: SpendIndex,
    start: int = 0,
    limits: Limits = DEFAULT_LIMITS,
) -> list[Shortfall]:
    """Statistics spends the ledger records (from entry ``start`` on) that the budget store lacks."""
    need: dict[str, tuple[str, str, float]] = {}
    for e in _holder_events(ledger, local, b"stats_", start, limits):
        if _charged(e):
            eps = float(dict(e.details).get("epsilon", "0") or 0)
            need[e.request_id] = (e.dataset, f"{e.counterparty}/{e.service_system}", eps)
    if not need:
        return []
    have = spends.recorded(list(need))
    missing: dict[tuple[str, str], list[float]] = defaultdict(list)
    for rid, (dataset, requester, eps) in need.items():
        if rid not in have:
            missing[(dataset, requester)].append(eps)
    return [
        Shortfall(
            "budget",
            f"dataset {ds}, requester {rq}",
            f"{len(eps)} more release(s) (epsilon {sum(eps):g})",
            "no record of them",
        )
        for (ds, rq), eps in sorted(missing.items())
    ]


def quota_shortfalls(
    ledger: LedgerStore,
    local: str,
    quota: QuotaCounts,
    now_ms: int,
    limits: Limits = DEFAULT_LIMITS,
) -> list[Shortfall]:
    """Quota charged on recent days (by the ledger) above what the quota store counts."""
    since = now_ms - QUOTA_DAYS * DAY_MS
    days = sorted(
        {
            dt.datetime.fromtimestamp((now_ms - k * DAY_MS) / 1000, dt.UTC).date().isoformat()
            for k in range(QUOTA_DAYS + 1)
        }
    )
    shown: dict[tuple[str, str, str], int] = defaultdict(int)
    for row in ledger.entries_between(since, now_ms + DAY_MS, limit=10_000_000):
        if b"transfer" not in row.entry:
            continue
        e = decode_entry(row.entry, limits).event
        if e.role == "holder" and e.local == local and e.kind == "transfer":
            shown[(e.dataset, e.counterparty, e.service_system)] += quota_charged(e)
    if not shown:
        return []
    counted = {
        (ds, rq, ss): sum(quota.used(QuotaKey(local, ds, rq, ss, day)) for day in days)
        for ds, rq, ss in shown
    }
    return [
        Shortfall(
            "quota",
            f"dataset {ds}, requester {rq}/{ss}, UTC days {days[0]}..{days[-1]}",
            f"{n} quota units",
            f"{counted.get((ds, rq, ss), 0)}",
        )
        for (ds, rq, ss), n in sorted(shown.items())
        if counted.get((ds, rq, ss), 0) < n
    ]


def check_stores_cover_ledger(
    ledger_db: Path,
    local: str,
    budget_db: Path,
    quota_db: Path,
    now_ms: int,
    limits: Limits = DEFAULT_LIMITS,
) -> list[Shortfall]:
    """Every shortfall of the budget and quota stores against the ledger (empty: consistent)."""
    if not ledger_db.is_file():
        return []
    store = SqliteLedgerStore(ledger_db, readonly=True)
    try:
        return budget_shortfalls(
            store, local, SqliteSpendIndex(budget_db), 0, limits
        ) + quota_shortfalls(store, local, SqliteQuotaCounts(quota_db), now_ms, limits)
    finally:
        store.close()


# --------------------------------------------------------------------------
# Start-up: the same rule, without re-reading a long ledger every time
# --------------------------------------------------------------------------

COVER_FILE: Final = "budget_cover.json"


@dataclass(frozen=True)
class BudgetCover:
    """At the last good start-up: the ledger's first ``ledger_size`` entries (with
    this root) had every spend in the budget store, whose newest row was
    (``last_seq``, ``last_request_id``) of ``rows``.

    Spends are append-only (the store's triggers refuse deletes), so a budget
    store that still holds that newest row and at least that many rows holds
    every spend it held then; only later entries need reading. A budget file
    swapped for an older copy fails that test and the whole ledger is read.
    """

    ledger_size: int
    ledger_root: str
    rows: int
    last_seq: int
    last_request_id: str


def _still_holds(spends: SpendIndex, cover: BudgetCover) -> bool:
    if cover.rows == 0:
        return True
    try:
        rows, _, _ = spends.newest()
        return spends.request_at(cover.last_seq) == cover.last_request_id and rows >= cover.rows
    except StorageFailure:
        return False


def _root(store: LedgerStore, size: int) -> str:
    from gateway.ledger.merkle import fold, prefix_nodes

    return fold(store.nodes(prefix_nodes(size))).hex() if size else ""


def _read_cover(path: Path) -> BudgetCover | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return BudgetCover(
            int(doc["ledger_size"]),
            str(doc["ledger_root"]),
            int(doc["rows"]),
            int(doc["last_seq"]),
            str(doc["last_request_id"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def startup_shortfalls(
    ledger: LedgerStore,
    spends: SpendIndex,
    quota: QuotaCounts,
    cover_path: Path,
    local: str,
    now_ms: int,
    limits: Limits = DEFAULT_LIMITS,
) -> list[Shortfall]:
    """The start-up check: budget and quota stores against the ledger.

    Reads only the entries after the last good start-up's cover (see
    ``BudgetCover``, kept at ``cover_path``) when the ledger still extends it
    and the budget store still descends from the one checked then; otherwise
    the whole ledger. Records a new cover when nothing is short.
    """
    size = ledger.size()
    if size == 0:
        return []
    start = 0
    cover = _read_cover(cover_path)
    if (
        cover is not None
        and 0 < cover.ledger_size <= size
        and _root(ledger, cover.ledger_size) == cover.ledger_root
        and _still_holds(spends, cover)
    ):
        start = cover.ledger_size
    found = budget_shortfalls(ledger, local, spends, start, limits) + quota_shortfalls(
        ledger, local, quota, now_ms, limits
    )
    if not found:
        rows, last_seq, last_rid = spends.newest()
        fresh = BudgetCover(size, _root(ledger, size), rows, last_seq, last_rid)
        # Replicas may share a data folder: each writes its own temporary file.
        tmp = cover_path.with_name(f".{cover_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(fresh.__dict__), encoding="utf-8")
        os.replace(tmp, cover_path)
    return found


class OpenReservations(Protocol):
    """What settling left-over reservations needs of a budget store (every
    ``BudgetStore`` has it)."""

    def open_reservations(self) -> list[tuple[str, int]]: ...

    def settle(self, request_id: str, status: Status) -> None: ...


@dataclass(frozen=True)
class Settled:
    """Reservations left ``reserved`` that the start-up settled."""

    released: int  # the ledger holds their release
    failed: int  # the ledger holds a charged refusal, or nothing and they are old

    def __str__(self) -> str:
        return f"{self.released} marked released, {self.failed} marked failed"


def settle_open_reservations(
    ledger: LedgerStore,
    local: str,
    budget: OpenReservations,
    now_ms: int,
    limits: Limits = DEFAULT_LIMITS,
) -> Settled:
    """Settle every spend left ``reserved`` (its settle failed after the
    release was ledgered, or the process stopped between the append and the
    settle): ``released`` if this holder's ledger holds its ``stats_release``,
    ``failed`` if it holds a charged refusal, or nothing and the reservation is
    older than ``limits.stats_reservation_open_seconds`` (a request still in
    progress on a replica is left alone). Either way the spend stays counted
    (a settle only changes its status). A row another replica settled first
    is skipped."""
    open_rows = budget.open_reservations()
    if not open_rows:
        return Settled(0, 0)
    ledgered: dict[str, Status] = {}
    for row in ledger.find_requests([rid for rid, _ in open_rows]):
        e = decode_entry(row.entry, limits).event
        if e.role != "holder" or e.local != local:
            continue
        if e.kind == "stats_release":
            ledgered[e.request_id] = "released"
        elif _charged(e):
            ledgered.setdefault(e.request_id, "failed")
    stale_before = now_ms - int(limits.stats_reservation_open_seconds * 1000)
    released = failed = 0
    for rid, at_ms in open_rows:
        status = ledgered.get(rid) or ("failed" if at_ms < stale_before else None)
        if status is None:
            continue
        try:
            budget.settle(rid, status)
        except StorageFailure:
            continue  # settled meanwhile (another replica); it stays counted either way
        if status == "released":
            released += 1
        else:
            failed += 1
    return Settled(released, failed)


SQLITE_HINT: Final = (
    "Restore the budget.sqlite and quota.sqlite taken with (or after) this ledger; "
    "`gateway backup` takes them together"
)
POSTGRES_HINT: Final = (
    "Restore the whole schema from one snapshot taken with (or after) this ledger "
    "(pg_dump -n <schema>), never the spends or quota_usage table on its own"
)


QUOTA_STARTUP_HINT: Final = (
    "If no store was restored, a quota shortfall means a charge was given back after a "
    "ledger append that reported failure yet was stored (a PostgreSQL commit whose outcome "
    "is unknown keeps its charge, logged as 'the commit's outcome is unknown'): the ledger "
    "is right, so with the gateway stopped raise that day's quota_usage row (holder, "
    "dataset, requester, service_system, day) to the units the ledger shows; only the last "
    "two UTC days are checked"
)


def refuse_shortfalls(
    shortfalls: list[Shortfall], where: str, hint: str = SQLITE_HINT, quota_hint: str = ""
) -> None:
    """Raise VerificationFailed listing ``shortfalls`` (if any) with ``hint``;
    ``quota_hint`` is added when a quota store is short."""
    if shortfalls:
        listed = "; ".join(str(s) for s in shortfalls[:5])
        more = f" (and {len(shortfalls) - 5} more)" if len(shortfalls) > 5 else ""
        if quota_hint and any(s.store == "quota" for s in shortfalls):
            hint = f"{hint}. {quota_hint}"
        raise VerificationFailed(
            f"{where}: privacy budget or quota would be reopened: {listed}{more}. {hint}"
        )
