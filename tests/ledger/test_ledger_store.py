"""SqliteLedger: receipts, durability, atomicity, cadence, concurrency."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.errors import InvalidArgument, StorageFailure
from gateway.ledger.entry import decode_entry
from gateway.ledger.ledger import SqliteLedger
from gateway.ledger.merkle import verify_inclusion
from gateway.ledger.storage import SqliteLedgerStore
from gateway.ledger.verify import verify_store
from tests.ledger.ledger_testkit import ORIGIN, FakeClock, make_event

NewLedger = Callable[..., SqliteLedger]


def test_append_returns_index_and_chain_hash(new_ledger: NewLedger) -> None:
    ledger = new_ledger()
    r0 = ledger.append(make_event(0))
    r1 = ledger.append(make_event(1))
    assert (r0.index, r1.index) == (0, 1)
    e1 = ledger.entry(1)
    assert ledger.tree.leaf(e1.entry).hex() == r1.entry_hash
    assert decode_entry(e1.entry).prev_hash.hex() == r0.entry_hash


def test_entries_survive_reopen_and_continue_the_chain(
    new_ledger: NewLedger,
    tmp_path: Path,
    log_key,
    clock: FakeClock,  # type: ignore[no-untyped-def]
) -> None:
    ledger = new_ledger(n=7)
    root = ledger.root_at(7)
    ledger.close()
    again = SqliteLedger(tmp_path / "ledger.db", log_key, ORIGIN, checkpoint_every=4, clock=clock)
    assert again.size == 7 and again.root_at(7) == root
    again.append(make_event(7))
    assert verify_store(again.store, ORIGIN, log_key.verify_key).ok  # type: ignore[arg-type]
    again.close()


def test_invalid_event_in_a_batch_writes_nothing(new_ledger: NewLedger) -> None:
    ledger = new_ledger(n=3)
    with pytest.raises(InvalidArgument):
        ledger.append_many([make_event(3), make_event(4, payload_digest="zz")])
    assert ledger.size == 3 and ledger.store.size() == 3
    assert ledger.append(make_event(3)).index == 3


def test_storage_failure_leaves_no_half_written_entry(
    new_ledger: NewLedger, tmp_path: Path
) -> None:
    ledger = new_ledger(n=2)
    # Sabotage: a trigger makes the node insert fail after the entry insert.
    db = sqlite3.connect(tmp_path / "ledger.db")
    db.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON ledger_nodes BEGIN "
        "SELECT RAISE(ABORT, 'disk on fire'); END"
    )
    db.commit()
    ledger.append(make_event(2))  # leaf 2 completes no interior node: succeeds
    with pytest.raises(StorageFailure):
        ledger.append(make_event(3))  # leaf 3 completes two nodes: the whole append fails
    db.execute("DROP TRIGGER boom")
    db.commit()
    db.close()
    assert ledger.store.size() == 3 and ledger.size == 3
    assert ledger.append(make_event(3)).index == 3
    assert verify_store(ledger.store, ORIGIN, ledger.public_key).ok  # type: ignore[arg-type]


def test_checkpoint_every_n_entries_including_inside_batches(new_ledger: NewLedger) -> None:
    ledger = new_ledger(n=10, every=4)
    assert [c.checkpoint.size for c in ledger.checkpoints()] == [4, 8]


def test_checkpoint_after_t_seconds(new_ledger: NewLedger, clock: FakeClock) -> None:
    ledger = new_ledger(every=1000, interval=60.0)
    ledger.append(make_event(0))
    assert ledger.tick() is None
    clock.t += 61
    cp = ledger.tick()
    assert cp is not None and cp.checkpoint.size == 1
    assert ledger.tick() is None  # nothing new


def test_concurrent_appends_from_threads_form_one_chain(new_ledger: NewLedger) -> None:
    ledger = new_ledger(every=16)
    errors: list[Exception] = []

    def worker(t: int) -> None:
        try:
            for j in range(25):
                ledger.append(make_event(t * 100 + j))
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors and ledger.size == 100
    assert verify_store(ledger.store, ORIGIN, ledger.public_key).ok  # type: ignore[arg-type]


def test_two_writers_on_one_file_do_not_fork(
    new_ledger: NewLedger, tmp_path: Path, log_key, clock
) -> None:  # type: ignore[no-untyped-def]
    a = new_ledger(n=3)
    b = SqliteLedger(tmp_path / "ledger.db", log_key, ORIGIN, checkpoint_every=4, clock=clock)
    a.append(make_event(3))
    assert b.append(make_event(4)).index == 4  # b reloads its stale tail and retries
    assert a.append(make_event(5)).index == 5
    b.close()
    assert verify_store(a.store, ORIGIN, log_key.verify_key).ok  # type: ignore[arg-type]


def test_readonly_ledger_refuses_appends(new_ledger: NewLedger, tmp_path: Path) -> None:
    new_ledger(n=2).close()
    ro = SqliteLedger.open_readonly(tmp_path / "ledger.db")
    with pytest.raises(InvalidArgument):
        ro.append(make_event(9))
    ro.close()


def test_origin_mismatch_is_refused(new_ledger: NewLedger, tmp_path: Path, log_key) -> None:  # type: ignore[no-untyped-def]
    new_ledger(n=1).close()
    with pytest.raises(InvalidArgument):
        SqliteLedger(tmp_path / "ledger.db", log_key, "other.example/ledger")


def test_proof_reads_are_logarithmic(new_ledger: NewLedger) -> None:
    ledger = new_ledger(n=300, every=100)
    calls: list[int] = []
    original = ledger.store.nodes

    def counting(ids):  # type: ignore[no-untyped-def]
        calls.append(len(ids))
        return original(ids)

    ledger.store.nodes = counting  # type: ignore[method-assign]
    proof = ledger.inclusion_proof(137, 300)
    root = ledger.root_at(300)
    verify_inclusion(137, 300, ledger.entry(137).entry_hash, proof, root, ledger.tree)
    assert calls[0] <= 2 * 9  # O(log n) stored hashes, never the log
    assert isinstance(ledger.store, SqliteLedgerStore)
