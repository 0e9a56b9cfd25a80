"""Replay memory on PostgreSQL: a request id is accepted once per sender, across replicas.

Owns: the ``ReplayStore`` Protocol on the shared database. The primary key
(sender, request id) decides: of two replicas racing to record one id, exactly
one insert succeeds; the other is refused as a replay. Ids older than twice
the timestamp window (which ``gateway.envelope.check_header`` enforces) are
pruned now and then.
"""

from __future__ import annotations

import itertools

from gateway.errors import ReplayRejected
from gateway.storage.postgres.db import PgDatabase

PRUNE_EVERY = 1000


class PgReplayStore:
    def __init__(self, db: PgDatabase, window_ms: int) -> None:
        self._db = db
        self._window_ms = window_ms
        self._inserts = itertools.count(1)

    def check_and_record(
        self, sender: str, request_id: str, timestamp_ms: int, now_ms: int
    ) -> None:
        with self._db.connection("replay store") as conn:
            cur = conn.execute(
                "INSERT INTO seen_requests (sender, request_id, timestamp_ms) VALUES (%s, %s, %s)"
                " ON CONFLICT (sender, request_id) DO NOTHING",
                (sender, request_id, timestamp_ms),
            )
            if cur.rowcount != 1:
                raise ReplayRejected(
                    f"request id {request_id} from {sender} was already processed; refusing a replay"
                )
            if next(self._inserts) % PRUNE_EVERY == 0:
                conn.execute(
                    "DELETE FROM seen_requests WHERE timestamp_ms < %s",
                    (now_ms - 2 * self._window_ms,),
                )

    def close(self) -> None:
        """The database is closed by its owner."""
