"""What the audit report shows, computed from decoded ledger entries (pure).

Owns: de-duplicating the two sides of an exchange (each is recorded by the
requester and by the holder: the holder's entry is taken when both ledgers
are given), counting exchanges by day, jurisdiction pair, dataset, purpose
and outcome, grouping refusals by reason, and the privacy budget spent over
time per holder, dataset and requester (from the holders' own entries,
which are what the budget store charges).

Days are China Standard Time (UTC+8), the time zone agreements are written in.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gateway.ledger.events import LedgerEvent
from gateway.ledger.show import CST

OUTCOMES = ("transfer", "refusal", "stats_release", "stats_refusal")
_VOLATILE = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32,}|\b\d+(?:\.\d+)?\b"
)


@dataclass(frozen=True)
class Entry:
    """One decoded entry of one ledger."""

    ledger: str  # jurisdiction whose ledger holds it
    index: int
    event: LedgerEvent


@dataclass(frozen=True)
class Exchange:
    """One request as the report counts it (one of its two ledger entries)."""

    request_id: str
    kind: str
    requester: str
    holder: str
    dataset: str
    purpose: str
    reason: str
    record_count: int
    timestamp_ms: int

    @property
    def day(self) -> str:
        return cst_day(self.timestamp_ms)

    @property
    def pair(self) -> str:
        return f"{self.requester}→{self.holder}"


def cst_day(timestamp_ms: int) -> str:
    return dt.datetime.fromtimestamp(timestamp_ms / 1000, CST).date().isoformat()


def cst_time(timestamp_ms: int) -> str:
    return dt.datetime.fromtimestamp(timestamp_ms / 1000, CST).strftime("%Y-%m-%d %H:%M:%S")


def exchanges(entries: Iterable[Entry]) -> list[Exchange]:
    """One ``Exchange`` per (request id, kind, holder): the holder's entry when present.

    Only the outcome kinds count; other entry kinds (acknowledgements, say)
    appear in the report's table but are not exchanges."""
    chosen: dict[tuple[str, str, str], LedgerEvent] = {}
    for e in entries:
        ev = e.event
        if ev.kind not in OUTCOMES:  # e.g. receipts: shown in the table, not exchanges
            continue
        holder = ev.local if ev.role == "holder" else ev.counterparty
        key = (ev.request_id, ev.kind, holder)
        if key not in chosen or ev.role == "holder":
            chosen[key] = ev
    out = []
    for (rid, kind, holder), ev in chosen.items():
        requester = ev.counterparty if ev.role == "holder" else ev.local
        out.append(
            Exchange(
                rid,
                kind,
                requester,
                holder,
                ev.dataset,
                ev.purpose,
                ev.reason,
                ev.record_count,
                ev.timestamp_ms,
            )
        )
    out.sort(key=lambda x: (x.timestamp_ms, x.request_id))
    return out


@dataclass(frozen=True)
class Breakdown:
    """Counts per category and outcome, categories in first-seen-by-volume order."""

    categories: tuple[str, ...]
    counts: dict[str, dict[str, int]]  # outcome -> category -> count

    def total(self, category: str) -> int:
        return sum(c.get(category, 0) for c in self.counts.values())


def breakdown(items: Sequence[Exchange], by: str, sort_by_name: bool = False) -> Breakdown:
    counts: dict[str, Counter[str]] = {o: Counter() for o in OUTCOMES}
    total: Counter[str] = Counter()
    for x in items:
        cat = str(getattr(x, by))
        counts[x.kind][cat] += 1
        total[cat] += 1
    cats = sorted(total) if sort_by_name else [c for c, _ in total.most_common()]
    return Breakdown(tuple(cats), {o: dict(c) for o, c in counts.items()})


def reason_category(reason: str, width: int = 80) -> str:
    """Group refusal reasons that differ only in ids, digests and numbers."""
    text = _VOLATILE.sub("…", reason).strip() or "(no reason given)"
    return text if len(text) <= width else text[: width - 1] + "…"


def refusals_by_reason(items: Sequence[Exchange]) -> list[tuple[str, int]]:
    c: Counter[str] = Counter(
        reason_category(x.reason) for x in items if x.kind in ("refusal", "stats_refusal")
    )
    return c.most_common()


@dataclass(frozen=True)
class BudgetSeries:
    holder: str
    dataset: str
    requester: str  # jurisdiction/service system
    points: tuple[tuple[int, float], ...]  # (timestamp_ms, cumulative epsilon)

    @property
    def label(self) -> str:
        return f"{self.holder} {self.dataset} ← {self.requester}"

    @property
    def spent(self) -> float:
        return self.points[-1][1] if self.points else 0.0


def budget_series(entries: Iterable[Entry]) -> list[BudgetSeries]:
    """Cumulative epsilon charged by each holder, per dataset and requester, over time."""
    spends: dict[tuple[str, str, str], list[tuple[int, float]]] = defaultdict(list)
    seen: set[tuple[str, str]] = set()
    for e in entries:
        ev = e.event
        if ev.role != "holder" or ev.local != e.ledger:
            continue
        d = dict(ev.details)
        charged = ev.kind == "stats_release" or (
            ev.kind == "stats_refusal" and d.get("charged") == "true"
        )
        if not charged or (ev.local, ev.request_id) in seen:
            continue
        seen.add((ev.local, ev.request_id))
        try:
            eps = float(d.get("epsilon", "0"))
        except ValueError:
            continue
        key = (ev.local, ev.dataset, f"{ev.counterparty}/{ev.service_system}")
        spends[key].append((ev.timestamp_ms, eps))
    out = []
    for (holder, dataset, requester), pts in sorted(spends.items()):
        pts.sort()
        total, cumulative = 0.0, []
        for t, eps in pts:
            total += eps
            cumulative.append((t, total))
        out.append(BudgetSeries(holder, dataset, requester, tuple(cumulative)))
    return out


@dataclass(frozen=True)
class Summary:
    exchanges: int
    by_outcome: dict[str, int]
    records_released: int
    first_ms: int | None
    last_ms: int | None
    jurisdictions: tuple[str, ...] = field(default_factory=tuple)


def summary(items: Sequence[Exchange]) -> Summary:
    by = Counter(x.kind for x in items)
    js = sorted({x.requester for x in items} | {x.holder for x in items})
    return Summary(
        len(items),
        {o: by.get(o, 0) for o in OUTCOMES},
        sum(x.record_count for x in items if x.kind == "transfer"),
        items[0].timestamp_ms if items else None,
        items[-1].timestamp_ms if items else None,
        tuple(js),
    )
