"""Witness state on PostgreSQL: what this gateway last cosigned for each peer log.

Owns: the ``WitnessStore`` Protocol on the shared database. ``advance`` is a
compare-and-set under a row-level lock (or, for a log never seen, the primary
key), so two replicas answering witness requests at once can never both move
one origin's state; the loser gets ``WitnessConflict`` and the peer retries.
Fork and rollback evidence is append-only.
"""

from __future__ import annotations

from gateway.ledger.storage import in_dialect
from gateway.ledger.witness import (
    INSERT_EVIDENCE_SQL,
    LATEST_SQL,
    ORIGINS_SQL,
    Evidence,
    WitnessConflict,
    WitnessState,
    evidence_of,
    evidence_query,
    evidence_values,
    state_of,
)
from gateway.storage.postgres.db import PgDatabase


class PgWitnessStore:
    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    def origins(self) -> list[str]:
        with self._db.connection("witness store") as conn:
            rows = conn.execute(ORIGINS_SQL).fetchall()
        return [str(r[0]) for r in rows]

    def latest(self, origin: str) -> WitnessState | None:
        with self._db.connection("witness store") as conn:
            return state_of(conn.execute(in_dialect(LATEST_SQL, "%s"), (origin,)).fetchone())

    def advance(self, expected_size: int | None, state: WitnessState) -> None:
        values = (state.origin, state.size, state.root, state.note, state.updated_ms)
        with self._db.transaction("witness store") as conn:
            if expected_size is None:
                cur = conn.execute(
                    "INSERT INTO witness_state (origin, size, root, note, updated_ms)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (origin) DO NOTHING",
                    values,
                )
            else:
                cur = conn.execute(
                    "UPDATE witness_state SET size = %s, root = %s, note = %s, updated_ms = %s"
                    " WHERE origin = %s AND size = %s",
                    (
                        state.size,
                        state.root,
                        state.note,
                        state.updated_ms,
                        state.origin,
                        expected_size,
                    ),
                )
            if cur.rowcount != 1:
                raise WitnessConflict("witness state changed concurrently")

    def record_evidence(self, evidence: Evidence) -> None:
        with self._db.connection("witness store") as conn:
            conn.execute(in_dialect(INSERT_EVIDENCE_SQL, "%s"), evidence_values(evidence))

    def evidence(self, origin: str | None = None) -> list[Evidence]:
        sql, params = evidence_query(origin)
        with self._db.connection("witness store") as conn:
            return evidence_of(conn.execute(in_dialect(sql, "%s"), params).fetchall())

    def close(self) -> None:
        """The database is closed by its owner."""
