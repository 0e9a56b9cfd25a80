"""The access history a person is shown, and how answers merge into it.

Owns: ``AccessItem`` (one verified access to a person's data at one holder),
``JurisdictionResult`` (what each jurisdiction asked did: answered, missing,
not participating, failed verification), ``AccessHistory`` and ``merge``,
which orders every verified item by time across jurisdictions. Frozen values,
no I/O.

Does not own: verification (``gateway.subject.verify``) or protobuf
(``gateway.server.servicers.subject``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from gateway.subject.index import Coverage

# What an access was, as the person is told.
ItemKind = Literal[
    "records", "refusal", "bulk_dataset", "bulk_pseudonymised", "bulk_refusal", "statistics"
]
Status = Literal["answered", "missing", "not_participating", "failed_verification"]
STATUSES: Final = ("answered", "missing", "not_participating", "failed_verification")


def item_kind(coverage: Coverage, entry_kind: str) -> ItemKind:
    """The kind shown for an entry of ``entry_kind`` with ``coverage``."""
    refused = entry_kind in ("refusal", "stats_refusal")
    if coverage == "named":
        return "refusal" if refused else "records"
    if coverage == "statistics":
        return "statistics"
    if refused:
        return "bulk_refusal"
    return "bulk_dataset" if coverage == "dataset" else "bulk_pseudonymised"


@dataclass(frozen=True)
class AccessItem:
    timestamp_ms: int
    holder: str
    requester: str
    service_system: str
    dataset: str
    purpose: str
    legal_basis: str
    fields: tuple[tuple[str, str], ...]
    agreement_id: str
    kind: ItemKind
    reason: str
    record_count: int
    request_id: str
    entry_index: int
    entry_hash: str
    tree_size: int
    cosigned_by: tuple[str, ...]


@dataclass(frozen=True)
class JurisdictionResult:
    jurisdiction: str
    name: str
    status: Status
    reason: str = ""
    items: tuple[AccessItem, ...] = ()
    truncated: bool = False


@dataclass(frozen=True)
class AccessHistory:
    request_id: str
    items: tuple[AccessItem, ...]
    jurisdictions: tuple[JurisdictionResult, ...]

    @property
    def complete(self) -> bool:
        """Every jurisdiction asked answered (or declared it does not take part)."""
        return all(
            j.status in ("answered", "not_participating") and not j.truncated
            for j in self.jurisdictions
        )


def merge(request_id: str, results: Iterable[JurisdictionResult]) -> AccessHistory:
    """One time-ordered history from every jurisdiction's result. Only answered
    jurisdictions contribute items; the others are listed with their reason."""
    ordered = tuple(sorted(results, key=lambda r: r.jurisdiction))
    items = [i for r in ordered if r.status == "answered" for i in r.items]
    items.sort(key=lambda i: (i.timestamp_ms, i.holder, i.entry_index))
    return AccessHistory(request_id, tuple(items), ordered)
