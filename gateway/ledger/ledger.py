"""The gateway's append-only ledger: hash chain + RFC 9162 tree + signed checkpoints.

Owns: appending events (single and batched) atomically and durably, the
checkpoint cadence (every N entries or T seconds), proofs served from stored
nodes in O(log n) reads, lookups, and merging witness cosignatures into stored
checkpoints. ``SqliteLedger`` is the ``LedgerWriter`` the exchange path uses.

Does not own: encoding (``entry``), hashing and proof maths (``merkle``),
note formats (``note``), storage (``storage``), offline verification
(``verify``) or the network (``service``, and the lead's peer wiring).

Thread safety: appends are serialised by a lock; the store re-checks the size
inside its write transaction, so a second process or replica appending to the
same store cannot fork the log (the loser reloads and retries). Every write
runs inside ``store.exclusive()``: on a shared store (PostgreSQL replicas) that
holds the log's lock across replicas and yields the stored head, and the
in-memory tail is reloaded first if another replica moved it, so replicas
build on one linear order without conflicts. In-memory state changes only
after the store committed, so a failed append leaves neither a half-written
row nor a stale cache.

Checkpoint signing: ``may_sign`` (default: always) says whether this process
holds the signing lease; only the holder ever signs: cadence checkpoints (in
appends and ``tick``) and checkpoints asked for explicitly (``checkpoint_now``).
On a replica without the lease, ``checkpoint_now`` asks the holder through
``ask_signer`` (the holder's listener calls ``sign_if_holder``) and waits, at
most ``Limits.checkpoint_wait_seconds``, for a stored checkpoint covering the
size it saw; none in time is ``StorageFailure`` (UNAVAILABLE). Checkpoints are
signed under the append lock, so no two are ever stored for one size.

Riders: ``append(event, rider)`` hands the store rows that belong to the entry
(``gateway.ledger.storage``), written in its transaction with its index. If a
group commit fails because one rider's rows conflict with stored ones
(``RiderConflict``), every entry of the group is committed again on its own,
so only the one that brought the conflict fails.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from gateway import crypto
from gateway.crypto import AnySigningKey, AnyVerifyKey
from gateway.errors import InvalidArgument, NotFound, StorageFailure
from gateway.ledger.entry import GENESIS_PREV, decode_entry, encode_entry, validate_event
from gateway.ledger.events import AppendReceipt, LedgerEvent
from gateway.ledger.merkle import (
    Frontier,
    TreeHasher,
    build_proof,
    consistency_plan,
    fold,
    inclusion_plan,
    prefix_nodes,
)
from gateway.ledger.note import Checkpoint, parse_note, sign_checkpoint, vkey
from gateway.ledger.storage import (
    CheckpointRow,
    EntryRow,
    Head,
    LedgerStore,
    Rider,
    RiderConflict,
    SizeConflict,
    SqliteLedgerStore,
)
from gateway.limits import DEFAULT_LIMITS, Limits

FORMAT: Final = "jgw-ledger-v1"
log = logging.getLogger("gateway.ledger")


def _log_checkpoint(origin: str, size: int, trigger: str) -> None:
    log.info(
        "checkpoint signed at size %d (%s)",
        size,
        trigger,
        extra={"event": "checkpoint", "origin": origin, "size": size, "trigger": trigger},
    )


Clock = Callable[[], float]


def default_origin(jurisdiction: str) -> str:
    return f"{jurisdiction}.gateway.dataexchange.cn/ledger"


class _Waiter:
    """One caller's event in the group-commit queue."""

    __slots__ = ("done", "error", "event", "receipt", "rider")

    def __init__(self, event: LedgerEvent, rider: object | None = None) -> None:
        self.event = event
        self.rider = rider
        self.receipt: AppendReceipt | None = None
        self.error: Exception | None = None
        self.done = False


def _as_failure(exc: Exception) -> StorageFailure:
    return exc if isinstance(exc, StorageFailure) else StorageFailure("ledger append failed")


def _fail(batch: Sequence[_Waiter], exc: Exception) -> None:
    for w in batch:
        w.error = exc
        w.done = True


@dataclass(frozen=True)
class SignedCheckpoint:
    seq: int
    checkpoint: Checkpoint
    note: str  # the signed note (log signature and any cosignatures)
    issued_ms: int


@dataclass(frozen=True)
class LedgerRecord:
    index: int
    entry: bytes
    entry_hash: bytes
    event: LedgerEvent


def _signed(row: CheckpointRow, limits: Limits) -> SignedCheckpoint:
    text, _ = parse_note(row.note, limits)
    return SignedCheckpoint(row.seq, Checkpoint.parse(text), row.note, row.issued_ms)


class Ledger:
    """Ledger logic over any ``LedgerStore``. ``signer`` None opens read-only."""

    def __init__(
        self,
        store: LedgerStore,
        signer: AnySigningKey | None,
        origin: str,
        *,
        checkpoint_every: int = 1000,
        checkpoint_interval: float = 60.0,
        clock: Clock = time.time,
        limits: Limits = DEFAULT_LIMITS,
        may_sign: Callable[[], bool] = lambda: True,
        suite: str | None = None,
        ask_signer: Callable[[int], None] | None = None,
    ) -> None:
        if checkpoint_every < 1 or checkpoint_interval <= 0:
            raise InvalidArgument.expected(
                "checkpoint cadence",
                "every >= 1 entries and interval > 0 s",
                (checkpoint_every, checkpoint_interval),
            )
        Checkpoint(origin, 0, bytes(32))  # validates the origin line
        self.store = store
        self.origin = origin
        self._signer = signer
        self._every = checkpoint_every
        self._interval = checkpoint_interval
        self._clock = clock
        self._limits = limits
        self._may_sign = may_sign
        self._ask_signer = ask_signer
        self._cp_seq = -1  # newest stored checkpoint seq (set by _load_tail)
        self._lock = threading.RLock()
        # Group commit: concurrent appends share one transaction and one fsync.
        self._commit = threading.Condition(threading.Lock())
        self._pending: list[_Waiter] = []
        self._flushing = False
        stored_origin = store.get_meta("origin")
        if stored_origin is not None and stored_origin != origin:
            raise InvalidArgument.expected("ledger origin", stored_origin, origin)
        # A ledger's suite (its tree hash and checkpoint signatures) is fixed at
        # creation; files from before suites existed are intl.
        stored_suite = store.get_meta("suite") or ("intl" if stored_origin else None)
        name = signer.suite if signer is not None else (suite or stored_suite or "intl")
        for given in (suite, stored_suite):
            if given is not None:
                crypto.require_suite(f"ledger {origin}", given, name)
        self.suite = crypto.suite(name)
        self.tree = TreeHasher.for_suite(self.suite)
        if signer is not None:
            if stored_origin is None:
                store.set_meta("format", FORMAT)
                store.set_meta("origin", origin)
                store.set_meta("suite", name)
            key = vkey(origin, signer.verify_key)
            if store.get_meta("vkey") != key:
                # Self-description only: verifiers take keys from the trust bundle.
                store.set_meta("vkey", key)
        self._load_tail()

    # -- state ---------------------------------------------------------------

    def _load_tail(self, head: Head | None = None) -> None:
        """Reload the tail from the store (``head``: the size is known, and the
        checkpoint state too if its seq is the one in memory)."""
        size = self.store.size() if head is None else head.size
        ids = prefix_nodes(size)
        got = self.store.nodes([*ids, (0, size - 1)] if size else ids)
        self._frontier = Frontier(size, got[: len(ids)], self.tree)
        self._prev = got[-1] if size else GENESIS_PREV
        # Timestamps never go backwards along the log, across replicas too.
        last = self.store.entries(size - 1, size) if size else []
        self._last_ms = last[0].timestamp_ms if last else 0
        if head is None or head.checkpoint_seq != self._cp_seq:
            self._load_checkpoint_state()

    def _load_checkpoint_state(self) -> None:
        latest = self.store.latest_checkpoint()
        if latest is None:
            self._cp_seq, self._cp_size, self._cp_time = -1, -1, self._clock()
        else:
            self._cp_seq = latest.seq
            self._cp_size, self._cp_time = latest.size, latest.issued_ms / 1000.0

    def _refresh(self, head: Head | None) -> None:
        """Inside ``store.exclusive()``: catch up if another writer moved the tail,
        from the leaf hashes the store sent with the head when it could (the
        frontier recomputes the same interior nodes; nothing is read back)."""
        if head is None or (head.size, head.checkpoint_seq) == (self.size, self._cp_seq):
            return
        if head.tail is None or head.size - self.size != len(head.tail):
            self._load_tail(head)
            return
        for leaf in head.tail:
            self._frontier.push(leaf)
        if head.tail:
            self._prev = head.tail[-1]
            self._last_ms = max(self._last_ms, head.last_ms)
        if head.checkpoint_seq != self._cp_seq:
            self._load_checkpoint_state()

    @property
    def size(self) -> int:
        """Entries this instance has appended or loaded. On a store shared by
        replicas others may have appended since: ``store.size()`` is current."""
        return self._frontier.size

    @property
    def public_key(self) -> AnyVerifyKey | None:
        return self._signer.verify_key if self._signer else None

    # -- appends -------------------------------------------------------------

    def append(self, event: LedgerEvent, rider: object | None = None) -> AppendReceipt:
        """Durably append one event (and its ``rider``, for a store that writes
        riders); returns once it is committed.

        Concurrent callers are group-committed: whoever finds no commit in
        progress writes every queued event in one transaction (one fsync) and
        wakes the others. The event is validated first, so a malformed event
        is refused on its own and can never fail another caller's batch.
        """
        validate_event(event, self._limits)
        if self._signer is None:
            raise InvalidArgument("ledger is open read-only (no checkpoint signer)")
        me = _Waiter(event, rider)
        with self._commit:
            self._pending.append(me)
            while not me.done:
                if self._flushing:
                    self._commit.wait()
                    continue
                self._flushing = True
                self._commit.release()
                try:
                    self._flush_pending()
                finally:
                    self._commit.acquire()
                    self._flushing = False
                    self._commit.notify_all()
        if me.error is not None:
            raise me.error
        assert me.receipt is not None
        return me.receipt

    def _flush_pending(self) -> None:
        """Take the write lock first (other replicas may hold it), THEN the queue:
        everything queued while waiting goes into this one commit."""
        batch: list[_Waiter] = []
        try:
            with self._lock, self.store.exclusive(self.size) as head:
                with self._commit:
                    batch, self._pending = self._pending, []
                self._refresh(head)
                self._flush(batch)
        except RiderConflict as exc:  # nothing committed; isolate the offender
            self._reload()
            if len(batch) == 1:
                _fail(batch, exc)
            else:
                for w in batch:
                    w.receipt, w.error, w.done = None, None, False
                try:
                    for w in batch:
                        self._commit_alone(w)
                except BaseException:  # interrupted: no waiter may be left waiting
                    _fail(
                        [w for w in batch if not w.done],
                        StorageFailure("ledger append interrupted"),
                    )
                    raise
        except Exception as exc:  # the lock, the refresh or the commit failed
            with self._commit:
                if not batch:
                    batch, self._pending = self._pending, []
            failure = _as_failure(exc)
            # Nothing of this batch was committed, unless the failure is
            # CommitUnknown (a lost COMMIT answer): the reload below finds out.
            for w in batch:
                w.receipt, w.error, w.done = None, failure, True
            self._reload()
        except BaseException:
            _fail(batch, StorageFailure("ledger append interrupted"))
            raise

    def _commit_alone(self, w: _Waiter) -> None:
        """Commit one waiter's event in a transaction of its own; it ends done."""
        try:
            with self._lock, self.store.exclusive(self.size) as head:
                self._refresh(head)
                self._flush([w])
        except Exception as exc:
            w.receipt, w.error, w.done = None, _as_failure(exc), True
            self._reload()

    def _reload(self) -> None:
        """After a failed commit: the in-memory tail from the store (it may be
        ahead of what was committed)."""
        try:
            self._load_tail()
        except StorageFailure:
            pass  # reloaded on the next append (the head will differ)

    def _flush(self, batch: list[_Waiter]) -> None:
        """Commit ``batch`` in one transaction; every waiter ends done."""
        try:
            receipts = self.append_many([w.event for w in batch], [w.rider for w in batch])
        except InvalidArgument as exc:
            if len(batch) == 1:
                _fail(batch, exc)
            else:  # isolate the offender; the others still commit
                for w in batch:
                    self._flush([w])
            return
        except Exception as exc:  # nothing committed (CommitUnknown: maybe all of it)
            _fail(batch, exc)
            return
        except BaseException:
            _fail(batch, StorageFailure("ledger append interrupted"))
            raise
        for w, r in zip(batch, receipts, strict=True):
            w.receipt = r
            w.done = True

    def append_many(
        self, events: Iterable[LedgerEvent], riders: Sequence[object | None] = ()
    ) -> list[AppendReceipt]:
        """Append ``events`` in one transaction, each with its rider (``riders``
        in the same order; empty: none)."""
        batch = list(events)
        if not batch:
            return []
        if riders and len(riders) != len(batch):
            raise InvalidArgument("one rider (or None) per event")
        if self._signer is None:
            raise InvalidArgument("ledger is open read-only (no checkpoint signer)")
        with self._lock:
            for attempt in range(3):
                try:
                    return self._append_locked(batch, riders)
                except SizeConflict:
                    if attempt == 2:
                        raise
                    self._load_tail()
                except StorageFailure:
                    self._load_tail()
                    raise
        raise StorageFailure("ledger append failed")  # pragma: no cover

    def _append_locked(
        self, batch: Sequence[LedgerEvent], riders: Sequence[object | None]
    ) -> list[AppendReceipt]:
        assert self._signer is not None
        with self.store.exclusive(self.size) as head:
            self._refresh(head)
            return self._build_and_append(batch, riders)

    def _build_and_append(
        self, batch: Sequence[LedgerEvent], riders: Sequence[object | None] = ()
    ) -> list[AppendReceipt]:
        assert self._signer is not None
        signing = self._may_sign()
        frontier = self._frontier.copy()
        prev = self._prev
        last_ms = self._last_ms
        start = frontier.size
        now = self._clock()
        now_ms = int(now * 1000)
        cp_size, cp_time = self._cp_size, self._cp_time
        rows: list[EntryRow] = []
        nodes: list[tuple[int, int, bytes]] = []
        cps: list[tuple[int, str, int]] = []
        receipts: list[AppendReceipt] = []
        for event in batch:
            idx = frontier.size
            if event.timestamp_ms < last_ms:
                # Times never go backwards along the ledger (concurrent callers
                # stamp events a moment apart): a time range is then an index
                # range, which is what lets an evidence bundle prove it complete.
                event = replace(event, timestamp_ms=last_ms)
            last_ms = event.timestamp_ms
            data = encode_entry(idx, prev, event, self._limits)
            h = self.tree.leaf(data)
            rows.append(EntryRow(idx, data, h, event.request_id, event.timestamp_ms))
            nodes.extend(frontier.push(h))
            receipts.append(AppendReceipt(idx, h.hex()))
            prev = h
            if signing and frontier.size - max(cp_size, 0) >= self._every:
                cps.append(self._sign(frontier, now_ms))
                cp_size, cp_time = frontier.size, now
        if signing and frontier.size > cp_size and now - cp_time >= self._interval:
            cps.append(self._sign(frontier, now_ms))
            cp_size, cp_time = frontier.size, now
        carried: list[Rider] = (
            [(row.index, r) for row, r in zip(rows, riders, strict=True) if r is not None]
            if riders
            else []
        )
        self.store.append(start, rows, nodes, cps, carried)
        # Committed when the caller's ``exclusive()`` block ends; if that commit
        # fails, append_many reloads the tail from the store.
        self._frontier, self._prev, self._last_ms = frontier, prev, last_ms
        self._cp_seq += len(cps)
        self._cp_size, self._cp_time = cp_size, cp_time
        for size, _note, _ms in cps:
            _log_checkpoint(self.origin, size, "cadence")
        return receipts

    def _sign(self, frontier: Frontier, now_ms: int) -> tuple[int, str, int]:
        assert self._signer is not None
        cp = Checkpoint(self.origin, frontier.size, frontier.root())
        return (frontier.size, sign_checkpoint(cp, self._signer), now_ms)

    def tick(self) -> SignedCheckpoint | None:
        """Issue a checkpoint if T seconds passed with entries uncovered (call from a timer)."""
        if self._signer is None or not self._may_sign():
            return None
        with self._lock:
            try:
                with self.store.exclusive(self.size) as head:
                    self._refresh(head)
                    uncovered = self.size - max(self._cp_size, 0)
                    due = self.size > self._cp_size and (
                        self._clock() - self._cp_time >= self._interval or uncovered >= self._every
                    )
                    if not due:
                        return None
                    self._issue_checkpoint()
            except StorageFailure:
                self._load_tail()
                raise
            return self.latest_checkpoint()

    def checkpoint_now(self) -> SignedCheckpoint:
        """A checkpoint covering the current size: the latest if it does, else a
        new one, signed here by the lease holder or asked of it by any other replica."""
        if self._signer is None:
            raise InvalidArgument("ledger is open read-only (no checkpoint signer)")
        if not self._may_sign():
            return self._checkpoint_from_holder()
        return self._checkpoint_here()

    def sign_if_holder(self) -> SignedCheckpoint | None:
        """What the lease holder does when a replica asks: sign a checkpoint of
        the current size if none covers it. Never asks anyone (None: not the holder)."""
        if self._signer is None or not self._may_sign():
            return None
        return self._checkpoint_here()

    def _checkpoint_from_holder(self) -> SignedCheckpoint:
        need = self.store.size()
        latest = self.latest_checkpoint()
        if latest is not None and latest.checkpoint.size >= need:
            return latest
        wait = self._limits.checkpoint_wait_seconds
        deadline = time.monotonic() + wait
        next_ask, pause = 0.0, 0.005
        while True:
            if self._may_sign():  # the lease came here meanwhile
                return self._checkpoint_here()
            now = time.monotonic()
            if self._ask_signer is not None and now >= next_ask:
                self._ask_signer(need)  # again now and then: the holder may have changed
                next_ask = now + 0.5
            if now >= deadline:
                raise StorageFailure(
                    f"no signed checkpoint covers the ledger's {need} entries yet: the replica "
                    f"holding the signing lease did not sign one within {wait:g} s (this "
                    "replica does not sign; retry)"
                )
            time.sleep(min(pause, deadline - now))
            pause = min(pause * 2, 0.05)
            latest = self.latest_checkpoint()
            if latest is not None and latest.checkpoint.size >= need:
                return latest

    def _checkpoint_here(self) -> SignedCheckpoint:
        assert self._signer is not None
        with self._lock:
            try:
                with self.store.exclusive(self.size) as head:
                    self._refresh(head)
                    if self.size != self._cp_size:
                        self._issue_checkpoint()
            except StorageFailure:
                self._load_tail()
                raise
            latest = self.latest_checkpoint()
            assert latest is not None
            return latest

    def _issue_checkpoint(self) -> None:
        """Inside ``exclusive()``: sign and store a checkpoint of the current tree."""
        now = self._clock()
        cp = self._sign(self._frontier, int(now * 1000))
        self.store.append(self.size, [], [], [cp])
        self._cp_seq += 1
        self._cp_size, self._cp_time = self.size, now
        _log_checkpoint(self.origin, self.size, "timer or request")

    # -- checkpoints ---------------------------------------------------------

    def latest_checkpoint(self) -> SignedCheckpoint | None:
        row = self.store.latest_checkpoint()
        return _signed(row, self._limits) if row else None

    def checkpoints(self) -> list[SignedCheckpoint]:
        return [_signed(r, self._limits) for r in self.store.checkpoints()]

    def checkpoint_covering(self, size: int) -> SignedCheckpoint | None:
        row = self.store.checkpoint_covering(size)
        return _signed(row, self._limits) if row else None

    def add_cosignature_lines(self, seq: int, lines: Sequence[str]) -> SignedCheckpoint:
        """Merge already-verified cosignature lines into checkpoint ``seq``'s note."""
        with self._lock:
            rows = [r for r in self.store.checkpoints() if r.seq == seq]
            if not rows:
                raise NotFound(f"checkpoint #{seq} not found")
            _text, sigs = parse_note(rows[0].note, self._limits)
            existing = {s.line() for s in sigs}
            new = [ln if ln.endswith("\n") else ln + "\n" for ln in lines]
            merged = rows[0].note + "".join(ln for ln in new if ln not in existing)
            parse_note(merged, self._limits)
            self.store.replace_checkpoint_note(seq, merged)
            return _signed(
                CheckpointRow(seq, rows[0].size, merged, rows[0].issued_ms), self._limits
            )

    # -- proofs --------------------------------------------------------------

    def root_at(self, size: int) -> bytes:
        self._check_size(size)
        return fold(self.store.nodes(prefix_nodes(size)), self.tree)

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        self._check_size(tree_size)
        if not 0 <= index < tree_size:
            raise InvalidArgument.expected("leaf index", f"0 <= index < {tree_size}", index)
        return build_proof(inclusion_plan(index, tree_size), self.store.nodes, self.tree)

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        self._check_size(size2)
        if not 0 < size1 <= size2:
            raise InvalidArgument.expected("consistency sizes", f"0 < size1 <= {size2}", size1)
        return build_proof(consistency_plan(size1, size2), self.store.nodes, self.tree)

    def _check_size(self, size: int) -> None:
        current = self.store.size()
        if not 0 <= size <= current:
            raise InvalidArgument.expected("tree size", f"0..{current}", size)

    # -- lookups -------------------------------------------------------------

    def _record(self, row: EntryRow) -> LedgerRecord:
        return LedgerRecord(
            row.index, row.entry, row.entry_hash, decode_entry(row.entry, self._limits).event
        )

    def entry(self, index: int) -> LedgerRecord:
        rows = self.store.entries(index, index + 1)
        if not rows:
            raise NotFound(f"ledger entry {index} not found")
        return self._record(rows[0])

    def entries(self, start: int, limit: int) -> list[LedgerRecord]:
        if start < 0 or limit < 0:
            raise InvalidArgument.expected(
                "entries range", "start >= 0, limit >= 0", (start, limit)
            )
        limit = min(limit, self._limits.max_export_entries)
        return [self._record(r) for r in self.store.entries(start, start + limit)]

    def find(self, request_id: str) -> list[LedgerRecord]:
        return [self._record(r) for r in self.store.find_request(request_id)]

    def find_many(self, request_ids: Sequence[str]) -> dict[str, list[LedgerRecord]]:
        """Each request id's entries (ids with none are absent), in one query a page."""
        found: dict[str, list[LedgerRecord]] = {}
        for r in self.store.find_requests(request_ids):
            found.setdefault(r.request_id, []).append(self._record(r))
        return found

    def between(self, since_ms: int, until_ms: int) -> list[LedgerRecord]:
        rows = self.store.entries_between(since_ms, until_ms, self._limits.max_export_entries + 1)
        if len(rows) > self._limits.max_export_entries:
            raise InvalidArgument.expected(
                "entries in range", f"<= {self._limits.max_export_entries}", "more"
            )
        return [self._record(r) for r in rows]

    def close(self) -> None:
        self.store.close()


class SqliteLedger(Ledger):
    """The default ledger: one SQLite file. Implements ``LedgerWriter``."""

    def __init__(
        self,
        path: str | Path,
        signer: AnySigningKey | None,
        origin: str,
        checkpoint_every: int = 1000,
        checkpoint_interval: float = 60.0,
        clock: Clock = time.time,
        limits: Limits = DEFAULT_LIMITS,
        suite: str | None = None,
    ) -> None:
        super().__init__(
            SqliteLedgerStore(path, readonly=signer is None),
            signer,
            origin,
            checkpoint_every=checkpoint_every,
            checkpoint_interval=checkpoint_interval,
            clock=clock,
            limits=limits,
            suite=suite,
        )

    @classmethod
    def open_readonly(cls, path: str | Path, origin: str | None = None) -> SqliteLedger:
        """Open an existing ledger file for reading; the origin defaults to the stored one."""
        if origin is None:
            probe = SqliteLedgerStore(path, readonly=True)
            try:
                origin = probe.get_meta("origin")
            finally:
                probe.close()
            if origin is None:
                raise NotFound(f"{path}: not a ledger file (no origin)")
        return cls(path, None, origin)
