"""The PostgreSQL schema of a gateway's state, as numbered migrations.

Owns: every table, index, constraint and trigger of the PostgreSQL backend.
A migration is applied once, in one transaction, in order, and recorded in
``gateway_schema``; released migrations are never edited (add a new one).

Invariants the database itself enforces (whatever a replica does):

* ledger indexes are unique and checkpoints are unique per size: two
  replicas can never store two entries at one index nor two checkpoints for
  one tree size;
* budget spends are append-only: no DELETE or TRUNCATE, and an UPDATE may
  only settle a reservation (``reserved`` -> ``released``/``failed``);
* quota counters never go negative.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


_V1 = (
    # -- ledger (gateway.storage.postgres.ledger) --------------------------
    "CREATE TABLE ledger_meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)",
    """CREATE TABLE ledger_entries (
        idx BIGINT PRIMARY KEY CHECK (idx >= 0),
        entry BYTEA NOT NULL,
        entry_hash BYTEA NOT NULL,
        request_id TEXT NOT NULL,
        timestamp_ms BIGINT NOT NULL)""",
    "CREATE INDEX ledger_entries_request ON ledger_entries (request_id)",
    "CREATE INDEX ledger_entries_time ON ledger_entries (timestamp_ms)",
    "CREATE TABLE ledger_nodes (id BIGINT PRIMARY KEY, hash BYTEA NOT NULL)",
    # Take the append lock, then read the head with a snapshot taken AFTER the
    # lock was granted (a volatile function's queries each take a fresh
    # snapshot under READ COMMITTED): one round trip instead of two.
    """CREATE FUNCTION ledger_lock_head(lock_key BIGINT, OUT size BIGINT, OUT checkpoint_seq BIGINT)
    LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock(lock_key);
        SELECT COALESCE(MAX(idx) + 1, 0) INTO size FROM ledger_entries;
        SELECT COALESCE(MAX(seq), -1) INTO checkpoint_seq FROM ledger_checkpoints;
    END $$""",
    """CREATE TABLE ledger_checkpoints (
        seq BIGINT PRIMARY KEY CHECK (seq >= 0),
        size BIGINT NOT NULL UNIQUE CHECK (size >= 0),
        note TEXT NOT NULL,
        issued_ms BIGINT NOT NULL)""",
    # -- replay memory (gateway.storage.postgres.replay) ---------------------
    """CREATE TABLE seen_requests (
        sender TEXT NOT NULL,
        request_id TEXT NOT NULL,
        timestamp_ms BIGINT NOT NULL,
        PRIMARY KEY (sender, request_id))""",
    "CREATE INDEX seen_requests_time ON seen_requests (timestamp_ms)",
    # -- quotas (gateway.storage.postgres.quota) -------------------------------
    """CREATE TABLE quota_usage (
        holder TEXT NOT NULL,
        dataset TEXT NOT NULL,
        requester TEXT NOT NULL,
        service_system TEXT NOT NULL,
        day TEXT NOT NULL,
        used BIGINT NOT NULL CHECK (used >= 0),
        PRIMARY KEY (holder, dataset, requester, service_system, day))""",
    # -- privacy budgets (gateway.storage.postgres.budget) -----------------------
    """CREATE TABLE spends (
        seq BIGSERIAL PRIMARY KEY,
        dataset TEXT NOT NULL,
        requester TEXT NOT NULL,
        epsilon_units BIGINT NOT NULL CHECK (epsilon_units > 0),
        delta_units BIGINT NOT NULL CHECK (delta_units >= 0),
        request_id TEXT NOT NULL UNIQUE,
        query_digest TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('reserved', 'released', 'failed')))""",
    "CREATE INDEX spends_by_requester ON spends (dataset, requester)",
    """CREATE FUNCTION spends_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' OR TG_OP = 'TRUNCATE' THEN
            RAISE EXCEPTION 'spends are append-only';
        END IF;
        IF OLD.status <> 'reserved' OR NEW.status = 'reserved'
           OR NEW.epsilon_units <> OLD.epsilon_units OR NEW.delta_units <> OLD.delta_units
           OR NEW.dataset <> OLD.dataset OR NEW.requester <> OLD.requester
           OR NEW.request_id <> OLD.request_id OR NEW.query_digest <> OLD.query_digest
           OR NEW.at_ms <> OLD.at_ms OR NEW.seq <> OLD.seq THEN
            RAISE EXCEPTION 'only a reservation may be settled';
        END IF;
        RETURN NEW;
    END $$""",
    """CREATE TRIGGER spends_guard_rows BEFORE UPDATE OR DELETE ON spends
        FOR EACH ROW EXECUTE FUNCTION spends_guard()""",
    """CREATE TRIGGER spends_guard_truncate BEFORE TRUNCATE ON spends
        FOR EACH STATEMENT EXECUTE FUNCTION spends_guard()""",
    # -- witness state (gateway.storage.postgres.witness) --------------------------
    """CREATE TABLE witness_state (
        origin TEXT PRIMARY KEY,
        size BIGINT NOT NULL,
        root BYTEA NOT NULL,
        note TEXT NOT NULL,
        updated_ms BIGINT NOT NULL)""",
    """CREATE TABLE witness_evidence (
        id BIGSERIAL PRIMARY KEY,
        origin TEXT NOT NULL,
        kind TEXT NOT NULL,
        held_note TEXT NOT NULL,
        shown_note TEXT NOT NULL,
        detail TEXT NOT NULL,
        recorded_ms BIGINT NOT NULL)""",
    # -- accepted trust-bundle version (gateway.storage.postgres.versions) ---------
    """CREATE TABLE bundle_version (
        id SMALLINT PRIMARY KEY CHECK (id = 1),
        version BIGINT NOT NULL CHECK (version >= 0),
        digest TEXT)""",
)

_V2 = (
    # -- subject access: the holder's blind-index store (gateway.storage.postgres.subject) --
    """CREATE TABLE subject_entries (
        request_id TEXT PRIMARY KEY,
        coverage TEXT NOT NULL,
        dataset TEXT NOT NULL,
        fields TEXT NOT NULL,
        recorded_ms BIGINT NOT NULL,
        entry_index BIGINT CHECK (entry_index >= 0))""",
    "CREATE INDEX subject_entries_coverage ON subject_entries (coverage, recorded_ms)",
    """CREATE TABLE subject_index (
        blind BYTEA NOT NULL,
        request_id TEXT NOT NULL REFERENCES subject_entries (request_id),
        PRIMARY KEY (blind, request_id))""",
    "CREATE INDEX subject_index_request ON subject_index (request_id)",
)

_V3 = (
    # The append lock with what a replica needs to catch up: the head and, when
    # at most max_rows entries were appended since its own size, their leaf
    # hashes in index order and the newest entry's time (NULL hashes: reload).
    """CREATE FUNCTION ledger_lock_tail(lock_key BIGINT, since BIGINT, max_rows BIGINT,
        OUT size BIGINT, OUT checkpoint_seq BIGINT, OUT hashes BYTEA[], OUT last_ms BIGINT)
    LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock(lock_key);
        SELECT COALESCE(MAX(idx) + 1, 0) INTO size FROM ledger_entries;
        SELECT COALESCE(MAX(seq), -1) INTO checkpoint_seq FROM ledger_checkpoints;
        last_ms := 0;
        IF size > since AND size - since <= max_rows AND since >= 0 THEN
            SELECT array_agg(entry_hash ORDER BY idx), MAX(timestamp_ms) INTO hashes, last_ms
                FROM ledger_entries WHERE idx >= since;
        ELSIF size = since THEN
            hashes := '{}';
        END IF;
    END $$""",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "gateway state: ledger, replay, quota, budget, witness, bundle version", _V1),
    Migration(2, "subject access: the holder's blind-index store", _V2),
    Migration(3, "ledger: the append lock returns what a replica needs to catch up", _V3),
)
