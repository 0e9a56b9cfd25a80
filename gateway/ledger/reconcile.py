"""Cross-ledger receipts: pair each transfer's entries in two gateways' ledgers.

Owns: matching entries by request id between ledger A and ledger B (only the
entries each records with the other as counterparty), and reporting
transfers missing on one side or whose shared facts differ (roles, decision,
dataset, digests, both envelope signatures, ...). Pure over decoded records.

Does not own: reading ledgers (the CLI opens SQLite files or pages through a
Ledger API) or verifying their integrity (``gateway.ledger.verify``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.ledger.events import LedgerEvent

# Facts both sides must record identically for one exchange.
SHARED_FIELDS = (
    "kind",
    "service_system",
    "dataset",
    "purpose",
    "decision",
    "record_count",
    "agreement_id",
    "agreement_digest",
    "policy_set_digest",
    "payload_digest",
    "request_digest",
    "requester_signature",
    "holder_signature",
)


@dataclass(frozen=True)
class Difference:
    request_id: str
    fields: tuple[str, ...]
    index_a: int
    index_b: int


@dataclass(frozen=True)
class ReconcileReport:
    jurisdiction_a: str
    jurisdiction_b: str
    matched: int
    missing_in_a: tuple[tuple[str, int], ...]  # (request id, index in B)
    missing_in_b: tuple[tuple[str, int], ...]  # (request id, index in A)
    differing: tuple[Difference, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not (self.missing_in_a or self.missing_in_b or self.differing)


def _jurisdiction(records: list[tuple[int, LedgerEvent]]) -> str:
    locals_ = {ev.local for _, ev in records}
    return locals_.pop() if len(locals_) == 1 else ""


def _index(
    records: list[tuple[int, LedgerEvent]], other: str
) -> dict[str, list[tuple[int, LedgerEvent]]]:
    out: dict[str, list[tuple[int, LedgerEvent]]] = {}
    for i, ev in records:
        if ev.counterparty != other or ev.kind not in ("transfer", "refusal"):
            continue
        if ev.role == "requester" and not ev.holder_signature:
            # The holder never answered (down, timed out, refused before
            # authenticating): by construction there is nothing to pair with.
            continue
        out.setdefault(ev.request_id, []).append((i, ev))
    return out


def reconcile(
    a: Iterable[tuple[int, LedgerEvent]],
    b: Iterable[tuple[int, LedgerEvent]],
    jurisdiction_a: str = "",
    jurisdiction_b: str = "",
) -> ReconcileReport:
    """Compare two ledgers' (index, event) lists."""
    ra, rb = list(a), list(b)
    ja = jurisdiction_a or _jurisdiction(ra)
    jb = jurisdiction_b or _jurisdiction(rb)
    ia, ib = _index(ra, jb), _index(rb, ja)
    missing_in_b = tuple(sorted((rid, v[0][0]) for rid, v in ia.items() if rid not in ib))
    missing_in_a = tuple(sorted((rid, v[0][0]) for rid, v in ib.items() if rid not in ia))
    diffs: list[Difference] = []
    matched = 0
    for rid in sorted(set(ia) & set(ib)):
        (xa, ea), (xb, eb) = ia[rid][0], ib[rid][0]
        bad = [f for f in SHARED_FIELDS if getattr(ea, f) != getattr(eb, f)]
        if {ea.role, eb.role} != {"holder", "requester"}:
            bad.append("role")
        if ea.local != eb.counterparty or eb.local != ea.counterparty:
            bad.append("jurisdictions")
        if len(ia[rid]) != len(ib[rid]):
            bad.append("entry count")
        if bad:
            diffs.append(Difference(rid, tuple(bad), xa, xb))
        else:
            matched += 1
    return ReconcileReport(ja, jb, matched, missing_in_a, missing_in_b, tuple(diffs))
