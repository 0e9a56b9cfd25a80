"""SQLite quota store: atomic, exact at the limit under concurrency, per UTC day."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from gateway.errors import InvalidArgument, QuotaExceeded
from gateway.policy.quota import QuotaKey, SqliteQuotaStore, utc_day

KEY = QuotaKey("110000", "si_contributions", "130000", "hebei-housing-fund", "2026-06-15")


def test_utc_day_boundaries() -> None:
    assert utc_day(0) == "1970-01-01"
    assert utc_day(86_400_000 - 1) == "1970-01-01"
    assert utc_day(86_400_000) == "1970-01-02"
    assert utc_day(1781481600000) == "2026-06-15"  # 2026-06-15T00:00:00Z


def test_consume_up_to_limit_then_refuse_without_change(tmp_path: Path) -> None:
    q = SqliteQuotaStore(tmp_path / "q.sqlite")
    assert q.used(KEY) == 0
    assert q.consume(KEY, 3, 5) == 3
    assert q.consume(KEY, 2, 5) == 5  # exactly at the limit
    with pytest.raises(QuotaExceeded, match="used 5 of 5"):
        q.consume(KEY, 1, 5)
    assert q.used(KEY) == 5
    other_day = QuotaKey(**{**KEY.__dict__, "day": "2026-06-16"})
    assert q.consume(other_day, 5, 5) == 5
    with pytest.raises(InvalidArgument):
        q.consume(KEY, -1, 5)
    q.close()
    assert SqliteQuotaStore(tmp_path / "q.sqlite").used(KEY) == 5  # durable


def test_concurrent_consumers_on_two_connections_never_overspend(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    stores = [SqliteQuotaStore(path), SqliteQuotaStore(path)]
    granted: list[int] = []
    lock = threading.Lock()

    def worker(store: SqliteQuotaStore) -> None:
        for _ in range(40):
            try:
                store.consume(KEY, 1, 100)
            except QuotaExceeded:
                continue
            with lock:
                granted.append(1)

    threads = [threading.Thread(target=worker, args=(stores[i % 2],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 100
    assert stores[0].used(KEY) == 100
