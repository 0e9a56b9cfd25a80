"""Tampering with a ledger file is detected and named (issue item 8), also via the CLI."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.crypto import SigningKey
from gateway.ledger.ledger import SqliteLedger
from gateway.ledger.merkle import TreeHasher
from gateway.ledger.note import Checkpoint, sign_checkpoint, vkey
from gateway.ledger.storage import SqliteLedgerStore, node_key
from gateway.ledger.verify import LedgerReport, verify_store
from tests.ledger.ledger_testkit import ORIGIN, make_event

N = 40
NewLedger = Callable[..., SqliteLedger]


@pytest.fixture
def path(new_ledger: NewLedger, tmp_path: Path) -> Path:
    new_ledger(n=N, every=8).close()
    return tmp_path / "ledger.db"


def run_verify(path: Path, key: SigningKey, trusted: tuple[str, ...] = ()) -> LedgerReport:
    store = SqliteLedgerStore(path, readonly=True)
    try:
        return verify_store(store, ORIGIN, key.verify_key, trusted=trusted)
    finally:
        store.close()


def sql(path: Path, *stmts: tuple[str, tuple[object, ...]]) -> None:
    db = sqlite3.connect(path)
    for s, p in stmts:
        db.execute(s, p)
    db.commit()
    db.close()


def entry(path: Path, i: int) -> tuple[bytes, bytes]:
    db = sqlite3.connect(path)
    row = db.execute("SELECT entry, entry_hash FROM ledger_entries WHERE idx = ?", (i,)).fetchone()
    db.close()
    return bytes(row[0]), bytes(row[1])


def test_untouched_ledger_verifies(path: Path, log_key: SigningKey) -> None:
    r = run_verify(path, log_key)
    assert r.ok and r.entries == N and r.checkpoints == N // 8


@pytest.mark.parametrize("i", [0, 13, N - 1])
@pytest.mark.parametrize("offset", [0, 5, 20, 60, -1])
def test_flipped_byte_in_an_entry_is_detected_at_that_entry(
    path: Path, log_key: SigningKey, i: int, offset: int
) -> None:
    data, _ = entry(path, i)
    b = bytearray(data)
    b[offset] ^= 0x01
    sql(path, ("UPDATE ledger_entries SET entry = ? WHERE idx = ?", (bytes(b), i)))
    r = run_verify(path, log_key)
    assert r.problem is not None and r.problem.index == i
    assert r.problem.kind in (
        "entry-hash-mismatch",
        "entry-malformed",
        "entry-out-of-place",
        "chain-broken",
    )


def test_flipped_byte_with_recomputed_hash_is_blamed_on_that_entry(
    path: Path, log_key: SigningKey, tree: TreeHasher
) -> None:
    data, _ = entry(path, 10)
    b = bytearray(data)
    b[-2] ^= 0x20
    h = tree.leaf(bytes(b))
    sql(path, ("UPDATE ledger_entries SET entry = ?, entry_hash = ? WHERE idx = 10", (bytes(b), h)))
    r = run_verify(path, log_key)
    assert r.problem is not None and r.problem.kind == "chain-broken" and r.problem.index == 10


def test_deleted_entry_is_named(path: Path, log_key: SigningKey) -> None:
    sql(path, ("DELETE FROM ledger_entries WHERE idx = 17", ()))
    r = run_verify(path, log_key)
    assert r.problem is not None and r.problem.kind == "entry-missing" and r.problem.index == 17


def test_deleted_entry_with_renumbering_is_named(path: Path, log_key: SigningKey) -> None:
    sql(
        path,
        ("DELETE FROM ledger_entries WHERE idx = 17", ()),
        ("UPDATE ledger_entries SET idx = idx - 1 WHERE idx > 17", ()),
    )
    r = run_verify(path, log_key)
    assert (
        r.problem is not None and r.problem.kind == "entry-out-of-place" and r.problem.index == 17
    )


def test_inserted_entry_is_named(path: Path, log_key: SigningKey) -> None:
    data, h = entry(path, 5)
    sql(
        path,
        ("UPDATE ledger_entries SET idx = idx + 1000 WHERE idx >= 6", ()),
        ("UPDATE ledger_entries SET idx = idx - 999 WHERE idx >= 1006", ()),
        ("INSERT INTO ledger_entries VALUES (6, ?, ?, 'forged', 0)", (data, h)),
    )
    r = run_verify(path, log_key)
    assert r.problem is not None and r.problem.kind == "entry-out-of-place" and r.problem.index == 6


def test_reordered_entries_are_named(path: Path, log_key: SigningKey) -> None:
    sql(
        path,
        ("UPDATE ledger_entries SET idx = -1 WHERE idx = 20", ()),
        ("UPDATE ledger_entries SET idx = 20 WHERE idx = 21", ()),
        ("UPDATE ledger_entries SET idx = 21 WHERE idx = -1", ()),
    )
    r = run_verify(path, log_key)
    assert (
        r.problem is not None and r.problem.kind == "entry-out-of-place" and r.problem.index == 20
    )


def test_truncation_is_detected_against_the_newest_checkpoint(
    path: Path, log_key: SigningKey
) -> None:
    sql(path, ("DELETE FROM ledger_entries WHERE idx >= 30", ()))
    r = run_verify(path, log_key)
    assert r.problem is not None and r.problem.kind == "truncated" and r.problem.index == 30


def test_truncation_with_checkpoints_removed_is_caught_by_a_trusted_checkpoint(
    path: Path, log_key: SigningKey
) -> None:
    store = SqliteLedgerStore(path, readonly=True)
    newest = store.latest_checkpoint()
    store.close()
    assert newest is not None
    sql(
        path,
        ("DELETE FROM ledger_entries WHERE idx >= 30", ()),
        ("DELETE FROM ledger_checkpoints WHERE size > 30", ()),
    )
    assert run_verify(path, log_key).ok  # invisible from the file alone...
    r = run_verify(path, log_key, trusted=(newest.note,))  # ...but not to a witness's copy
    assert r.problem is not None and r.problem.kind == "truncated"


def test_substituted_checkpoint_is_detected(path: Path, log_key: SigningKey) -> None:
    forged = sign_checkpoint(Checkpoint(ORIGIN, 16, bytes(32)), log_key)  # right key, wrong root
    sql(path, ("UPDATE ledger_checkpoints SET note = ? WHERE size = 16", (forged,)))
    r = run_verify(path, log_key)
    assert r.problem is not None and r.problem.kind == "checkpoint-root-mismatch"


@pytest.mark.parametrize("grown", [0, 5])
def test_size_0_checkpoint_with_a_root_other_than_the_empty_trees_is_detected(
    new_ledger: NewLedger, tmp_path: Path, log_key: SigningKey, grown: int
) -> None:
    # A new gateway's first checkpoint is of its empty log. One carrying any other root
    # is malformed (a witness refuses to cosign it); verify skipped the root at size 0,
    # stored or from outside the file, and passed it.
    ledger = new_ledger(n=0)
    ledger.checkpoint_now()
    if grown:
        ledger.append_many(make_event(i) for i in range(grown))
        ledger.checkpoint_now()
    ledger.close()
    p = tmp_path / "ledger.db"
    forged = sign_checkpoint(Checkpoint(ORIGIN, 0, bytes(32)), log_key)  # right key, wrong root
    r = run_verify(p, log_key, trusted=(forged,))
    assert r.problem is not None and r.problem.kind == "trusted-checkpoint-invalid"
    assert "size 0" in r.problem.detail
    sql(p, ("UPDATE ledger_checkpoints SET note = ? WHERE size = 0", (forged,)))
    r = run_verify(p, log_key)
    assert r.problem is not None and r.problem.kind == "checkpoint-root-mismatch"


def test_checkpoint_signed_by_another_key_is_detected(path: Path, log_key: SigningKey) -> None:
    store = SqliteLedgerStore(path, readonly=True)
    real = next(c for c in store.checkpoints() if c.size == 16)
    store.close()
    body = real.note.split("\n\n")[0] + "\n"
    other = sign_checkpoint(Checkpoint.parse(body), SigningKey(bytes(32)))
    sql(path, ("UPDATE ledger_checkpoints SET note = ? WHERE size = 16", (other,)))
    r = run_verify(path, log_key)
    assert r.problem is not None and r.problem.kind == "checkpoint-signature"


def test_replayed_old_checkpoint_is_detected(path: Path, log_key: SigningKey) -> None:
    store = SqliteLedgerStore(path, readonly=True)
    old = store.checkpoints()[1]
    store.close()
    sql(
        path,
        (
            "INSERT INTO ledger_checkpoints VALUES (?, ?, ?, ?)",
            (N // 8, old.size, old.note, old.issued_ms + 10**6),
        ),
    )
    r = run_verify(path, log_key)
    assert r.problem is not None and r.problem.kind == "checkpoint-replayed"


def test_tampered_merkle_node_is_detected(path: Path, log_key: SigningKey) -> None:
    sql(path, ("UPDATE ledger_nodes SET hash = ? WHERE id = ?", (bytes(32), node_key(2, 3))))
    r = run_verify(path, log_key)
    assert r.problem is not None and r.problem.kind == "node-mismatch"


def test_cli_verify_names_first_bad_entry_and_exits_1(
    path: Path, log_key: SigningKey, capsys: pytest.CaptureFixture[str]
) -> None:
    key = vkey(ORIGIN, log_key.verify_key)
    assert main(["ledger", "verify", str(path), "--key", key]) == 0
    data, _ = entry(path, 22)
    sql(path, ("UPDATE ledger_entries SET entry = ? WHERE idx = 22", (data[:-1] + b"X",)))
    assert main(["ledger", "verify", str(path), "--key", key]) == 1
    out = capsys.readouterr()
    assert "first bad entry: 22" in out.out and "entry-hash-mismatch" in out.out
    assert "verification FAILED" in out.err


def test_cli_verify_with_wrong_key_fails(path: Path) -> None:
    other = vkey(ORIGIN, SigningKey(bytes(32)).verify_key)
    assert main(["ledger", "verify", str(path), "--key", other]) == 1


def test_rewritten_timestamp_that_goes_back_in_time_is_named(
    path: Path, log_key: SigningKey, tree: TreeHasher
) -> None:
    """Times along the ledger never decrease (a time range is an index range), so a
    timestamp rewritten earlier, hash and chain re-sealed from there on, is named."""
    import struct

    from gateway.ledger.entry import HEADER_LEN

    db = sqlite3.connect(path)
    rows = db.execute("SELECT idx, entry FROM ledger_entries ORDER BY idx").fetchall()
    prev = None
    for idx, data in rows:
        b = bytearray(data)
        if prev is not None:
            b[9:HEADER_LEN] = prev
        if idx == 25:
            b[HEADER_LEN : HEADER_LEN + 8] = struct.pack(">Q", 1_600_000_000_000)
        h = tree.leaf(bytes(b))
        db.execute(
            "UPDATE ledger_entries SET entry = ?, entry_hash = ? WHERE idx = ?", (bytes(b), h, idx)
        )
        prev = h
    db.commit()
    db.close()
    r = run_verify(path, log_key)
    assert r.problem is not None and r.problem.kind == "entry-time-order" and r.problem.index == 25


def test_verification_reads_through_the_reader_protocol_in_worker_processes(
    new_ledger: NewLedger, log_key: SigningKey, tmp_path: Path
) -> None:
    """Pure core: verify_store works on any LedgerReader; a Reopenable one (the SQLite
    store) is verified in parallel ranges, with the same result as one process."""
    from gateway.ledger.verify import CHUNK

    new_ledger("big.db", n=0, every=CHUNK).append_many(make_event(i) for i in range(5 * CHUNK))
    store = SqliteLedgerStore(tmp_path / "big.db", readonly=True)
    try:
        one = verify_store(store, ORIGIN, log_key.verify_key, workers=1)
        two = verify_store(store, ORIGIN, log_key.verify_key, workers=2)
    finally:
        store.close()
    assert one.ok and two.ok and one.root == two.root and one.entries == 5 * CHUNK


class ListReader:
    """A LedgerReader over plain lists: no SQLite anywhere (verification is pure)."""

    def __init__(
        self,
        rows: list[tuple[int, bytes, bytes]],
        cps: list,  # type: ignore[type-arg]
        nodes: dict,  # type: ignore[type-arg]
        meta: dict[str, str | None],
    ) -> None:
        self.rows, self.cps, self.nodes, self.meta = rows, cps, nodes, meta

    def size(self) -> int:
        return len(self.rows)

    def get_meta(self, key: str) -> str | None:
        return self.meta.get(key)

    def checkpoints(self) -> list:  # type: ignore[type-arg]
        return self.cps

    def raw_range(self, start: int, stop: int) -> list[tuple[int, bytes, bytes]]:
        return [r for r in self.rows if start <= r[0] < stop]

    def entry_range(self, start: int, stop: int) -> list[bytes]:
        return [r[1] for r in self.raw_range(start, stop)]

    def nodes_range(self, level: int, start: int, stop: int) -> list[bytes]:
        return [self.nodes[(level, i)] for i in range(start, stop) if (level, i) in self.nodes]

    def close(self) -> None:
        pass


def test_verification_runs_on_an_in_memory_reader_and_names_a_flipped_byte(
    path: Path, log_key: SigningKey
) -> None:
    from gateway.ledger.storage import NODE_SHIFT

    db = sqlite3.connect(path)
    rows = [(int(a), bytes(b), bytes(c)) for a, b, c in
            db.execute("SELECT idx, entry, entry_hash FROM ledger_entries ORDER BY idx")]  # fmt: skip
    nodes = {(int(k) >> NODE_SHIFT, int(k) & ((1 << NODE_SHIFT) - 1)): bytes(h)
             for k, h in db.execute("SELECT id, hash FROM ledger_nodes")}  # fmt: skip
    db.close()
    store = SqliteLedgerStore(path, readonly=True)
    cps = store.checkpoints()
    meta = {"suite": store.get_meta("suite")}
    store.close()
    assert verify_store(ListReader(rows, cps, nodes, meta), ORIGIN, log_key.verify_key).ok
    i, e, h = rows[7]
    rows[7] = (i, e[:-1] + bytes([e[-1] ^ 1]), h)
    r = verify_store(ListReader(rows, cps, nodes, meta), ORIGIN, log_key.verify_key)
    assert r.problem is not None and r.problem.index == 7


def test_entry_deleted_at_a_range_boundary_with_the_chain_resealed_is_named(
    new_ledger: NewLedger, log_key: SigningKey, tmp_path: Path, tree: TreeHasher
) -> None:
    """Verification works in ranges of 2 * CHUNK entries. An entry deleted as the last of
    a range, with the entries after it re-chained (nothing signed covers them yet), left
    no gap inside any range: the report said OK with one index holding no entry."""
    from gateway.ledger.entry import HEADER_LEN
    from gateway.ledger.verify import CHUNK

    gap = 2 * CHUNK - 1
    new_ledger("big.db", n=0, every=10 * CHUNK).append_many(
        make_event(i) for i in range(2 * CHUNK + 3)
    )
    db = sqlite3.connect(tmp_path / "big.db")
    db.execute("DELETE FROM ledger_entries WHERE idx = ?", (gap,))
    (prev,) = db.execute(
        "SELECT entry_hash FROM ledger_entries WHERE idx = ?", (gap - 1,)
    ).fetchone()
    for idx, data in db.execute(
        "SELECT idx, entry FROM ledger_entries WHERE idx > ? ORDER BY idx", (gap,)
    ).fetchall():
        b = bytearray(data)
        b[9:HEADER_LEN] = prev
        prev = tree.leaf(bytes(b))
        db.execute(
            "UPDATE ledger_entries SET entry = ?, entry_hash = ? WHERE idx = ?",
            (bytes(b), prev, idx),
        )
    db.commit()
    assert db.execute("SELECT MAX(size) FROM ledger_checkpoints").fetchone()[0] in (None, 0)
    db.close()
    store = SqliteLedgerStore(tmp_path / "big.db", readonly=True)
    try:
        r = verify_store(store, ORIGIN, log_key.verify_key, check_nodes=False, workers=1)
    finally:
        store.close()
    assert r.problem is not None and r.problem.kind == "entry-missing", r.problem
    assert r.problem.index == gap and r.entries == 2 * CHUNK + 3
