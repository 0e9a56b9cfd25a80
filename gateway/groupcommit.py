"""Group commit: concurrent writers' items written together, one transaction for all.

Owns: the queue and the hand-off. A caller submits one item and returns once
it is written (or raises why not). Whoever finds no write in progress takes
every queued item and writes them in one call of ``write`` (one transaction,
one fsync), then wakes the others; items queued meanwhile go into the next
call. A batch whose write fails is retried item by item, so one caller's bad
item never fails another caller's write, unless ``retry_alone`` says the
failure is not an item's (the database is down: every item would fail the
same way, each after its own wait).

Does not own: what is written or how (the store passed as ``write``), nor the
ledger's own group commit (``gateway.ledger.ledger``), which must also hold
the replicas' shared lock and reload the tail inside the same transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Waiter(Generic[T]):
    item: T
    done: bool = False
    error: BaseException | None = None


class GroupCommit(Generic[T]):
    def __init__(
        self,
        write: Callable[[Sequence[T]], None],
        retry_alone: Callable[[Exception], bool] = lambda exc: True,
    ) -> None:
        self._write = write
        self._retry_alone = retry_alone
        self._cond = threading.Condition(threading.Lock())
        self._pending: list[_Waiter[T]] = []
        self._writing = False

    def submit(self, item: T) -> None:
        """Write ``item`` (with whatever else is queued); returns once it is written."""
        me = _Waiter(item)
        with self._cond:
            self._pending.append(me)
            while not me.done:
                if self._writing:
                    self._cond.wait()
                    continue
                self._writing = True
                batch, self._pending = self._pending, []
                self._cond.release()
                try:
                    self._flush(batch)
                finally:
                    self._cond.acquire()
                    self._writing = False
                    self._cond.notify_all()
        if me.error is not None:
            raise me.error

    def _flush(self, batch: list[_Waiter[T]]) -> None:
        try:
            self._write([w.item for w in batch])
        except Exception as exc:
            if len(batch) == 1 or not self._retry_alone(exc):
                for w in batch:
                    w.error, w.done = exc, True
            else:  # isolate the offender; the others still commit
                for w in batch:
                    self._flush([w])
                return
        except BaseException as exc:
            for w in batch:
                w.error, w.done = exc, True
            raise
        else:
            for w in batch:
                w.done = True
