"""Opening every stateful part of one gateway, on SQLite or PostgreSQL.

Owns: reading ``[storage]`` and returning one ``Stores`` value: the ledger's
store, replay memory, quotas, privacy budgets, witness state, the subject-access
blind-index store, the accepted bundle version, the checkpoint-signing lease
(and the channel by which other replicas ask its holder for a checkpoint)
and the probe readiness checks and metrics ask (so on PostgreSQL they report
the shared database's state). SQLite (the default) keeps
today's files in ``data_dir``; a PostgreSQL URL opens one shared database
(schema created and migrated on start-up) that several replicas of the gateway
may use at once. Does not own: any store's rules (each implementation) or the
wiring of stores into servers (``gateway.server.app``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from gateway.config import GatewayConfig, StorageSettings
from gateway.ledger.storage import LedgerStore, SqliteLedgerStore
from gateway.ledger.witness import SqliteWitnessStore, WitnessStore
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.policy.quota import QuotaStore, SqliteQuotaStore
from gateway.replay import ReplayStore, SqliteReplayStore
from gateway.stats.budget import BudgetStore, SpendIndex, SqliteBudgetStore, SqliteSpendIndex
from gateway.storage.lease import CheckpointAsks, Lease, NoAsks, SoleWriter
from gateway.storage.probe import SqliteProbe, StoreProbe
from gateway.subject.store import SqliteSubjectIndexStore, SubjectIndexStore
from gateway.trust import BundleVersionStore, FileVersionStore

LEDGER_FILE = "ledger.sqlite"
REPLAY_FILE = "replay.sqlite"
QUOTA_FILE = "quota.sqlite"
BUDGET_FILE = "budget.sqlite"
WITNESS_FILE = "witness.sqlite"
SUBJECT_FILE = "subject_index.sqlite"


class _Closeable(Protocol):
    def close(self) -> None: ...


@dataclass
class Stores:
    ledger: LedgerStore
    replay: ReplayStore
    quota: QuotaStore
    budget: BudgetStore
    spends: SpendIndex  # the budget store as the start-up check reads it (gateway.ops.spent)
    witness: WitnessStore
    subject: SubjectIndexStore
    versions: BundleVersionStore
    lease: Lease
    asks: CheckpointAsks  # a replica without the lease asks the holder for checkpoints
    probe: StoreProbe
    description: str  # for logs: "SQLite files in …" or "PostgreSQL user@host:port/db"
    shared: bool  # True: other replicas may write the same state
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def close(self) -> None:
        self.asks.stop()
        self.lease.stop()
        for close in self._closers:
            close()
        self._closers.clear()


def open_stores(config: GatewayConfig) -> Stores:
    window_ms = config.limits.replay_window_seconds * 1000
    if config.storage.url is None:
        return open_sqlite_stores(config.data_dir, window_ms)
    return open_postgres_stores(config.storage, window_ms, limits=config.limits)


def open_budget_store(config: GatewayConfig) -> BudgetStore:
    """Just the privacy-budget store (operator tools: ``gateway stats budget``)."""
    url = config.storage.url
    if url is None:
        return SqliteBudgetStore(config.data_dir / BUDGET_FILE)
    from gateway.storage.postgres.budget import PgBudgetStore
    from gateway.storage.postgres.db import PgDatabase

    return PgBudgetStore(PgDatabase(url, schema=config.storage.db_schema, pool_size=2))


def open_sqlite_stores(data_dir: Path, replay_window_ms: int) -> Stores:
    data_dir.mkdir(parents=True, exist_ok=True)
    ledger = SqliteLedgerStore(data_dir / LEDGER_FILE)
    replay = SqliteReplayStore(data_dir / REPLAY_FILE, replay_window_ms)
    quota = SqliteQuotaStore(data_dir / QUOTA_FILE)
    budget = SqliteBudgetStore(data_dir / BUDGET_FILE)
    witness = SqliteWitnessStore(data_dir / WITNESS_FILE)
    subject = SqliteSubjectIndexStore(data_dir / SUBJECT_FILE)
    closers: list[_Closeable] = [subject, witness, quota, replay, ledger]
    return Stores(
        ledger=ledger,
        replay=replay,
        quota=quota,
        budget=budget,
        spends=SqliteSpendIndex(data_dir / BUDGET_FILE),
        witness=witness,
        subject=subject,
        versions=FileVersionStore.in_dir(data_dir),
        lease=SoleWriter(),
        asks=NoAsks(),
        probe=SqliteProbe(
            data_dir,
            (LEDGER_FILE, BUDGET_FILE, QUOTA_FILE, REPLAY_FILE, WITNESS_FILE, SUBJECT_FILE),
            {"replay": REPLAY_FILE, "quota": QUOTA_FILE},
        ),
        description=f"SQLite files in {data_dir}",
        shared=False,
        _closers=[c.close for c in closers],
    )


def open_postgres_stores(
    settings: StorageSettings,
    replay_window_ms: int,
    *,
    limits: Limits = DEFAULT_LIMITS,
) -> Stores:
    from gateway.storage.postgres.budget import PgBudgetStore
    from gateway.storage.postgres.db import PgDatabase
    from gateway.storage.postgres.lease import PgCheckpointAsks, PgLease
    from gateway.storage.postgres.ledger import PgLedgerStore
    from gateway.storage.postgres.probe import PgProbe
    from gateway.storage.postgres.quota import PgQuotaStore
    from gateway.storage.postgres.replay import PgReplayStore
    from gateway.storage.postgres.subject import PgSubjectIndexStore
    from gateway.storage.postgres.versions import PgVersionStore
    from gateway.storage.postgres.witness import PgWitnessStore

    assert settings.url is not None
    db = PgDatabase(
        settings.url,
        schema=settings.db_schema,
        pool_size=settings.pool_size,
        idle_transaction_timeout=limits.storage_idle_transaction_seconds,
    )
    budget = PgBudgetStore(db)
    subject = PgSubjectIndexStore(db)
    return Stores(
        ledger=PgLedgerStore(db, riders=subject),  # index rows ride with their entries
        replay=PgReplayStore(db, replay_window_ms),
        quota=PgQuotaStore(db, limits),
        budget=budget,
        spends=budget,
        witness=PgWitnessStore(db),
        subject=subject,
        versions=PgVersionStore(db),
        lease=PgLease(db),
        asks=PgCheckpointAsks(db),
        probe=PgProbe(db),
        description=f"PostgreSQL {db.where} (schema {db.schema})",
        shared=True,
        _closers=[subject.close, db.close],  # the index's pending links first
    )
