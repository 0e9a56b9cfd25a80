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


def test_a_failure_that_is_no_items_fault_fails_the_batch_at_once_not_item_by_item() -> None:
    """The database is down: retrying each item alone would make the last caller wait
    for every other item's failed attempt (0.5 s each on PostgreSQL) first."""
    release = threading.Event()
    calls: list[int] = []

    def write(batch: Sequence[int]) -> None:
        calls.append(len(batch))
        if len(calls) == 1:
            release.wait(5)  # the first write holds the others in the queue
        raise ConnectionError("database unreachable")

    gc: GroupCommit[int] = GroupCommit(write, retry_alone=lambda exc: False)
    failures: list[BaseException] = []

    def one(i: int) -> None:
        try:
            gc.submit(i)
        except ConnectionError as exc:
            failures.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(9)]
    threads[0].start()
    while not calls:
        time.sleep(0.001)
    for t in threads[1:]:
        t.start()
    while len(gc._pending) < 8:
        time.sleep(0.001)
    release.set()
    for t in threads:
        t.join(5)
    assert len(failures) == 9
    assert calls == [1, 8]  # the queued eight failed together, in one attempt
