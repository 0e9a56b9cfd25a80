"""Reading what the audit report is built from: ledgers verified against the trust bundle.

Owns: opening each ledger file read-only, verifying it whole (chain, tree,
checkpoints, cosignatures, every entry's exchange signatures: what ``ledger
verify --bundle`` checks) with the keys the trust bundle lists (never a key
stored in the file), checking which federation witnesses cosigned its
newest checkpoint (with each witness's key valid at the cosignature's time,
current or retired), refusing two ledgers of one jurisdiction, telling the
entries of ledgers that verify (``AuditInputs.trusted_entries``: what the
figures count) from those of ledgers that do not, and reconciling every pair
of ledgers given. Does not
own: verification, decoding or reconciliation logic (``gateway.ledger.verify``,
``gateway.ledger.show``, the decoder ``gateway ledger show`` uses,
``gateway.ledger.reconcile``), what the report computes
(``gateway.report.model``).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import GatewayError, InvalidArgument, NotFound, VerificationFailed
from gateway.ledger.ledger import SqliteLedger, default_origin
from gateway.ledger.reconcile import ReconcileReport, reconcile
from gateway.ledger.show import shown_entries
from gateway.ledger.storage import SqliteLedgerStore
from gateway.ledger.trustkeys import TrustedKeys
from gateway.ledger.verify import checkpoint_cosignatures, verify_store
from gateway.report.model import Entry
from gateway.trust import TrustBundle


@dataclass(frozen=True)
class LedgerStatus:
    jurisdiction: str
    name: str
    origin: str
    path: str
    entries: int
    checkpoints: int
    root_b64: str
    ok: bool
    problem: str
    warnings: tuple[str, ...]
    newest_checkpoint_size: int
    newest_checkpoint_ms: int | None
    cosigned_by: tuple[tuple[str, str, int], ...]  # (jurisdiction, witness name, timestamp s)
    witnesses_expected: tuple[str, ...]  # jurisdictions that could cosign
    # Checkpoints of this log that witness stores hold (label, size): the ledger
    # was verified to extend each of them (no truncation, no fork).
    witness_held: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class WitnessView:
    """What one witness store holds: the newest cosigned size per log, and evidence."""

    label: str
    path: str
    sizes: tuple[tuple[str, int, int], ...]  # (origin, size, updated_ms)
    evidence: tuple[tuple[str, str, str, int], ...]  # (origin, kind, detail, recorded_ms)


@dataclass(frozen=True)
class AuditInputs:
    bundle: TrustBundle
    ledgers: tuple[LedgerStatus, ...]
    entries: tuple[Entry, ...]
    reconciliations: tuple[ReconcileReport, ...]
    generated_at: dt.datetime
    witnesses: tuple[WitnessView, ...] = ()

    @property
    def unverified(self) -> tuple[str, ...]:
        """Jurisdictions whose ledger does not verify."""
        return tuple(s.jurisdiction for s in self.ledgers if not s.ok)

    @property
    def trusted_entries(self) -> tuple[Entry, ...]:
        """The entries of ledgers that verify: the only ones the figures, charts and
        budget count (a ledger that fails verification proves nothing it holds)."""
        bad = set(self.unverified)
        return tuple(e for e in self.entries if e.ledger not in bad)


def read_witness(label: str, path: Path) -> tuple[WitnessView, dict[str, str]]:
    """A witness store's view, and origin -> the newest checkpoint note it cosigned."""
    from gateway.ledger.witness import SqliteWitnessStore

    if not path.is_file():
        raise NotFound(f"{path}: no such witness store")
    store = SqliteWitnessStore(path)
    try:
        sizes, notes = [], {}
        for origin in store.origins():
            state = store.latest(origin)
            if state is not None:
                sizes.append((origin, state.size, state.updated_ms))
                notes[origin] = state.note
        evidence = tuple((e.origin, e.kind, e.detail, e.recorded_ms) for e in store.evidence(None))
    finally:
        store.close()
    return WitnessView(label, str(path), tuple(sizes), evidence), notes


def _status(
    path: Path, bundle: TrustBundle, held: Sequence[tuple[str, str]] = ()
) -> tuple[LedgerStatus, list[Entry]]:
    import base64

    if not path.is_file():
        raise NotFound(f"{path}: no such ledger file")
    ledger = SqliteLedger.open_readonly(path)
    try:
        member = next(
            (
                m
                for m in bundle.members
                if (m.origin or default_origin(m.jurisdiction)) == ledger.origin
            ),
            None,
        )
        if member is None:
            raise VerificationFailed(
                f"{path}: ledger origin {ledger.origin!r} is not a member of the trust bundle"
            )
        store = ledger.store
        assert isinstance(store, SqliteLedgerStore)
        # The same whole-ledger check as `ledger verify --bundle`: every key from the
        # trust bundle, every cosignature and both exchange signatures of every entry
        # (a log key alone would pass an entry whose requester never signed it).
        # Checkpoints witnesses hold for this log: the ledger must extend each.
        keys = TrustedKeys.from_bundle(bundle)
        report = verify_store(
            store,
            ledger.origin,
            keys,
            trusted=[note for _, note in held],
            check_signatures=True,
        )
        latest = ledger.latest_checkpoint()
        cosigned: tuple[tuple[str, str, int], ...] = ()
        if latest is not None:
            # Each witness's key valid when it cosigned (a witness that rotated its
            # key since still counts), as `ledger verify --bundle` checks them.
            try:
                cosigned, _ = checkpoint_cosignatures(
                    latest.note, ledger.origin, keys.log_keys(ledger.origin), keys
                )
            except GatewayError:  # the verification above names the bad line
                cosigned = ()
        entries: list[Entry] = []
        undecodable = ""
        try:
            rows = ((row.index, row.entry) for row in store.iter_entries())
            entries.extend(
                Entry(member.jurisdiction, s.index, s.event) for s in shown_entries(rows)
            )
        except GatewayError as exc:  # a damaged ledger still gets a report saying so
            undecodable = f"entry {len(entries)} and after could not be decoded: {exc}"
    finally:
        ledger.close()
    status = LedgerStatus(
        jurisdiction=member.jurisdiction,
        name=member.name,
        origin=ledger.origin,
        path=str(path),
        entries=report.entries,
        checkpoints=report.checkpoints,
        root_b64=base64.b64encode(report.root).decode(),
        ok=report.ok,
        problem=str(report.problem) if report.problem else "",
        warnings=tuple(report.warnings) + ((undecodable,) if undecodable else ()),
        newest_checkpoint_size=latest.checkpoint.size if latest else 0,
        newest_checkpoint_ms=latest.issued_ms if latest else None,
        cosigned_by=cosigned,
        witnesses_expected=tuple(
            sorted(m.jurisdiction for m in bundle.members if m.jurisdiction != member.jurisdiction)
        ),
        witness_held=tuple((label, _note_size(note)) for label, note in held),
    )
    return status, entries


def _note_size(note: str) -> int:
    from gateway.ledger.note import Checkpoint, parse_note

    try:
        return Checkpoint.parse(parse_note(note)[0]).size
    except GatewayError:
        return -1


def gather(
    paths: Sequence[Path],
    bundle: TrustBundle,
    witnesses: Sequence[tuple[str, Path]] = (),
) -> AuditInputs:
    views: list[WitnessView] = []
    held_by_origin: dict[str, list[tuple[str, str]]] = {}
    for label, wpath in witnesses:
        view, notes = read_witness(label, wpath)
        views.append(view)
        for origin, note in notes.items():
            held_by_origin.setdefault(origin, []).append((label, note))
    origins: dict[str, Path] = {}
    for path in paths:
        origin = _origin_of(path)
        if origin in origins:
            # Each jurisdiction is one side of the reconciliation: a second ledger of it
            # (a copy, a backup, another replica's file) would silently replace the first.
            raise InvalidArgument(
                f"{origins[origin]} and {path} are both ledgers of {origin}: give one "
                "ledger per jurisdiction (report on the other in a separate run)"
            )
        origins[origin] = path
    statuses, entries = [], []
    per_ledger: dict[str, list[Entry]] = {}
    for origin, path in origins.items():
        status, es = _status(path, bundle, held_by_origin.get(origin, ()))
        statuses.append(status)
        entries.extend(es)
        per_ledger[status.jurisdiction] = es
    recs = []
    for a, b in itertools.combinations(sorted(per_ledger), 2):
        recs.append(
            reconcile(
                [(e.index, e.event) for e in per_ledger[a]],
                [(e.index, e.event) for e in per_ledger[b]],
                a,
                b,
            )
        )
    return AuditInputs(
        bundle,
        tuple(statuses),
        tuple(entries),
        tuple(recs),
        dt.datetime.now(dt.UTC),
        tuple(views),
    )


def _origin_of(path: Path) -> str:
    if not path.is_file():
        raise NotFound(f"{path}: no such ledger file")
    store = SqliteLedgerStore(path, readonly=True)
    try:
        return store.get_meta("origin") or ""
    finally:
        store.close()
