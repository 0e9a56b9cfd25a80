"""Decoded ledger entries for people: one flat, JSON-ready record per entry, and filters.

Owns: turning an entry's canonical bytes into a ``ShownEntry`` (every field of
the event with readable names, the time in UTC and China Standard Time, the
details as a mapping), and the ``EntryFilter`` an officer narrows a ledger with
(time range, counterparty, dataset, kind, role, request id). Pure: callers
read entries (``gateway ledger show``, the HTML audit report) and print.

Does not own: reading ledgers, verifying them (``gateway.ledger.verify``), or
output formats (the CLI prints a table or JSON lines).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from gateway.ledger.entry import decode_entry
from gateway.ledger.events import LedgerEvent
from gateway.limits import DEFAULT_LIMITS, Limits

CST = _dt.timezone(_dt.timedelta(hours=8), "CST")


@dataclass(frozen=True)
class ShownEntry:
    """One entry as an officer reads it."""

    index: int
    time_utc: str  # ISO 8601
    time_cst: str  # ISO 8601, UTC+8
    event: LedgerEvent

    def to_json(self) -> dict[str, Any]:
        """Every field, flat; details as an object."""
        ev = asdict(self.event)
        ev["details"] = dict(self.event.details)
        return {"index": self.index, "time_utc": self.time_utc, "time_cst": self.time_cst, **ev}


def _iso(ms: int, tz: _dt.tzinfo) -> str:
    return _dt.datetime.fromtimestamp(ms / 1000, tz).isoformat(timespec="milliseconds")


def shown(index: int, entry: bytes, limits: Limits = DEFAULT_LIMITS) -> ShownEntry:
    """Decode one entry's bytes (raises InvalidArgument if they are not a valid entry)."""
    ev = decode_entry(entry, limits).event
    return ShownEntry(index, _iso(ev.timestamp_ms, _dt.UTC), _iso(ev.timestamp_ms, CST), ev)


@dataclass(frozen=True)
class EntryFilter:
    """What to keep; every criterion given must match (None: any)."""

    since_ms: int | None = None  # inclusive
    until_ms: int | None = None  # exclusive
    counterparty: str | None = None
    dataset: str | None = None
    kind: str | None = None
    role: str | None = None
    request_id: str | None = None

    def matches(self, ev: LedgerEvent) -> bool:
        return (
            (self.since_ms is None or ev.timestamp_ms >= self.since_ms)
            and (self.until_ms is None or ev.timestamp_ms < self.until_ms)
            and (self.counterparty is None or ev.counterparty == self.counterparty)
            and (self.dataset is None or ev.dataset == self.dataset)
            and (self.kind is None or ev.kind == self.kind)
            and (self.role is None or ev.role == self.role)
            and (self.request_id is None or ev.request_id == self.request_id)
        )


def shown_entries(
    rows: Iterable[tuple[int, bytes]],
    where: EntryFilter = EntryFilter(),
    limits: Limits = DEFAULT_LIMITS,
) -> Iterator[ShownEntry]:
    """Decode ``(index, entry bytes)`` rows and keep those ``where`` matches."""
    for index, entry in rows:
        s = shown(index, entry, limits)
        if where.matches(s.event):
            yield s
