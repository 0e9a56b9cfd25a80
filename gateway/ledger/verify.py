"""Offline verification of a whole ledger: chain, tree, stored nodes, checkpoints, witnesses.

Owns: recomputing every entry hash (one hash per entry, SHA-256 or SM3 as the
ledger's suite says, serves chain and tree), the chain links, indexes and non-decreasing timestamps, every stored
interior node, the root at every signed checkpoint, the checkpoints'
signatures and order (a replayed older checkpoint is named), every
cosignature against the trusted witness keys (who cosigned each checkpoint;
an invalid cosignature fails; ``require_witnesses`` for the newest),
checkpoints obtained from outside the file (a witness's note: the ledger must
contain the tree it signs, else truncation or a fork is named), and naming the
first bad entry and why.

Pure over a small ``LedgerReader`` protocol: storage sits at the edge (the
SQLite store implements the protocol; ``Reopenable`` lets worker processes
open their own reader). Hashing is ``gateway.ledger.merkle``'s, through the
``TreeHasher`` of the suite the trusted log key is of; a ledger that describes
itself as the other suite's is named as a suite mismatch.

Does not own: where keys come from (callers pass a ``TrustedKeys`` from the
trust bundle, or one log key), the progress bar (callers pass ``progress``),
or evidence bundles (``gateway.ledger.bundle``).

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
from dataclasses import dataclass, field, replace
from typing import Final, Protocol, cast, runtime_checkable

import numpy as np

from gateway import crypto
from gateway.crypto import AnyVerifyKey
from gateway.errors import GatewayError, InvalidArgument, VerificationFailed
from gateway.keyring import KeyRing
from gateway.ledger.entry import ENTRY_VERSION, GENESIS_PREV, HEADER_LEN, decode_entry
from gateway.ledger.merkle import (
    HASH_LEN,
    SHA256_TREE,
    TreeHasher,
    fold,
    prefix_nodes,
    subtree_levels,
)
from gateway.ledger.note import (
    SIG_COSIGNATURE_V1,
    SIG_ED25519,
    Checkpoint,
    NoteVerifier,
    key_id,
    open_note,
    parse_note,
    verify_cosignature,
)
from gateway.ledger.signatures import check_entry_signatures
from gateway.ledger.trustkeys import TrustedKeys
from gateway.limits import DEFAULT_LIMITS, Limits

LOG_CHUNK: Final = 14
CHUNK: Final = 1 << LOG_CHUNK
_HEAD = struct.Struct(">BQ")
_TS_END: Final = HEADER_LEN + 8  # every entry's timestamp_ms follows the header
_U64 = struct.Struct(">Q")

Progress = Callable[[int, int], None]  # (entries done, total)
LogKeys = Callable[[int | None], Sequence[AnyVerifyKey]]  # time (ms; None: any) -> log keys
RawPage = Sequence[tuple[int, bytes, bytes]]  # (index, entry bytes, stored hash)
EntryPage = Sequence[bytes]  # entry bytes only (each header carries its index)
NodeRange = Callable[[int, int, int], list[bytes]]  # (level, start, stop) -> stored hashes


class StoredCheckpoint(Protocol):
    """A checkpoint as the ledger stores it (issue order, size, signed note)."""

    @property
    def seq(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def note(self) -> str: ...
    @property
    def issued_ms(self) -> int: ...


class LedgerReader(Protocol):
    """What verification reads from a ledger; ``SqliteLedgerStore`` is one."""

    def size(self) -> int: ...

    def get_meta(self, key: str) -> str | None:
        """The ledger's self-description (``origin``, ``suite``); None if absent."""
        ...

    def checkpoints(self) -> Sequence[StoredCheckpoint]: ...

    def raw_range(self, start: int, stop: int) -> Sequence[tuple[int, bytes, bytes]]:
        """(index, entry bytes, stored entry hash) with start <= index < stop, in order."""
        ...

    def entry_range(self, start: int, stop: int) -> Sequence[bytes]: ...

    def nodes_range(self, level: int, start: int, stop: int) -> list[bytes]: ...

    def close(self) -> None: ...


@runtime_checkable
class Reopenable(Protocol):
    """A reader that worker processes can open again (the callable must pickle)."""

    def reopener(self) -> Callable[[], LedgerReader]: ...


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
class CheckpointInfo:
    """One checkpoint and who cosigned it (jurisdictions whose cosignature verified)."""

    label: str  # "checkpoint #3" or "outside checkpoint 1 (seen-by-120000.note)"
    size: int
    cosigners: tuple[str, ...]
    ignored: tuple[str, ...] = ()  # names of signature lines no trusted key accounts for


@dataclass(frozen=True)
class LedgerReport:
    entries: int  # entries stored in the file, whatever verification found
    checkpoints: int  # checkpoints stored in the file
    root: bytes
    checkpoint_size: int  # size of the newest stored checkpoint (0 if none)
    problem: Problem | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)
    verified: int = 0  # entries verified before the first problem (all of them when ok)
    covered: int = 0  # entries covered by a verified signed checkpoint, stored or outside
    stored: tuple[CheckpointInfo, ...] = ()
    outside: tuple[CheckpointInfo, ...] = ()
    witnesses_checked: bool = False  # False: no witness keys were given
    signatures: int | None = None  # exchange signatures verified (None: not checked)

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def uncovered(self) -> int:
        return max(0, self.entries - self.covered)

    @property
    def truncation_excluded_below(self) -> int:
        """Entries proven present by checkpoints from outside the file (0: none given),
        so truncation below this size is excluded; above it, it cannot be."""
        return max((c.size for c in self.outside), default=0) if self.ok else 0

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
    label: str  # "checkpoint #3" or "outside checkpoint 0"
    outside: bool = False


# --------------------------------------------------------------------------
# Signatures: the log's over each checkpoint, the witnesses' cosignatures
# --------------------------------------------------------------------------


def open_log_checkpoint(
    note: str, origin: str, keys: Sequence[AnyVerifyKey], limits: Limits = DEFAULT_LIMITS
) -> Checkpoint:
    """Verify the log's signature with any of ``keys`` (key name = origin) and parse."""
    text, _ = open_note(note, [NoteVerifier(origin, k) for k in keys], limits)
    cp = Checkpoint.parse(text)
    if cp.origin != origin:
        raise VerificationFailed(f"checkpoint origin: expected {origin!r}, got {cp.origin!r}")
    return cp


def checkpoint_cosigners(
    note: str,
    origin: str,
    log_keys: Sequence[AnyVerifyKey],
    trusted: TrustedKeys,
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(jurisdictions whose cosignature verifies, names of lines nothing accounts for).

    A line under a trusted witness's name must verify with a key the trust
    bundle lists for that witness at the cosignature's time: a flipped, forged
    or re-keyed cosignature raises VerificationFailed. The log's own
    signature(s) and lines under unknown names are not cosignatures.
    """
    found, ignored = checkpoint_cosignatures(note, origin, log_keys, trusted, limits)
    return tuple(sorted({j for j, _, _ in found})), ignored


def checkpoint_cosignatures(
    note: str,
    origin: str,
    log_keys: Sequence[AnyVerifyKey],
    trusted: TrustedKeys,
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[tuple[tuple[str, str, int], ...], tuple[str, ...]]:
    """As ``checkpoint_cosigners``, each verified cosignature as (jurisdiction, witness
    name, its timestamp in seconds), checked with the witness keys (current or
    retired) the trust bundle lists at that time."""
    text, sigs = parse_note(note, limits)
    log_ids = {key_id(origin, SIG_ED25519, k) for k in log_keys}
    log = trusted.by_origin(origin)
    found: list[tuple[str, str, int]] = []
    ignored: list[str] = []
    for s in sigs:
        if s.name == origin and s.key_id in log_ids:
            continue
        signer = trusted.by_witness(s.name)
        if signer is None or (log is not None and signer.jurisdiction == log.jurisdiction):
            ignored.append(s.name)
            continue
        if len(s.signature) < 8:
            raise VerificationFailed(f"malformed cosignature from witness {s.name}")
        (t,) = _U64.unpack(s.signature[:8])
        # Exact, however far in the future: "None" (any time) would let a retired
        # witness key cosign again by stamping a huge time.
        at_ms = t * 1000
        candidates = [
            k
            for k in trusted.keys(signer.jurisdiction, "witness", at_ms)
            if key_id(s.name, SIG_COSIGNATURE_V1, k) == s.key_id
        ]
        if not candidates:
            raise VerificationFailed(
                f"cosignature from witness {s.name} has key id {s.key_id.hex()}, which is not "
                f"a key the trust bundle lists for {signer.jurisdiction} at that time"
            )
        stamped = verify_cosignature(
            text, s, NoteVerifier(s.name, candidates[0], SIG_COSIGNATURE_V1)
        )
        if all(j != signer.jurisdiction for j, _, _ in found):
            found.append((signer.jurisdiction, s.name, stamped))
    return tuple(sorted(found)), tuple(ignored)


def check_checkpoints(
    rows: Sequence[StoredCheckpoint],
    origin: str,
    keys: Sequence[AnyVerifyKey] | LogKeys,
    trusted: TrustedKeys | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[list[_Required], list[CheckpointInfo]]:
    """Signatures, cosignatures, origin and strictly increasing sizes in issue order."""
    out: list[_Required] = []
    infos: list[CheckpointInfo] = []
    last_size, last_ms = -1, -1
    for n, row in enumerate(rows):
        label = f"checkpoint #{row.seq}"
        if row.seq != n:
            raise _Stop(Problem("checkpoint-missing", f"{label}: expected sequence number {n}"))
        try:
            at = keys(row.issued_ms) if callable(keys) else keys
            cp = open_log_checkpoint(row.note, origin, at, limits)
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
        cosigners: tuple[str, ...] = ()
        ignored: tuple[str, ...] = ()
        if trusted is not None:
            try:
                cosigners, ignored = checkpoint_cosigners(row.note, origin, at, trusted, limits)
            except GatewayError as exc:
                raise _Stop(Problem("cosignature-invalid", f"{label}: {exc}")) from exc
        last_size, last_ms = cp.size, row.issued_ms
        out.append(_Required(cp.size, cp.root, label))
        infos.append(CheckpointInfo(label, cp.size, cosigners, ignored))
    return out, infos


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
    first_ms: int = 0  # timestamp of entry lo (checked by the caller against lo - 1)
    last_ms: int = 0
    signatures: int = 0  # exchange signatures that verified
    unverifiable: int = 0  # by members the trusted keys do not list


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
    signers: TrustedKeys | None = None,
    limits: Limits = DEFAULT_LIMITS,
    suite: str = "intl",
) -> RangeResult:
    """Verify entries starting at ``lo`` (a multiple of CHUNK) page by page,
    hashing with ``suite``'s tree hash.

    With ``signers`` every entry is decoded and the exchange signatures it
    records are checked against those keys (``gateway.ledger.signatures``).

    Each page must hold whole chunks except the last. Per page, the work is
    done in batch hashing (one hash per entry), not per-entry Python.
    With ``stored_nodes`` the pages are (index, entry, stored hash) rows and
    the stored caches are checked too; without, pages are bare entry bytes
    (each header's index and predecessor hash are checked, so a deleted,
    inserted or reordered entry is still found).
    """
    i = lo
    prev: bytes | None = None
    first_prev = b""
    first_ms = last_ms = 0
    n_sigs = n_unknown = 0
    roots: list[bytes] = []
    low: dict[int, list[bytes]] = {}
    tail: tuple[bytes, ...] = ()
    want = sorted(sizes)
    th = TreeHasher.for_suite(crypto.suite(suite))

    def result(problem: Problem | None) -> RangeResult:
        return RangeResult(
            lo, i - lo, first_prev, prev or b"", tuple(roots), low, tail, problem, first_ms,
            last_ms, n_sigs, n_unknown,
        )  # fmt: skip

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
            return result(
                Problem(
                    "entry-missing",
                    f"no entry stored at this index (next stored index is {idxs[j]}): an entry "
                    "was deleted",
                    i + j,
                )
            )
        hashes = th.leaves(entries)
        if stored_nodes is not None and hashes != list(stored):
            j = _first_diff(hashes, stored)
            return result(
                Problem(
                    "entry-hash-mismatch",
                    "entry bytes do not match the recorded entry hash: the entry (or its recorded "
                    "hash) was altered",
                    i + j,
                )
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
            return result(_header_problem(entries[j], i + j))
        times = _timestamps(entries)
        if times is None:
            j = next(j for j, e in enumerate(entries) if len(e) < _TS_END)
            return result(Problem("entry-malformed", "entry is truncated", i + j))
        if (prev is not None and int(times[0]) < last_ms) or not bool((np.diff(times) >= 0).all()):
            ts = [last_ms if prev is not None else int(times[0]), *(int(t) for t in times)]
            j = next(j for j in range(m) if ts[j + 1] < ts[j])
            return result(_time_problem(i + j))
        if decode or signers is not None:
            for j, e in enumerate(entries):
                try:
                    ev = decode_entry(e, limits).event
                except InvalidArgument as exc:
                    return result(Problem("entry-malformed", str(exc), i + j))
                if signers is not None:
                    sc = check_entry_signatures(ev, signers)
                    if sc.problem:
                        return result(Problem("entry-signature-invalid", sc.problem, i + j))
                    n_sigs += sc.checked
                    n_unknown += sc.unverifiable
        if prev is None:
            first_prev = entries[0][9:HEADER_LEN]
            first_ms = int(times[0])
        last_ms = int(times[-1])
        for c in range(0, m, CHUNK):
            leaves = hashes[c : c + CHUNK]
            base = i + c
            levels = subtree_levels(leaves, th)
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


def _timestamps(entries: Sequence[bytes]) -> np.ndarray | None:
    """Every entry's timestamp_ms (vectorised); None if an entry is too short to hold one."""
    got = b"".join([e[HEADER_LEN:_TS_END] for e in entries])
    if len(got) != 8 * len(entries):
        return None
    return np.frombuffer(got, dtype=">u8").astype(np.int64)


def _time_problem(i: int) -> Problem:
    return Problem(
        "entry-time-order",
        f"entry records an earlier time than entry {i - 1}: the ledger records times in "
        "non-decreasing order, so entries were reordered or a timestamp was rewritten",
        i,
    )


def _range_worker(
    reopen: Callable[[], LedgerReader],
    lo: int,
    hi: int,
    sizes: tuple[int, ...],
    check_nodes: bool,
    decode: bool,
    signers: TrustedKeys | None,
    limits: Limits,
    suite: str,
) -> RangeResult:
    reader = reopen()
    try:
        return _verify_bounds(reader, lo, hi, sizes, check_nodes, decode, signers, limits, suite)
    finally:
        reader.close()


def _verify_bounds(
    reader: LedgerReader,
    lo: int,
    hi: int,
    sizes: Sequence[int],
    check_nodes: bool,
    decode: bool,
    signers: TrustedKeys | None,
    limits: Limits,
    suite: str,
) -> RangeResult:
    read: Callable[[int, int], RawPage | EntryPage] = (
        reader.raw_range if check_nodes else reader.entry_range
    )
    pages = (read(a, min(a + CHUNK * 4, hi)) for a in range(lo, hi, CHUNK * 4))
    nodes = reader.nodes_range if check_nodes else None
    return verify_range(pages, lo, sizes, nodes, decode, signers, limits, suite)


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
    prev_ms = 0
    count = 0
    roots: list[bytes] = []
    low: dict[int, list[bytes]] = {}
    tail: tuple[bytes, ...] = ()
    for r in results:
        if (r.count or r.problem) and r.lo != count:
            return count, EMPTY_ROOT, _missing(count)  # a range ended early
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
        if r.count and r.lo and r.first_ms < prev_ms:
            return count, EMPTY_ROOT, _time_problem(r.lo)
        if r.problem is not None:
            return r.lo + r.count, EMPTY_ROOT, r.problem
        count += r.count
        prev = r.last_hash
        prev_ms = r.last_ms
        roots.extend(r.chunk_roots)
        low.update(r.low_nodes)
        tail = r.tail or tail
    if count != total:
        return count, EMPTY_ROOT, _missing(count)
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
        levels = subtree_levels(list(tail), th)
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
        if req.size == 0 and req.root != EMPTY_ROOT:
            # Nothing to fork or alter below size 0: the note itself is malformed (a
            # witness refuses to cosign it), whether stored or from outside the file.
            return (
                count,
                EMPTY_ROOT,
                Problem(
                    "trusted-checkpoint-invalid" if req.outside else "checkpoint-root-mismatch",
                    f"{req.label} signs size 0 with a root other than the empty tree's",
                ),
            )
        if req.size and root_at(req.size) != req.root:
            if req.outside:
                return (
                    count,
                    EMPTY_ROOT,
                    Problem(
                        "fork",
                        f"{req.label} signs a different tree of size {req.size} than this file "
                        "holds: the log showed the witness another history (a fork), or entries "
                        f"below {req.size} were altered",
                    ),
                )
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


def _missing(index: int) -> Problem:
    return Problem(
        "entry-missing",
        "no entry stored at this index, though entries are stored after it: an entry was deleted",
        index,
    )


def _first_possible(required: Sequence[_Required], size: int) -> int:
    below = [r.size for r in required if r.size < size]
    return max(below) if below else 0


def _header_problem(e: bytes, i: int) -> Problem:
    if len(e) < HEADER_LEN or e[0] != ENTRY_VERSION:
        return Problem("entry-malformed", f"not a version-{ENTRY_VERSION} ledger entry", i)
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


# --------------------------------------------------------------------------
# The whole ledger
# --------------------------------------------------------------------------


def keys_at(key: AnyVerifyKey | KeyRing, when_ms: int | None) -> tuple[AnyVerifyKey, ...]:
    """The log keys to check a signature made at ``when_ms`` with: a single
    key, or the trust bundle's ledger keys of the log valid then (a key
    rotation keeps old checkpoints verifiable); None: any key of the ring."""
    return key.at(when_ms) if isinstance(key, KeyRing) else (key,)


def _log_keys(
    origin: str, keys: AnyVerifyKey | KeyRing | TrustedKeys
) -> tuple[LogKeys, TrustedKeys | None]:
    """The log's keys valid at a time (ms; None: any), and the trusted keys if given."""
    if isinstance(keys, TrustedKeys):
        keys.log_keys(origin)  # refuses an origin the trust bundle does not list
        signer = keys.by_origin(origin)
        assert signer is not None
        j = signer.jurisdiction
        return (lambda ms: keys.keys(j, "ledger", ms)), keys
    fixed = keys
    return (lambda ms: keys_at(fixed, ms)), None


def verify_store(
    store: LedgerReader,
    origin: str,
    keys: AnyVerifyKey | KeyRing | TrustedKeys,
    *,
    trusted: Sequence[tuple[str, str] | str] = (),
    require_witnesses: int = 0,
    progress: Progress | None = None,
    check_nodes: bool = True,
    decode: bool = False,
    check_signatures: bool = False,
    workers: int | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> LedgerReport:
    """Verify everything in one ledger; never raises for a bad ledger.

    ``keys``: the trusted keys (a ``TrustedKeys`` from the trust bundle checks
    cosignatures too), or just the log's key. ``trusted``: checkpoints obtained
    from outside the file, as notes or (label, note) pairs. ``check_nodes``
    also checks the stored caches proofs are served from (each entry's
    recorded hash and every interior node). ``check_signatures`` (needs a
    ``TrustedKeys``) checks both exchange signatures every entry records
    against the member's signing key at the entry's time. ``workers`` > 1 verifies ranges in
    parallel processes (default: one per CPU for large ledgers, when the reader
    is ``Reopenable``).
    """
    rows = store.checkpoints()
    total = store.size()
    newest_size = rows[-1].size if rows else 0
    log_keys, witness_keys = _log_keys(origin, keys)
    first = log_keys(None)[0]
    th = TreeHasher.for_suite(crypto.suite_of(first))  # the trusted key fixes the suite

    def failed(problem: Problem, verified: int = 0) -> LedgerReport:
        return LedgerReport(
            total, len(rows), th.empty_root, newest_size, problem, verified=verified
        )

    stored_suite = store.get_meta("suite") or "intl"  # self-description, named in the refusal
    if stored_suite != first.suite:
        return failed(
            Problem(
                "suite-mismatch",
                f"the ledger is a suite {stored_suite} ledger but the trusted log key is suite "
                f"{first.suite}: verify it with its own federation's trust bundle",
            )
        )
    signers = witness_keys if check_signatures else None
    if check_signatures and signers is None:
        raise InvalidArgument("checking entry signatures needs the trust bundle's keys")
    outside: list[_Required] = []
    outside_info: list[CheckpointInfo] = []
    for n, item in enumerate(trusted):
        label, note = item if isinstance(item, tuple) else (f"outside checkpoint {n}", item)
        try:
            cp = open_log_checkpoint(note, origin, log_keys(None), limits)
            cosigners: tuple[str, ...] = ()
            ignored: tuple[str, ...] = ()
            if witness_keys is not None:
                cosigners, ignored = checkpoint_cosigners(
                    note, origin, log_keys(None), witness_keys, limits
                )
        except GatewayError as exc:
            return failed(Problem("trusted-checkpoint-invalid", f"{label}: {exc}"))
        outside.append(_Required(cp.size, cp.root, label, outside=True))
        outside_info.append(CheckpointInfo(label, cp.size, cosigners, ignored))
    # Workers need only the sizes to compute roots at; the rows' signatures are
    # checked meanwhile (a signed size differing from its row is reported then).
    sizes = tuple(
        sorted(
            {r.size for r in rows if 0 < r.size <= total}
            | {r.size for r in outside if 0 < r.size <= total}
        )
    )
    span = CHUNK * 2  # small tasks keep both workers busy to the end
    bounds = [(a, min(a + span, total)) for a in range(0, total, span)]
    reopen = store.reopener() if isinstance(store, Reopenable) else None
    if workers is None:
        workers = min(os.cpu_count() or 1, 4) if total >= 4 * span else 1
    if reopen is None:
        workers = 1
    results: list[RangeResult] = []
    infos: list[CheckpointInfo] = []

    def checked() -> list[_Required]:
        required, found = check_checkpoints(rows, origin, log_keys, witness_keys, limits)
        infos.extend(found)
        return [*required, *outside]

    if workers > 1 and len(bounds) > 1 and reopen is not None:
        # fork is only safe while this process runs a single thread (CLI, bench);
        # inside a threaded server fall back to spawn.
        method = "fork" if threading.active_count() == 1 and os.name == "posix" else "spawn"
        ctx = multiprocessing.get_context(method)
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = [
                pool.submit(
                    _range_worker,
                    reopen,
                    a,
                    b,
                    sizes,
                    check_nodes,
                    decode,
                    signers,
                    limits,
                    th.suite,
                )
                for a, b in bounds
            ]
            try:
                required = checked()  # overlaps with the workers
            except _Stop as stop:
                for f in futures:
                    f.cancel()
                return failed(stop.problem)
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
            return failed(stop.problem)
        for a, b in bounds:
            results.append(
                _verify_bounds(store, a, b, sizes, check_nodes, decode, signers, limits, th.suite)
            )
            if progress is not None:
                progress(sum(r.count for r in results), total)
            if results[-1].problem is not None:
                break
    count, root, problem = combine(
        results, required, total, store.nodes_range if check_nodes else None, th
    )
    report = _conclude(
        total, len(rows), count, root, problem, required, infos, require_witnesses, th.empty_root
    )
    unknown = sum(r.unverifiable for r in results)
    if unknown and report.ok:
        report = replace(
            report,
            warnings=(
                *report.warnings,
                f"{unknown} exchange signatures are by members the {keys.source if isinstance(keys, TrustedKeys) else 'key'} "
                "lists no signing key for at that time; they were not checked",
            ),
        )
    return replace(
        report,
        checkpoint_size=newest_size,
        signatures=sum(r.signatures for r in results) if signers is not None else None,
        stored=tuple(infos),
        outside=tuple(outside_info),
        witnesses_checked=witness_keys is not None,
    )


def _conclude(
    total: int,
    n_rows: int,
    count: int,
    root: bytes,
    problem: Problem | None,
    required: Sequence[_Required],
    infos: Sequence[CheckpointInfo],
    require_witnesses: int,
    empty_root: bytes,
) -> LedgerReport:
    """Truncation, coverage, witness requirement and warnings once the entries verified."""
    if problem is not None:
        return LedgerReport(total, n_rows, empty_root, 0, problem, verified=count)
    biggest = max(required, key=lambda r: r.size, default=None)
    if biggest is not None and biggest.size > count:
        return LedgerReport(
            total,
            n_rows,
            empty_root,
            0,
            Problem(
                "truncated",
                f"{biggest.label} covers {biggest.size} entries but the ledger holds only "
                f"{count}: entries were removed from the end",
                count,
            ),
            verified=count,
        )
    if require_witnesses > 0:
        newest = infos[-1] if infos else None
        have = len(newest.cosigners) if newest else 0
        if have < require_witnesses:
            what = (
                f"the newest checkpoint ({newest.label}, size {newest.size}) is cosigned by "
                f"{have} trusted witness(es) ({', '.join(newest.cosigners) or 'none'})"
                if newest
                else "there is no checkpoint"
            )
            return LedgerReport(
                total,
                n_rows,
                empty_root,
                0,
                Problem(
                    "witnesses-missing", f"{require_witnesses} witness(es) required but {what}"
                ),
                verified=count,
            )
    covered = max((r.size for r in required), default=0)
    warnings: list[str] = []
    if count > covered:
        warnings.append(
            f"{count - covered} newest entries are not yet covered by a signed checkpoint"
        )
    if not required:
        warnings.append("no signed checkpoint: only the internal chain was checked")
    for info in infos:
        if info.ignored:
            warnings.append(
                f"{info.label}: signature lines from no trusted key ignored: "
                f"{', '.join(info.ignored)}"
            )
    return LedgerReport(total, n_rows, root, 0, None, tuple(warnings), count, covered)
