"""Group commit: every item written exactly once, batched under load, errors isolated."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from gateway.groupcommit import GroupCommit


def test_concurrent_items_are_written_once_each_in_fewer_writes_than_items() -> None:
    written: list[int] = []
    writes: list[int] = []
    lock = threading.Lock()

    def write(batch: Sequence[int]) -> None:
        time.sleep(0.005)  # an fsync
        with lock:
            written.extend(batch)
            writes.append(len(batch))

    gc: GroupCommit[int] = GroupCommit(write)
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(gc.submit, range(400)))
    assert sorted(written) == list(range(400))
    assert len(writes) < 400 / 4, writes  # callers waiting on a write share the next one


def test_a_failing_item_fails_only_its_own_caller() -> None:
    written: list[int] = []

    def write(batch: Sequence[int]) -> None:
        time.sleep(0.002)
        if 7 in batch:
            raise ValueError("item 7 is refused")
        written.extend(batch)

    gc: GroupCommit[int] = GroupCommit(write)

    def one(i: int) -> str:
        try:
            gc.submit(i)
        except ValueError:
            return "failed"
        return "ok"

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(one, range(64)))
    assert [i for i, o in enumerate(outcomes) if o == "failed"] == [7]
    assert sorted(written) == [i for i in range(64) if i != 7]


def test_a_lone_failure_is_raised_to_the_caller() -> None:
    def write(batch: Sequence[int]) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        GroupCommit(write).submit(1)
