"""The holder's ledger writer for entries that concern subjects.

Owns: ``Concerned`` (what a holder-side entry concerns: named subjects, a
whole dataset, a pseudonymised extract, a statistic) and ``SubjectIndexer``,
a ``LedgerWriter`` that, before appending, computes the blind indexes, adds
the commitment to the entry's details, and stores the index rows; after the
append it links the rows to the entry's index.

Write order. A store in the ledger's own database (PostgreSQL) hands the
rows to the ledger append as the entry's rider: written in the entry's
transaction with its index, so both are stored or neither. Otherwise (SQLite:
separate files) index rows first, then the ledger entry: if the index store
fails nothing is appended and nothing is released (the exchange fails like a
ledger failure); if the ledger append fails the rows have no entry and are
never shown (an answer only lists entries found in the ledger). Such rows are
linked to the ledger index afterwards; an unlinked row is found through the
ledger's request-id index.

Does not own: the exchange or statistics paths (they say what an entry
concerns), the store's SQL (``gateway.subject.store``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from gateway.errors import InvalidArgument, StorageFailure
from gateway.ledger.entry import validate_event
from gateway.ledger.events import AppendReceipt, LedgerEvent, RiderLedgerWriter
from gateway.limits import Limits
from gateway.subject.index import DETAIL_KEYS, Coverage, blind_index, commit, entry_details
from gateway.subject.store import IndexedEntry, SubjectIndexStore

log = logging.getLogger("gateway.subject")


@dataclass(frozen=True)
class Concerned:
    """What one holder-side entry concerns."""

    coverage: Coverage
    dataset: str
    subject_ids: tuple[str, ...] = ()  # normalised ids; named coverage only
    fields: tuple[tuple[str, str], ...] = ()  # released (field, transform)


class SubjectIndexer:
    """``LedgerWriter`` that indexes what holder entries concern, then appends them.

    ``append(event)`` without ``concerned`` indexes a holder's statistics
    release as covering its dataset, and passes every other event through."""

    def __init__(
        self, ledger: RiderLedgerWriter, store: SubjectIndexStore, key: bytes, limits: Limits
    ) -> None:
        self._ledger = ledger
        self._store = store
        self._key = key
        self._limits = limits

    def append(self, event: LedgerEvent, concerned: Concerned | None = None) -> AppendReceipt:
        if concerned is None and event.role == "holder" and event.kind == "stats_release":
            concerned = Concerned("statistics", event.dataset)
        if concerned is None:
            return self._ledger.append(event)
        if (concerned.coverage == "named") != bool(concerned.subject_ids):
            raise InvalidArgument("named coverage needs subject ids, and only it")
        indexes = [blind_index(self._key, s) for s in concerned.subject_ids]
        commitment = commit(indexes) if indexes else None
        extra = entry_details(concerned.coverage, commitment, concerned.fields)
        if any(k in DETAIL_KEYS for k, _ in event.details):
            raise InvalidArgument("event details already carry subject-access keys")
        event = replace(event, details=tuple(sorted((*event.details, *extra))))
        validate_event(event, self._limits)  # refuse before any row is written
        entry = IndexedEntry(
            request_id=event.request_id,
            coverage=concerned.coverage,
            dataset=concerned.dataset,
            fields=concerned.fields,
            recorded_ms=event.timestamp_ms,
        )
        rider = self._store.rider(entry, indexes)
        if rider is not None:  # written with the entry, linked
            return self._ledger.append(event, rider)
        self._store.record(entry, indexes)
        receipt = self._ledger.append(event)
        try:
            self._store.link(event.request_id, receipt.index)
        except StorageFailure as exc:  # found through the ledger's request-id index instead
            log.warning("subject index row of entry %d not linked: %s", receipt.index, exc)
        return receipt
