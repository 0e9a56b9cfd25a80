"""Offline verification of a whole ledger: chain, tree, stored nodes, checkpoints.

Owns: recomputing every entry hash (one hash (SHA-256 or SM3) per entry serves chain and
tree), the chain links and indexes, every stored interior node, the root at
every signed checkpoint, the checkpoints' signatures and order (a replayed
older checkpoint is named), truncation against the newest checkpoint or a
checkpoint the caller trusts, and naming the first bad entry and why.

Does not own: where keys come from (callers pass the log's AnyVerifyKey, e.g.
from the trust bundle), the progress bar (callers pass ``progress``), or
evidence bundles (``gateway.ledger.bundle``).

Memory stays O(chunk + log n): leaves are processed in aligned chunks of
2**14, each chunk's subtree is hashed level by level, and only nodes at or
above the chunk level are kept.
"""

from __future__ import annotations

import multiprocessing
import os
import struct
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Final, cast

import numpy as np

from gateway import crypto
from gateway.crypto import AnyVerifyKey
from gateway.errors import GatewayError, InvalidArgument, VerificationFailed
from gateway.keyring import KeyRing
from gateway.ledger.entry import ENTRY_VERSION, GENESIS_PREV, HEADER_LEN, decode_entry
from gateway.ledger.merkle import HASH_LEN, SHA256_TREE, TreeHasher, fold, prefix_nodes
from gateway.ledger.note import Checkpoint, open_checkpoint
from gateway.ledger.storage import CheckpointRow, SqliteLedgerStore

LOG_CHUNK: Final = 14
CHUNK: Final = 1 << LOG_CHUNK
_HEAD = struct.Struct(">BQ")

Progress = Callable[[int, int], None]  # (entries done, total)
RawPage = Sequence[tuple[int, bytes, bytes]]  # (index, entry bytes, stored hash)
EntryPage = Sequence[bytes]  # entry bytes only (each header carries its index)
NodeRange = Callable[[int, int, int], list[bytes]]  # (level, start, stop) -> stored hashes


@dataclass(frozen=True)
class Problem:
    """The first thing found wrong. ``kind`` names the failure for machines."""

    kind: str
    detail: str
    index: int | None = None  # the first bad entry, where one can be named

    def __str__(self) -> str:
        where = f"entry {self.index}: " if self.index is not None else ""
        return f"{self.kind}: {where}{self.detail}"


@dataclass(frozen=True)
class LedgerReport:
    entries: int
    checkpoints: int
    root: bytes
    checkpoint_size: int  # size of the newest valid checkpoint (0 if none)
    problem: Problem | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def uncovered(self) -> int:
        return max(0, self.entries - self.checkpoint_size)

    def raise_for_problem(self) -> None:
        if self.problem is not None:
            raise VerificationFailed(str(self.problem))


class _Stop(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


@dataclass(frozen=True)
class _Required:
    size: int
    root: bytes
    label: str  # "checkpoint #3" or "trusted checkpoint"


def check_checkpoints(
    rows: Sequence[CheckpointRow], origin: str, key: AnyVerifyKey | KeyRing
) -> list[_Required]:
    """Signatures, origin and strictly increasing sizes in issue order."""
    out: list[_Required] = []
    last_size, last_ms = -1, -1
    for n, row in enumerate(rows):
        label = f"checkpoint #{row.seq}"
        if row.seq != n:
            raise _Stop(Problem("checkpoint-missing", f"{label}: expected sequence number {n}"))
        try:
            cp = open_checkpoint(row.note, origin, keys_at(key, row.issued_ms))
        except GatewayError as exc:
            raise _Stop(Problem("checkpoint-signature", f"{label}: {exc}")) from exc
        if cp.size != row.size:
            raise _Stop(
                Problem("checkpoint-substituted", f"{label}: signed size {cp.size}, row {row.size}")
            )
        if cp.size <= last_size:
            raise _Stop(
                Problem(
                    "checkpoint-replayed",
                    f"{label} (size {cp.size}) is not newer than the one before it "
                    f"(size {last_size}): an old checkpoint was replayed",
                )
            )
        if row.issued_ms < last_ms:
            raise _Stop(Problem("checkpoint-replayed", f"{label}: issued before its predecessor"))
        last_size, last_ms = cp.size, row.issued_ms
        out.append(_Required(cp.size, cp.root, label))
    return out


@dataclass(frozen=True)
class RangeResult:
    """What one worker learned about entries ``[lo, lo + count)``."""

    lo: int
    count: int
    first_prev: bytes  # previous-hash field of entry lo (checked by the caller)
    last_hash: bytes
    chunk_roots: tuple[bytes, ...]  # roots of the complete 2**LOG_CHUNK chunks, in order
    low_nodes: dict[int, list[bytes]]  # size -> its prefix nodes below the chunk level
    tail: tuple[bytes, ...]  # leaf hashes of a final partial chunk
    problem: Problem | None


def _first_diff(a: Sequence[object], b: Sequence[object]) -> int:
    return next(
        (j for j, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def verify_range(
    rows_pages: Iterable[RawPage | EntryPage],
    lo: int,
    sizes: Sequence[int],
    stored_nodes: NodeRange | None = None,
    decode: bool = False,
    suite: str = "intl",
) -> RangeResult:
    """Verify entries starting at ``lo`` (a multiple of CHUNK) page by page.

    Each page must hold whole chunks except the last. Per page, the work is
    done in list comprehensions (one hash per entry), not per-entry Python.
    With ``stored_nodes`` the pages are (index, entry, stored hash) rows and
    the stored caches are checked too; without, pages are bare entry bytes
    (each header's index and predecessor hash are checked, so a deleted,
    inserted or reordered entry is still found).
    """
    i = lo
    prev: bytes | None = None
    first_prev = b""
    roots: list[bytes] = []
    low: dict[int, list[bytes]] = {}
    tail: tuple[bytes, ...] = ()
    want = sorted(sizes)
    th = TreeHasher.for_suite(crypto.suite(suite))

    def result(problem: Problem | None) -> RangeResult:
        return RangeResult(lo, i - lo, first_prev, prev or b"", tuple(roots), low, tail, problem)

    for page in rows_pages:
        if not page:
            continue
        m = len(page)
        entries: Sequence[bytes]
        stored: Sequence[bytes]
        idxs: Sequence[int]
        if stored_nodes is None:
            entries = cast(EntryPage, page)
            idxs, stored = range(i, i + m), ()
        else:
            rows = cast(RawPage, page)
            idxs = [r[0] for r in rows]
            entries = [r[1] for r in rows]
            stored = [r[2] for r in rows]
        if stored_nodes is not None and list(idxs) != list(range(i, i + m)):
            j = _first_diff(idxs, range(i, i + m))
            return _bump(
                result,
                i,
                j,
                Problem(
                    "entry-missing",
                    f"no entry stored at this index (next stored index is {idxs[j]}): an entry "
                    "was deleted",
                    i + j,
                ),
            )
        hashes = th.leaves(entries)
        if stored_nodes is not None and hashes != list(stored):
            j = _first_diff(hashes, stored)
            return _bump(
                result,
                i,
                j,
                Problem(
                    "entry-hash-mismatch",
                    "entry bytes do not match the recorded entry hash: the entry (or its recorded "
                    "hash) was altered",
                    i + j,
                ),
            )
        # One comparison covers every header: version, own index, predecessor hash.
        first = prev if prev is not None else entries[0][9:HEADER_LEN]
        pack = _HEAD.pack
        if not _headers_ok(entries, i, first, hashes):
            links = [e[9:HEADER_LEN] for e in entries]
            heads = b"".join([e[:9] for e in entries])
            expect = b"".join([pack(ENTRY_VERSION, k) for k in range(i, i + m)])
            j = next(
                j
                for j in range(m)
                if heads[9 * j : 9 * j + 9] != expect[9 * j : 9 * j + 9]
                or (j > 0 and links[j] != hashes[j - 1])
                or (j == 0 and prev is not None and links[0] != prev)
            )
            return _bump(result, i, j, _header_problem(entries[j], i + j))
        if decode:
            for j, e in enumerate(entries):
                try:
                    decode_entry(e)
                except InvalidArgument as exc:
                    return _bump(result, i, j, Problem("entry-malformed", str(exc), i + j))
        if prev is None:
            first_prev = entries[0][9:HEADER_LEN]
        for c in range(0, m, CHUNK):
            leaves = hashes[c : c + CHUNK]
            base = i + c
            levels = _levels(leaves, th)
            if stored_nodes is not None:
                for level in range(1, len(levels)):
                    start = base >> level
                    got = stored_nodes(level, start, start + len(levels[level]))
                    if got != levels[level]:
                        j = _first_diff(got, levels[level])
                        i += c
                        prev = hashes[c - 1] if c else prev
                        return result(
                            Problem(
                                "node-mismatch",
                                f"stored Merkle node (level {level}, index {start + j}) is wrong "
                                "or missing: proofs served from it would not verify",
                            )
                        )
            for size in want:
                if base < size <= base + len(leaves) and size % CHUNK:
                    low[size] = [
                        levels[lv][ix - (base >> lv)]
                        for lv, ix in prefix_nodes(size)
                        if lv < LOG_CHUNK
                    ]
            if len(leaves) == CHUNK:
                roots.append(levels[LOG_CHUNK][0])
            else:
                tail = tuple(leaves)
        prev = hashes[-1]
        i += m
    return result(None)


def _headers_ok(entries: Sequence[bytes], i: int, first: bytes, hashes: Sequence[bytes]) -> bool:
    """Every header: version, own index i.., predecessor hash (vectorised)."""
    m = len(entries)
    got = b"".join([e[:HEADER_LEN] for e in entries])
    if len(got) != m * HEADER_LEN:
        return False  # a short entry; the slow path names it
    rows = np.frombuffer(got, dtype=np.uint8).reshape(m, HEADER_LEN)
    if not (rows[:, 0] == ENTRY_VERSION).all():
        return False
    index = np.ascontiguousarray(rows[:, 1:9]).view(">u8").ravel()
    if not np.array_equal(index, np.arange(i, i + m, dtype=np.uint64)):
        return False
    links = np.frombuffer(first + b"".join(hashes[:-1]), dtype=np.uint8).reshape(m, HASH_LEN)
    return bool(np.array_equal(rows[:, 9:HEADER_LEN], links))


def _bump(
    result: Callable[[Problem | None], RangeResult], i: int, j: int, problem: Problem
) -> RangeResult:
    return result(problem)


def _levels(leaves: list[bytes], th: TreeHasher) -> list[list[bytes]]:
    levels = [leaves]
    cur = leaves
    while len(cur) > 1:
        cur = th.parents(cur)
        levels.append(cur)
    return levels


def _range_worker(
    path: str,
    lo: int,
    hi: int,
    sizes: tuple[int, ...],
    check_nodes: bool,
    decode: bool,
    suite: str = "intl",
) -> RangeResult:
    store = SqliteLedgerStore(path, readonly=True)
    try:
        read = store.raw_range if check_nodes else store.entry_range
        pages = (read(a, min(a + CHUNK * 4, hi)) for a in range(lo, hi, CHUNK * 4))
        nodes = store.nodes_range if check_nodes else None
        return verify_range(pages, lo, sizes, nodes, decode, suite)
    finally:
        store.close()


def combine(
    results: Sequence[RangeResult],
    required: Sequence[_Required],
    total: int,
    stored_nodes: NodeRange | None,
    th: TreeHasher = SHA256_TREE,
) -> tuple[int, bytes, Problem | None]:
    """Join range results in order: links between ranges, upper tree, checkpoint roots."""
    EMPTY_ROOT, node_hash = th.empty_root, th.node
    prev = GENESIS_PREV
    count = 0
    roots: list[bytes] = []
    low: dict[int, list[bytes]] = {}
    tail: tuple[bytes, ...] = ()
    for r in results:
        if r.count and r.first_prev != prev and not (r.problem and r.problem.index == r.lo):
            return (
                count,
                EMPTY_ROOT,
                Problem(
                    "chain-broken",
                    f"previous-hash link does not match entry {r.lo - 1}'s hash: entry {r.lo - 1} "
                    f"was altered or entry {r.lo}'s link was rewritten",
                    max(r.lo - 1, 0),
                ),
            )
        if r.problem is not None:
            return r.lo + r.count, EMPTY_ROOT, r.problem
        count += r.count
        prev = r.last_hash
        roots.extend(r.chunk_roots)
        low.update(r.low_nodes)
        tail = r.tail or tail
    upper: dict[tuple[int, int], bytes] = {}
    stack: list[tuple[int, int]] = []
    created: list[tuple[int, int]] = []
    for c, h in enumerate(roots):
        upper[(LOG_CHUNK, c)] = h
        stack.append((LOG_CHUNK, c))
        while len(stack) >= 2 and stack[-1][0] == stack[-2][0]:
            right, left = stack.pop(), stack.pop()
            parent = (left[0] + 1, left[1] >> 1)
            upper[parent] = node_hash(upper[left], upper[right])
            stack.append(parent)
            created.append(parent)
    if stored_nodes is not None:
        for level, idx in created:
            if stored_nodes(level, idx, idx + 1) != [upper[(level, idx)]]:
                return (
                    count,
                    EMPTY_ROOT,
                    Problem(
                        "node-mismatch",
                        f"stored Merkle node (level {level}, index {idx}) is wrong or missing",
                    ),
                )
    if tail and count % CHUNK:
        levels = _levels(list(tail), th)
        base = count - len(tail)
        low[count] = [
            levels[lv][ix - (base >> lv)] for lv, ix in prefix_nodes(count) if lv < LOG_CHUNK
        ]

    def root_at(size: int) -> bytes:
        nodes = prefix_nodes(size)
        lows = iter(low.get(size, []))
        return fold([upper[(lv, ix)] if lv >= LOG_CHUNK else next(lows) for lv, ix in nodes], th)

    for req in sorted(required, key=lambda r: r.size):
        if req.size > count:
            break
        if root_at(req.size) != req.root:
            return (
                count,
                EMPTY_ROOT,
                Problem(
                    "checkpoint-root-mismatch",
                    f"{req.label} (size {req.size}) does not match entries "
                    f"{_first_possible(required, req.size)}..{req.size - 1}: an entry in that range "
                    "was altered, inserted or removed, or the checkpoint was substituted",
                ),
            )
    return count, root_at(count) if count else EMPTY_ROOT, None


def _first_possible(required: Sequence[_Required], size: int) -> int:
    below = [r.size for r in required if r.size < size]
    return max(below) if below else 0


def _header_problem(e: bytes, i: int) -> Problem:
    if len(e) < HEADER_LEN or e[0] != ENTRY_VERSION:
        return Problem("entry-malformed", "not a version-1 ledger entry", i)
    (recorded,) = struct.unpack_from(">Q", e, 1)
    if recorded != i:
        return Problem(
            "entry-out-of-place",
            f"entry records index {recorded}: entries were inserted, deleted or reordered",
            i,
        )
    return Problem(
        "chain-broken",
        f"previous-hash link does not match entry {i - 1}'s hash: entry {i - 1} was altered "
        f"or entry {i}'s link was rewritten",
        i - 1 if i else 0,
    )


def verify_store(
    store: SqliteLedgerStore,
    origin: str,
    key: AnyVerifyKey | KeyRing,
    *,
    trusted: Sequence[str] = (),
    progress: Progress | None = None,
    check_nodes: bool = True,
    decode: bool = False,
    workers: int | None = None,
) -> LedgerReport:
    """Verify everything in one ledger store; never raises for a bad ledger.

    ``check_nodes`` also checks the stored caches proofs are served from (each
    entry's recorded hash and every interior node). ``workers`` > 1 verifies
    ranges in parallel processes (default: one per CPU for large ledgers).
    """
    first = key.current if isinstance(key, KeyRing) else key
    th = TreeHasher.for_suite(crypto.suite_of(first))  # the trusted key fixes the suite
    EMPTY_ROOT = th.empty_root
    rows = store.checkpoints()
    stored_suite = store.get_meta("suite") or "intl"  # self-description, named in the refusal
    if stored_suite != first.suite:
        mismatch = Problem(
            "suite-mismatch",
            f"the ledger is a suite {stored_suite} ledger but the trusted log key is suite "
            f"{first.suite}: verify it with its own federation's trust bundle",
        )
        return LedgerReport(0, len(rows), EMPTY_ROOT, 0, mismatch)
    trusted_required: list[_Required] = []
    for n, note in enumerate(trusted):
        try:
            cp = open_checkpoint(note, origin, keys_at(key, None))
        except GatewayError as exc:
            bad = Problem("trusted-checkpoint-invalid", f"trusted checkpoint {n}: {exc}")
            return LedgerReport(0, len(rows), EMPTY_ROOT, 0, bad)
        trusted_required.append(_Required(cp.size, cp.root, f"trusted checkpoint {n}"))
    total = store.size()
    # Workers need only the sizes to compute roots at; the rows' signatures are
    # checked meanwhile (a signed size differing from its row is reported then).
    sizes = tuple(
        sorted(
            {r.size for r in rows if 0 < r.size <= total}
            | {r.size for r in trusted_required if 0 < r.size <= total}
        )
    )
    span = CHUNK * 2  # small tasks keep both workers busy to the end
    bounds = [(a, min(a + span, total)) for a in range(0, total, span)]
    if workers is None:
        workers = min(os.cpu_count() or 1, 4) if total >= 4 * span else 1
    results: list[RangeResult] = []
    path = str(store.path)

    def checked() -> list[_Required]:
        return [*check_checkpoints(rows, origin, key), *trusted_required]

    if workers > 1 and len(bounds) > 1:
        # fork is only safe while this process runs a single thread (CLI, bench);
        # inside a threaded server fall back to spawn.
        method = "fork" if threading.active_count() == 1 and os.name == "posix" else "spawn"
        ctx = multiprocessing.get_context(method)
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = [
                pool.submit(_range_worker, path, a, b, sizes, check_nodes, decode, th.suite)
                for a, b in bounds
            ]
            try:
                required = checked()  # overlaps with the workers
            except _Stop as stop:
                for f in futures:
                    f.cancel()
                return LedgerReport(0, len(rows), EMPTY_ROOT, 0, stop.problem)
            for fut in futures:
                results.append(fut.result())
                if progress is not None:
                    progress(sum(r.count for r in results), total)
                if results[-1].problem is not None:
                    for f in futures:
                        f.cancel()
                    break
    else:
        try:
            required = checked()
        except _Stop as stop:
            return LedgerReport(0, len(rows), EMPTY_ROOT, 0, stop.problem)
        read = store.raw_range if check_nodes else store.entry_range
        for a, b in bounds:
            pages = (read(x, min(x + CHUNK * 4, b)) for x in range(a, b, CHUNK * 4))
            nodes = store.nodes_range if check_nodes else None
            results.append(verify_range(pages, a, sizes, nodes, decode, th.suite))
            if progress is not None:
                progress(sum(r.count for r in results), total)
            if results[-1].problem is not None:
                break
    newest = max((r.size for r in required if not r.label.startswith("trusted")), default=0)
    count, root, problem = combine(
        results, required, total, store.nodes_range if check_nodes else None, th
    )
    warnings: list[str] = []
    final: Problem | None = problem
    if final is None:
        biggest = max(required, key=lambda r: r.size, default=None)
        if biggest is not None and biggest.size > count:
            final = Problem(
                "truncated",
                f"{biggest.label} covers {biggest.size} entries but the ledger holds only "
                f"{count}: entries were removed from the end",
                count,
            )
        elif count > newest:
            warnings.append(
                f"{count - newest} newest entries are not yet covered by a signed checkpoint"
            )
        if not required:
            warnings.append("no signed checkpoint: only the internal chain was checked")
    return LedgerReport(count, len(rows), root, newest, final, tuple(warnings))


def checkpoint_of(note: str, origin: str, key: AnyVerifyKey | KeyRing) -> Checkpoint:
    return open_checkpoint(note, origin, keys_at(key, None))


def keys_at(key: AnyVerifyKey | KeyRing, when_ms: int | None) -> tuple[AnyVerifyKey, ...]:
    """The log keys to check a signature made at ``when_ms`` with: a single
    key, or the trust bundle's ledger keys of the log valid then (a key
    rotation keeps old checkpoints verifiable); None: any key of the ring."""
    return key.at(when_ms) if isinstance(key, KeyRing) else (key,)
