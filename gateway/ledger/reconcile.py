"""Cross-ledger reconciliation: classify every exchange between two gateways' ledgers.

Owns: pairing, by request id, the holder's and the requester's entries of each
exchange (records and statistics alike) between ledger A and ledger B, and
classifying each one:

* **matched**: both sides recorded it and every shared fact agrees (kinds,
  service system, dataset, purpose, decision, counts, agreement id and digest,
  policy-set digest, legal basis, approval id, payload, request and response
  digests and both signatures);
* **released but unacknowledged**: the holder answered (released or refused)
  and the requester has no entry carrying the holder's signature, for a reason
  the ledgers tell: the requester recorded the exchange as failed (connection
  reset, timeout), or it has no entry at all (it stopped before ledgering:
  requester lost). Not an error: the holder's entry and signature stand;
* **true discrepancy** (the only error): the two entries differ; the requester
  holds the holder's signed answer that the holder's ledger lacks; or the
  holder holds the requester's signed receipt for an exchange the requester's
  ledger lacks.

Receipts (kind ``receipt`` in the holder's ledger: the requester's signed
acknowledgement) count towards the match. Pure over decoded records.

Does not own: reading ledgers (the CLI opens SQLite files or pages through a
Ledger API) or verifying their integrity (``gateway.ledger.verify``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.ledger.events import LedgerEvent

EXCHANGE_KINDS = ("transfer", "refusal", "stats_release", "stats_refusal")
RELEASES = ("transfer", "stats_release")
FAILED_PREFIX = "exchange failed: "

# Facts both sides must record identically for one answered exchange.
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
    "legal_basis",
    "approval_id",
    "payload_digest",
    "request_digest",
    "response_digest",
    "requester_signature",
    "holder_signature",
)
# What a requester knows of an exchange whose answer it never received intact.
UNANSWERED_FIELDS = ("service_system", "dataset", "purpose")


@dataclass(frozen=True)
class Difference:
    request_id: str
    fields: tuple[str, ...]
    index_a: int
    index_b: int


@dataclass(frozen=True)
class Unacknowledged:
    """The holder answered; the requester's ledger has no acknowledged answer."""

    request_id: str
    holder: str  # the jurisdiction whose ledger holds the answer
    index: int  # the holder's entry
    kind: str  # what the holder recorded (a release or a refusal)
    reason: str  # what the ledgers tell about why


@dataclass(frozen=True)
class ReconcileReport:
    jurisdiction_a: str
    jurisdiction_b: str
    matched: int
    missing_in_a: tuple[tuple[str, int], ...]  # (request id, index in B): discrepancies
    missing_in_b: tuple[tuple[str, int], ...]  # (request id, index in A): discrepancies
    differing: tuple[Difference, ...] = field(default_factory=tuple)
    unacknowledged: tuple[Unacknowledged, ...] = field(default_factory=tuple)
    receipts: int = 0  # matched exchanges whose receipt the holder ledgered

    @property
    def ok(self) -> bool:
        """Only true discrepancies are errors."""
        return not (self.missing_in_a or self.missing_in_b or self.differing)

    @property
    def discrepancies(self) -> int:
        return len(self.missing_in_a) + len(self.missing_in_b) + len(self.differing)


def _jurisdiction(records: list[tuple[int, LedgerEvent]]) -> str:
    locals_ = {ev.local for _, ev in records}
    return locals_.pop() if len(locals_) == 1 else ""


@dataclass
class _Side:
    """One ledger's entries about exchanges with one other jurisdiction."""

    held: dict[str, list[tuple[int, LedgerEvent]]] = field(default_factory=dict)  # as holder
    asked: dict[str, list[tuple[int, LedgerEvent]]] = field(default_factory=dict)  # requester
    receipts: dict[str, LedgerEvent] = field(default_factory=dict)  # request id -> receipt


def _side(records: list[tuple[int, LedgerEvent]], other: str) -> _Side:
    s = _Side()
    for i, ev in records:
        if ev.counterparty != other:
            continue
        if ev.kind == "receipt":
            if ev.role == "holder":
                s.receipts.setdefault(ev.request_id, ev)
            continue
        if ev.kind not in EXCHANGE_KINDS:
            continue
        book = s.held if ev.role == "holder" else s.asked
        book.setdefault(ev.request_id, []).append((i, ev))
    return s


def _why_unacknowledged(asked: tuple[int, LedgerEvent] | None) -> str:
    if asked is None:
        return (
            "requester lost: no entry in the requester's ledger (it stopped, e.g. crashed, "
            "before ledgering the answer)"
        )
    reason = asked[1].reason
    what = reason[len(FAILED_PREFIX) :] if reason.startswith(FAILED_PREFIX) else reason
    return (
        f"connection reset or timeout: the requester recorded the exchange as failed "
        f"(entry {asked[0]}: {what})"
    )


@dataclass
class _Findings:
    matched: int = 0
    receipts: int = 0
    differing: list[Difference] = field(default_factory=list)
    unacknowledged: list[Unacknowledged] = field(default_factory=list)
    missing_in_requester: list[tuple[str, int]] = field(default_factory=list)
    missing_in_holder: list[tuple[str, int]] = field(default_factory=list)


def _pair(holder_j: str, holder: _Side, requester: _Side, holder_is_a: bool) -> _Findings:
    """Classify the exchanges ``holder_j`` answered (or was asked) for the other side."""
    out = _Findings()
    for rid in sorted(set(holder.held) | set(requester.asked)):
        hs, rs = holder.held.get(rid, []), requester.asked.get(rid, [])
        signed = [x for x in rs if x[1].holder_signature]
        if hs and signed:
            (xh, eh), (xr, er) = hs[0], signed[0]
            bad = [f for f in SHARED_FIELDS if getattr(eh, f) != getattr(er, f)]
            if eh.local != er.counterparty or er.local != eh.counterparty:
                bad.append("jurisdictions")
            if len(hs) != 1 or len(signed) != 1:
                bad.append("entry count")
            receipt = holder.receipts.get(rid)
            if receipt is not None and (receipt.request_digest, receipt.response_digest) != (
                eh.request_digest,
                eh.response_digest,
            ):
                bad.append("receipt")  # the requester acknowledged another answer
            if bad:
                xa, xb = (xh, xr) if holder_is_a else (xr, xh)
                out.differing.append(Difference(rid, tuple(bad), xa, xb))
            else:
                out.matched += 1
                out.receipts += rid in holder.receipts
        elif hs:
            (xh, eh) = hs[0]
            unsigned = rs[0] if rs else None
            if rid in holder.receipts:
                # The requester signed a receipt for an answer its ledger does not hold.
                out.missing_in_requester.append((rid, xh))
            elif (
                unsigned is not None
                and eh.kind not in RELEASES
                and all(getattr(eh, f) == getattr(unsigned[1], f) for f in UNANSWERED_FIELDS)
            ):
                out.matched += 1  # refused at the holder, failed or refused at the requester
            else:
                out.unacknowledged.append(
                    Unacknowledged(rid, holder_j, xh, eh.kind, _why_unacknowledged(unsigned))
                )
        elif signed:
            # The requester holds the holder's signed answer; the holder's ledger lacks it.
            out.missing_in_holder.append((rid, signed[0][0]))
        # else: the holder never answered (down, refused before authenticating): nothing to pair
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
    sa, sb = _side(ra, jb), _side(rb, ja)
    matched = 0
    missing_in_a: list[tuple[str, int]] = []
    missing_in_b: list[tuple[str, int]] = []
    differing: list[Difference] = []
    unack: list[Unacknowledged] = []
    receipts = 0
    # Both ledgers claiming the same role for one exchange cannot both be right.
    for book in ("held", "asked"):
        da, db = getattr(sa, book), getattr(sb, book)
        for rid in sorted(set(da) & set(db)):
            differing.append(Difference(rid, ("role",), da[rid][0][0], db[rid][0][0]))
            del da[rid], db[rid]
    for holder_j, holder, requester, holder_is_a in ((ja, sa, sb, True), (jb, sb, sa, False)):
        f = _pair(holder_j, holder, requester, holder_is_a)
        matched += f.matched
        receipts += f.receipts
        differing += f.differing
        unack += f.unacknowledged
        (missing_in_b if holder_is_a else missing_in_a).extend(f.missing_in_requester)
        (missing_in_a if holder_is_a else missing_in_b).extend(f.missing_in_holder)
    return ReconcileReport(
        ja,
        jb,
        matched,
        tuple(sorted(missing_in_a)),
        tuple(sorted(missing_in_b)),
        tuple(sorted(differing, key=lambda d: d.request_id)),
        tuple(sorted(unack, key=lambda u: (u.holder, u.index))),
        receipts,
    )
