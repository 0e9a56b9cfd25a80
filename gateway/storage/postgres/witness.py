"""Witness state on PostgreSQL: what this gateway last cosigned for each peer log.

Owns: the ``WitnessStore`` Protocol on the shared database. ``advance`` is a
compare-and-set under a row-level lock (or, for a log never seen, the primary
key), so two replicas answering witness requests at once can never both move
one origin's state; the loser gets ``WitnessConflict`` and the peer retries.
Fork and rollback evidence is append-only.
"""

from __future__ import annotations

from gateway.ledger.witness import Evidence, WitnessConflict, WitnessState
from gateway.storage.postgres.db import PgDatabase


class PgWitnessStore:
    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    def origins(self) -> list[str]:
        with self._db.connection("witness store") as conn:
            rows = conn.execute("SELECT origin FROM witness_state ORDER BY origin").fetchall()
        return [str(r[0]) for r in rows]

    def latest(self, origin: str) -> WitnessState | None:
        with self._db.connection("witness store") as conn:
            row = conn.execute(
                "SELECT origin, size, root, note, updated_ms FROM witness_state WHERE origin = %s",
                (origin,),
            ).fetchone()
        if row is None:
            return None
        return WitnessState(str(row[0]), int(row[1]), bytes(row[2]), str(row[3]), int(row[4]))

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
            conn.execute(
                "INSERT INTO witness_evidence (origin, kind, held_note, shown_note, detail,"
                " recorded_ms) VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    evidence.origin,
                    evidence.kind,
                    evidence.held_note,
                    evidence.shown_note,
                    evidence.detail,
                    evidence.recorded_ms,
                ),
            )

    def evidence(self, origin: str | None = None) -> list[Evidence]:
        query = (
            "SELECT origin, kind, held_note, shown_note, detail, recorded_ms FROM witness_evidence"
        )
        params: tuple[str, ...] = ()
        if origin is not None:
            query += " WHERE origin = %s"
            params = (origin,)
        with self._db.connection("witness store") as conn:
            rows = conn.execute(query + " ORDER BY id", params).fetchall()
        return [
            Evidence(str(a), str(b), str(c), str(d), str(e), int(f)) for a, b, c, d, e, f in rows
        ]

    def close(self) -> None:
        """The database is closed by its owner."""
