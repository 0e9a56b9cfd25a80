"""Group commit: concurrent appends share transactions, each durable and in order."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest

from gateway.crypto import SigningKey
from gateway.errors import InvalidArgument
from gateway.ledger.events import AppendReceipt
from gateway.ledger.ledger import SqliteLedger
from gateway.ledger.verify import verify_store
from tests.ledger.ledger_testkit import make_event

ORIGIN = "110000.gateway.dataexchange.cn/ledger"


def _hammer(ledger: SqliteLedger, events: list, threads: int = 16) -> list[object]:  # type: ignore[type-arg]
    out: list[object] = [None] * len(events)
    barrier = threading.Barrier(threads)

    def worker(k: int) -> None:
        barrier.wait()
        for j in range(k, len(events), threads):
            try:
                out[j] = ledger.append(events[j])
            except Exception as exc:  # recorded for the assertions
                out[j] = exc

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def test_concurrent_appends_each_land_once_in_fewer_transactions(
    tmp_path: Path, log_key: SigningKey
) -> None:
    ledger = SqliteLedger(tmp_path / "l.db", log_key, ORIGIN, checkpoint_every=50)
    commits = 0
    real = ledger.store.append

    def counting(*a, **k):  # type: ignore[no-untyped-def]
        nonlocal commits
        commits += 1
        return real(*a, **k)

    ledger.store.append = counting  # type: ignore[method-assign]
    events = [make_event(i) for i in range(400)]
    out = _hammer(ledger, events)
    assert all(isinstance(r, AppendReceipt) for r in out)
    indices = sorted(r.index for r in out)  # type: ignore[union-attr]
    assert indices == list(range(400))
    assert commits < 400  # shared transactions
    by_index = {r.index: e for r, e in zip(out, events, strict=True)}  # type: ignore[union-attr]
    times = []
    for rec in ledger.entries(0, 400):
        sent = by_index[rec.index]
        # Times never go backwards along the ledger: a late-stamped event takes its predecessor's.
        assert rec.event.timestamp_ms >= sent.timestamp_ms
        assert rec.event == dataclasses.replace(sent, timestamp_ms=rec.event.timestamp_ms)
        times.append(rec.event.timestamp_ms)
    assert times == sorted(times)
    report = verify_store(ledger.store, ORIGIN, log_key.verify_key, workers=1)
    assert report.ok, report.problem
    ledger.close()


def test_one_malformed_event_is_refused_alone_while_the_others_commit(
    tmp_path: Path, log_key: SigningKey
) -> None:
    ledger = SqliteLedger(tmp_path / "l.db", log_key, ORIGIN)
    events = [make_event(i) for i in range(64)]
    events[17] = dataclasses.replace(events[17], payload_digest="not hex")
    out = _hammer(ledger, events, threads=8)
    assert isinstance(out[17], InvalidArgument)
    assert sum(isinstance(r, AppendReceipt) for r in out) == 63
    assert ledger.size == 63
    assert verify_store(ledger.store, ORIGIN, log_key.verify_key, workers=1).ok
    ledger.close()


def test_storage_failure_reaches_every_caller_in_the_batch_and_commits_nothing(
    tmp_path: Path, log_key: SigningKey
) -> None:
    from gateway.errors import StorageFailure

    ledger = SqliteLedger(tmp_path / "l.db", log_key, ORIGIN)

    def broken(*a, **k):  # type: ignore[no-untyped-def]
        raise StorageFailure("disk full")

    ledger.store.append = broken  # type: ignore[method-assign]
    out = _hammer(ledger, [make_event(i) for i in range(32)], threads=8)
    assert all(isinstance(r, StorageFailure) for r in out)
    assert ledger.size == 0
    ledger.close()


@pytest.mark.parametrize("threads", [1, 4])
def test_group_commit_keeps_the_hash_chain(
    tmp_path: Path, log_key: SigningKey, threads: int
) -> None:
    ledger = SqliteLedger(tmp_path / "l.db", log_key, ORIGIN, checkpoint_every=7)
    _hammer(ledger, [make_event(i) for i in range(50)], threads=threads)
    ledger.checkpoint_now()
    assert verify_store(ledger.store, ORIGIN, log_key.verify_key, workers=1).ok
    ledger.close()
