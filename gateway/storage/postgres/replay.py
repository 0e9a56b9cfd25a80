"""Replay memory on PostgreSQL: a request id is accepted once per sender, across replicas.

Owns: the ``ReplayStore`` Protocol on the shared database. The primary key
(sender, request id) decides: of two replicas racing to record one id, exactly
one insert succeeds; the other is refused as a replay. Ids older than twice
the timestamp window (which ``gateway.envelope.check_header`` enforces) are
pruned now and then; a prune that fails is logged and retried later, never
reported as the failure of the request whose id was just recorded.
The insert is a covered commit (``gateway.storage.postgres.db``): durable at
the latest with the ledger entry of the request it admitted.
"""

from __future__ import annotations

import itertools
import logging

from gateway.errors import ReplayRejected, StorageFailure
from gateway.storage.postgres.db import COVERED_COMMIT, PgDatabase

PRUNE_EVERY = 1000
log = logging.getLogger("gateway.storage")


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
                "INSERT INTO seen_requests (sender, request_id, timestamp_ms)"
                f" SELECT %s, %s, %s WHERE {COVERED_COMMIT}"
                " ON CONFLICT (sender, request_id) DO NOTHING",
                (sender, request_id, timestamp_ms),
            )
            if cur.rowcount != 1:
                raise ReplayRejected(
                    f"request id {request_id} from {sender} was already processed; refusing a replay"
                )
        if next(self._inserts) % PRUNE_EVERY == 0:
            self._prune(now_ms)

    def _prune(self, now_ms: int) -> None:
        """Forget ids too old to be accepted anyway. The id just recorded is
        committed: its caller must not be told otherwise (a retry would then be
        refused as a replay of itself), so a failure here only delays the prune."""
        try:
            with self._db.connection("replay store") as conn:
                conn.execute(
                    "DELETE FROM seen_requests WHERE timestamp_ms < %s",
                    (now_ms - 2 * self._window_ms,),
                )
        except StorageFailure as exc:
            log.warning("replay memory not pruned (retried later): %s", exc)

    def close(self) -> None:
        """The database is closed by its owner."""
