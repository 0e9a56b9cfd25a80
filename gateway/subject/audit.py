"""The compliance officer's offline subject-access audit.

Owns: ``check_store`` (every holder entry that commits to subjects against the
holder's index store: a missing row, a row added or removed from an entry's
index set, different fields or coverage, and rows whose entry is gone) and
``audit_subject`` (one person's history at one holder, built by the same code
the gateway answers with and verified with the trust bundle's keys, each entry
paired with its counterpart in the requesting members' ledgers when those are
given; a streamed transfer's commitment is compared from the holder's closing
entry). Works on files: a read-only ledger, the index store, the holder's key.

Does not own: the command line (``gateway.cli.audit``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway import crypto
from gateway.errors import GatewayError
from gateway.ledger.entry import decode_entry
from gateway.ledger.events import STREAM_CLOSED, STREAM_PHASE, STREAM_STARTED
from gateway.ledger.ledger import Ledger
from gateway.limits import Limits
from gateway.subject.holder import HistoryResponder
from gateway.subject.index import commit, fields_digest, subjects_of
from gateway.subject.model import AccessItem
from gateway.subject.store import IndexedEntry, SubjectIndexStore
from gateway.subject.verify import HolderKeys, verify_answer


@dataclass(frozen=True)
class StoreProblem:
    request_id: str
    entry_index: int | None
    problem: str

    def __str__(self) -> str:
        where = f"entry {self.entry_index}" if self.entry_index is not None else "no entry"
        return f"request {self.request_id} ({where}): {self.problem}"


@dataclass(frozen=True)
class StoreReport:
    entries_checked: int
    problems: tuple[StoreProblem, ...]
    unlinked_rows: int  # rows of appends that never happened (harmless, listed nowhere)


def _row_problem(
    row: IndexedEntry, store: SubjectIndexStore, details: Sequence[tuple[str, str]]
) -> str:
    s = subjects_of(details)
    if s.coverage != row.coverage:
        return f"the store says coverage {row.coverage}, the entry {s.coverage}"
    expect_fields = fields_digest(row.fields) if row.fields else ""
    if not crypto.digest_equal(expect_fields, s.fields_sha256):
        return "the store's released fields are not those the entry committed to"
    if s.commitment is not None:
        indexes = store.indexes_of(row.request_id)
        have = commit(indexes) if indexes else None
        if have != s.commitment:
            n = len(set(indexes))
            return (
                f"index rows added or removed: the store holds {n} indexes, "
                f"the entry committed to {s.commitment.count} (or to other ones)"
            )
    return ""


def check_store(ledger: Ledger, store: SubjectIndexStore, limits: Limits) -> StoreReport:
    rows = {r.request_id: r for r in store.all_entries()}
    problems: list[StoreProblem] = []
    checked = 0
    for rec in ledger.store.iter_entries():
        event = decode_entry(rec.entry, limits).event
        if event.role != "holder":
            continue
        try:
            covered = subjects_of(event.details).coverage is not None
        except GatewayError as exc:
            problems.append(StoreProblem(event.request_id, rec.index, str(exc)))
            continue
        if not covered:
            continue
        checked += 1
        row = rows.pop(event.request_id, None)
        if row is None:
            problems.append(
                StoreProblem(
                    event.request_id,
                    rec.index,
                    "the entry commits to subjects but the index store has no row for it",
                )
            )
            continue
        if row.entry_index is not None and row.entry_index != rec.index:
            problems.append(
                StoreProblem(row.request_id, rec.index, f"the store links entry {row.entry_index}")
            )
        problem = _row_problem(row, store, event.details)
        if problem:
            problems.append(StoreProblem(row.request_id, rec.index, problem))
    unlinked = 0
    for row in rows.values():
        if row.entry_index is None:
            unlinked += 1
        else:
            problems.append(
                StoreProblem(
                    row.request_id,
                    row.entry_index,
                    "the store has rows for an entry the ledger lacks",
                )
            )
    return StoreReport(checked, tuple(problems), unlinked)


@dataclass(frozen=True)
class SubjectAudit:
    items: tuple[AccessItem, ...]
    truncated: bool
    # request id -> jurisdiction -> "matches" | "missing" | "differs: ..."
    counterparts: Mapping[str, Mapping[str, str]]


def audit_subject(
    ledger: Ledger,
    store: SubjectIndexStore,
    key: bytes,
    keys: HolderKeys,
    subject_id: str,
    limits: Limits,
    requester_ledgers: Mapping[str, Ledger] | None = None,
) -> SubjectAudit:
    """One person's verified history at this holder (``subject_id`` normalised)."""
    responder = HistoryResponder(ledger, store, key, limits, sign_fresh=False)
    proofs, truncated = responder.answer(subject_id)
    items = verify_answer(proofs, keys, limits)
    counterparts: dict[str, dict[str, str]] = {}
    for item in items:
        peer = (requester_ledgers or {}).get(item.requester)
        if peer is None:
            continue
        holder_event = decode_entry(ledger.entry(item.entry_index).entry, limits).event
        found = [r.event for r in peer.find(item.request_id) if r.event.role == "requester"]
        if not found:
            state = "missing"
        else:
            e = found[0]
            names = ["dataset", "purpose", "payload_digest", "request_digest", "decision"]
            if (STREAM_PHASE, STREAM_STARTED) in holder_event.details:
                # A streamed transfer: its commitment is in the holder's closing entry, and
                # only a transfer both sides completed has one commitment to compare.
                closing = [
                    r.event
                    for r in ledger.find(item.request_id)
                    if r.event.role == "holder" and (STREAM_PHASE, STREAM_CLOSED) in r.event.details
                ]
                done = ("complete", "true")
                if closing and done in closing[0].details and done in e.details:
                    holder_event = closing[0]
                else:
                    names.remove("payload_digest")
            diff = [name for name in names if getattr(e, name) != getattr(holder_event, name)]
            state = f"differs: {', '.join(diff)}" if diff else "matches"
        counterparts.setdefault(item.request_id, {})[item.requester] = state
    return SubjectAudit(items, truncated, counterparts)
