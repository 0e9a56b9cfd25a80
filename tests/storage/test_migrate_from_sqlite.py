"""`gateway storage migrate-from-sqlite`: the same log, and all the other state, in PostgreSQL."""

from __future__ import annotations

import contextlib
import io
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from gateway.cli import main
from gateway.config import load_config
from gateway.demo.chapters import commuters_by_age
from gateway.demo.setup import use_storage
from gateway.errors import InvalidArgument, ReplayRejected
from gateway.ledger.verify import verify_store
from gateway.server.app import Gateway
from tests.conftest import RunningFederation
from tests.pgtest import fresh_schema, postgres_dsn
from tests.storage.kit import hebei_exchange


def _cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(list(argv))
    return status, out.getvalue()


def _a_seen_request(data_dir: Path) -> tuple[str, str]:
    with sqlite3.connect(data_dir / "replay.sqlite") as conn:
        row = conn.execute("SELECT sender, request_id FROM seen_requests LIMIT 1").fetchone()
    return str(row[0]), str(row[1])


def _until_reconnected(call: Callable[[], object], timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while True:
        try:
            call()
            return
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > end:
                raise
            time.sleep(0.25)


def test_migrated_gateway_keeps_its_log_root_replay_ids_and_budgets(tmp_path: Path) -> None:
    from gateway._proto.dataexchange.gateway.v1 import stats_pb2_grpc
    from gateway.client import service_channel
    from gateway.demo.setup import build_federation

    dsn = postgres_dsn()
    fed = build_federation(tmp_path, rows=100)
    gws = {code: Gateway(load_config(site.config)) for code, site in fed.sites.items()}
    rf = RunningFederation(fed, gws)
    for gw in gws.values():
        gw.start()
    try:
        for _ in range(3):
            hebei_exchange(rf)
        site = rf.site("120000")
        ch = service_channel(
            site.service_address,
            site.tls_cert.read_bytes(),
            "120000",
            site.tokens["tianjin-planning"],
        )
        stats_pb2_grpc.StatisticsStub(ch).Query(commuters_by_age(["110000"], 1.0), timeout=30)
        ch.close()
        holder = gws.pop("110000")
        holder.ledger.checkpoint_now()
        sqlite_root = holder.ledger.root_at(holder.ledger.store.size())
        spent = holder.stores.budget.totals()
        assert spent, "the statistics query spent budget"
        holder.stop(grace=0.2)
        sender, request_id = _a_seen_request(rf.site("110000").root / "data")

        with fresh_schema(dsn, "mig") as schema:
            config = rf.site("110000").config
            use_storage(config, dsn, schema)
            status, out = _cli("storage", "migrate-from-sqlite", "--config", str(config))
            assert status == 0, out
            assert "same entries, checkpoints and root" in out
            assert "copied subject_entries: 4" in out, out  # 3 exchanges, 1 statistic
            assert out.count("OK: chain, Merkle tree and checkpoints verify") == 2
            # A second migration into the now non-empty schema is refused.
            from gateway.storage.migrate import migrate_from_sqlite
            from gateway.storage.postgres.db import PgDatabase

            again = PgDatabase(dsn, schema=schema, pool_size=2)
            try:
                with pytest.raises(InvalidArgument, match="already holds gateway state"):
                    migrate_from_sqlite(
                        rf.site("110000").root / "data",
                        again,
                        holder.ledger.origin,
                        holder.keys.ledger.verify_key,
                    )
            finally:
                again.close()
            assert main(["storage", "migrate-from-sqlite", "--config", str(config)]) == 2

            moved = Gateway(load_config(config))
            gws["110000"] = moved
            moved.start()
            assert moved.stores.shared
            assert moved.ledger.root_at(moved.ledger.store.size()) == sqlite_root
            assert moved.stores.budget.totals() == spent
            assert len(list(moved.stores.subject.all_entries())) == 4
            with pytest.raises(ReplayRejected):
                moved.stores.replay.check_and_record(sender, request_id, 0, 0)
            # The migrated gateway goes on appending to the same log (Hebei's channel
            # to the old process may still be in gRPC's reconnect backoff: retry).
            _until_reconnected(lambda: hebei_exchange(rf))
            moved.ledger.checkpoint_now()
            # Hebei's receipts for the earlier exchanges may still be arriving (each one
            # a new entry): the report covers at least what was stored before it.
            stored = moved.ledger.store.size()
            report = verify_store(
                moved.stores.ledger, moved.ledger.origin, moved.keys.ledger.verify_key
            )
            assert report.ok and report.entries >= stored, report
            status, out = _cli("storage", "verify-ledger", "--config", str(config))
            assert status == 0 and "OK" in out
            status, out = _cli("stats", "budget", "--config", str(config))
            assert status == 0 and "si_contributions" in out and "120000" in out, out
            status, out = _cli("storage", "status", "--config", str(config))
            assert status == 0 and "signing lease: held by session" in out, out
            gws.pop("110000").stop(grace=0.2)
    finally:
        for gw in gws.values():
            gw.stop(grace=0.2)


def test_ledger_that_does_not_verify_is_not_migrated(tmp_path: Path) -> None:
    from gateway.crypto import SigningKey
    from gateway.errors import VerificationFailed
    from gateway.ledger.ledger import SqliteLedger
    from gateway.storage.migrate import migrate_from_sqlite
    from gateway.storage.postgres.db import PgDatabase
    from tests.ledger.ledger_testkit import ORIGIN, make_event

    key = SigningKey.generate()
    ledger = SqliteLedger(tmp_path / "ledger.sqlite", key, ORIGIN, checkpoint_every=2)
    for i in range(5):
        ledger.append(make_event(i))
    ledger.close()
    with sqlite3.connect(tmp_path / "ledger.sqlite") as conn:
        conn.execute("UPDATE ledger_entries SET entry_hash = zeroblob(32) WHERE idx = 2")
    dsn = postgres_dsn()
    with fresh_schema(dsn, "mig") as schema:
        db = PgDatabase(dsn, schema=schema, pool_size=2)
        try:
            with pytest.raises(VerificationFailed, match="does not verify; not migrating"):
                migrate_from_sqlite(tmp_path, db, ORIGIN, key.verify_key)
            with db.connection("t") as conn:
                row = conn.execute("SELECT count(*) FROM ledger_entries").fetchone()
            assert row is not None and row[0] == 0
        finally:
            db.close()


def test_subject_index_moves_with_the_ledger_and_answers_verify_on_postgres(
    tmp_path: Path,
) -> None:
    """Issue 16 on replicas: the blind-index rows are copied verbatim (same
    blind indexes, same ledger links), so a person's history answered from
    PostgreSQL still proves every entry against the migrated ledger."""
    from gateway.limits import DEFAULT_LIMITS
    from gateway.storage.migrate import migrate_from_sqlite
    from gateway.storage.postgres.db import PgDatabase
    from gateway.subject.verify import verify_answer
    from tests.subject.subject_testkit import ALICE, BOB, named, open_holder

    h = open_holder(tmp_path)
    a = h.exchange(1, named(ALICE))
    h.exchange(2, named(BOB))
    both = h.exchange(3, named(ALICE, BOB))
    h.cosign_latest()
    before = sorted((e.request_id, e.entry_index) for e in h.store.all_entries())
    h.close()
    dsn = postgres_dsn()
    with fresh_schema(dsn, "mig") as schema:
        db = PgDatabase(dsn, schema=schema, pool_size=2)
        try:
            report = migrate_from_sqlite(tmp_path, db, h.ledger.origin, h.log_key.verify_key)
        finally:
            db.close()
        assert report.copied["subject_entries"] == 3 and report.copied["subject_index"] == 4
        moved = open_holder(tmp_path / "unused", (dsn, schema))
        try:
            assert (
                sorted((e.request_id, e.entry_index) for e in moved.store.all_entries()) == before
            )
            proofs, _ = moved.history.answer(ALICE)
            items = verify_answer(proofs, moved.keys(), DEFAULT_LIMITS)
            assert {i.request_id for i in items} == {a.request_id, both.request_id}
            assert all(i.cosigned_by for i in items)
        finally:
            moved.close()


def test_migration_whose_copy_differs_from_the_verified_ledger_leaves_the_schema_empty(
    tmp_path: Path,
) -> None:
    """The SQLite gateway was not stopped: an entry appended after the ledger
    was verified reaches the copy. The mismatch is found and nothing stays in
    PostgreSQL (before, the copy was committed first: the schema then held an
    unverified ledger and refused every later migration as non-empty)."""
    from gateway.crypto import SigningKey
    from gateway.errors import VerificationFailed
    from gateway.ledger.ledger import SqliteLedger
    from gateway.storage.migrate import migrate_from_sqlite
    from gateway.storage.postgres.db import PgDatabase
    from tests.ledger.ledger_testkit import ORIGIN, make_event

    key = SigningKey.generate()
    ledger = SqliteLedger(tmp_path / "ledger.sqlite", key, ORIGIN, checkpoint_every=2)
    for i in range(4):
        ledger.append(make_event(i))

    def still_running(table: str, _n: int) -> None:
        if table == "ledger_meta":
            ledger.append(make_event(4))

    dsn = postgres_dsn()
    with fresh_schema(dsn, "mig") as schema:
        db = PgDatabase(dsn, schema=schema, pool_size=2)
        try:
            with pytest.raises(VerificationFailed, match="does not match the SQLite one"):
                migrate_from_sqlite(tmp_path, db, ORIGIN, key.verify_key, progress=still_running)
            with db.connection("t") as conn:
                for table in ("ledger_meta", "ledger_entries", "ledger_checkpoints"):
                    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
                    assert row == (0,), f"{table} kept rows of a refused migration"
            ledger.close()  # the gateway stopped: the migration runs now
            report = migrate_from_sqlite(tmp_path, db, ORIGIN, key.verify_key)
            assert report.after.entries == 5 and report.after.root == report.before.root
        finally:
            db.close()
