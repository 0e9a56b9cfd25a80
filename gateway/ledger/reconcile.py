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
* **interrupted** (streamed bulk transfers only): the transfer did not complete
  and both sides agree on what was asked and decided. The holder ledgers a
  stream as a *started* entry (before anything leaves) and a *closing* entry;
  a started entry without a closing one means the holder stopped mid-stream
  (e.g. it was killed); a closing entry with ``complete=false``, or a
  requester's entry with ``complete=false``, means the link or one side gave
  up. The requester's entry is paired with the started entry (the signed
  start it holds) and may not count more rows than the holder says it sent.
  Not an error: resume with the cursor;
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

from gateway.ledger.events import STREAM_CLOSED, STREAM_PHASE, STREAM_STARTED, LedgerEvent

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
# What a streamed transfer's started and closing entries (and a requester that
# holds the signed start) must record identically: the request and the decision.
STREAM_REQUEST_FIELDS = (
    "kind",
    "service_system",
    "dataset",
    "purpose",
    "decision",
    "agreement_id",
    "agreement_digest",
    "policy_set_digest",
    "legal_basis",
    "approval_id",
    "request_digest",
    "requester_signature",
)


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
class Interrupted:
    """A streamed transfer that did not complete, both sides agreeing on it."""

    request_id: str
    holder: str
    index: int  # the holder's started entry
    rows_sent: int | None  # None: the holder has no closing entry
    rows_received: int | None  # None: the requester has no entry
    reason: str


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
    interrupted: tuple[Interrupted, ...] = field(default_factory=tuple)  # not errors

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
    interrupted: list[Interrupted] = field(default_factory=list)


def _phase(ev: LedgerEvent) -> str:
    return next((v for k, v in ev.details if k == STREAM_PHASE), "")


def _complete(ev: LedgerEvent) -> bool:
    return ("complete", "true") in ev.details


def _pair_stream(
    rid: str,
    holder_j: str,
    hs: list[tuple[int, LedgerEvent]],
    rs: list[tuple[int, LedgerEvent]],
    holder_is_a: bool,
    out: _Findings,
) -> None:
    """Classify one streamed transfer: the holder's started (+ closing) entries
    against the requester's single entry."""
    started = [x for x in hs if _phase(x[1]) == STREAM_STARTED]
    closing = [x for x in hs if _phase(x[1]) == STREAM_CLOSED]
    xr, r = rs[0] if rs else (-1, None)
    bad: list[str] = []
    if len(started) != 1 or len(closing) > 1 or len(started) + len(closing) != len(hs):
        bad.append("entry count")
    if len(rs) > 1:
        bad.append("entry count")
    if not started:
        xh = hs[0][0]
        xa, xb = (xh, xr) if holder_is_a else (xr, xh)
        out.differing.append(Difference(rid, tuple(bad), xa, xb))
        return
    xs, s = started[0]
    xc, c = closing[0] if closing else (-1, None)
    if c is not None:
        bad += [f for f in STREAM_REQUEST_FIELDS if getattr(s, f) != getattr(c, f)]
    if r is not None and (s.local != r.counterparty or r.local != s.counterparty):
        bad.append("jurisdictions")
    if c is not None and _complete(c) and r is not None and _complete(r):
        # Completed: the requester holds the signed end the closing entry records.
        bad += [f for f in SHARED_FIELDS if getattr(c, f) != getattr(r, f)]
        if bad:
            xa, xb = (xc, xr) if holder_is_a else (xr, xc)
            out.differing.append(Difference(rid, tuple(dict.fromkeys(bad)), xa, xb))
        else:
            out.matched += 1
        return
    if r is not None and _complete(r):
        # The requester holds a signed end that the holder's ledger does not close with.
        out.missing_in_holder.append((rid, xr))
        return
    if r is not None:
        # The requester recorded no complete transfer: it can only hold the signed start.
        fields = (
            (*STREAM_REQUEST_FIELDS, "holder_signature", "response_digest")
            if r.holder_signature
            else UNANSWERED_FIELDS
        )
        bad += [f for f in fields if getattr(s, f) != getattr(r, f)]
        if c is not None and r.record_count > c.record_count:
            bad.append("record_count")
    if bad:
        xa, xb = (xs, xr) if holder_is_a else (xr, xs)
        out.differing.append(Difference(rid, tuple(dict.fromkeys(bad)), xa, xb))
        return
    if c is not None and _complete(c) and r is None:
        out.unacknowledged.append(
            Unacknowledged(rid, holder_j, xc, c.kind, _why_unacknowledged(None))
        )
        return
    sent = c.record_count if c is not None else None
    got = r.record_count if r is not None else None
    if c is None:
        why = (
            "the holder stopped mid-transfer: its started entry has no closing entry "
            "(e.g. it was killed)"
        )
    elif not _complete(c):
        why = f"interrupted at the holder after {c.record_count} rows left"
    else:
        why = f"the holder sent all {c.record_count} rows; the requester stopped receiving"
    if r is None:
        why += "; the requester has no entry"
    else:
        why += f"; the requester received {r.record_count} rows"
    out.interrupted.append(Interrupted(rid, holder_j, xs, sent, got, why))


def _pair(holder_j: str, holder: _Side, requester: _Side, holder_is_a: bool) -> _Findings:
    """Classify the exchanges ``holder_j`` answered (or was asked) for the other side."""
    out = _Findings()
    for rid in sorted(set(holder.held) | set(requester.asked)):
        hs, rs = holder.held.get(rid, []), requester.asked.get(rid, [])
        if any(_phase(ev) for _, ev in hs):
            _pair_stream(rid, holder_j, hs, rs, holder_is_a, out)
            continue
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
            if len(hs) != 1:
                # One exchange, several holder entries: pairing the first alone would let
                # a later one (e.g. a release after a refusal) go unexamined.
                xr = unsigned[0] if unsigned else -1
                xa, xb = (xh, xr) if holder_is_a else (xr, xh)
                out.differing.append(Difference(rid, ("entry count",), xa, xb))
            elif rid in holder.receipts:
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
    interrupted: list[Interrupted] = []
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
        interrupted += f.interrupted
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
        tuple(sorted(interrupted, key=lambda i: (i.holder, i.index))),
    )
