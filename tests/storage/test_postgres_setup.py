"""PostgreSQL start-up: clear errors naming the setting, migrations once, the lease."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest
from psycopg import sql

from gateway.config import StorageSettings
from gateway.errors import StorageFailure
from gateway.ledger.ledger import Ledger
from gateway.storage.backend import open_postgres_stores
from gateway.storage.postgres.db import PgDatabase
from gateway.storage.postgres.lease import PgLease
from gateway.storage.postgres.schema import MIGRATIONS
from tests.ledger.ledger_testkit import ORIGIN, make_event
from tests.pgtest import fresh_schema, postgres_dsn
from tests.storage.test_store_contracts import KEY


def test_unreachable_server_error_names_the_setting_and_hides_the_password() -> None:
    with pytest.raises(StorageFailure) as info:
        PgDatabase("postgresql://gw:hunter2@127.0.0.1:1/test", connect_timeout=2)
    message = str(info.value)
    assert "[storage] url" in message and "unreachable" in message
    assert "gw@127.0.0.1:1/test" in message
    assert "hunter2" not in message


def test_missing_database_error_names_the_setting() -> None:
    dsn = postgres_dsn()
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info["dbname"] = f"no_such_db_{uuid.uuid4().hex[:8]}"
    with pytest.raises(StorageFailure, match=r"no such PostgreSQL database \(\[storage\] url = "):
        PgDatabase(psycopg.conninfo.make_conninfo(**info))


def test_role_without_rights_gets_an_error_naming_the_setting() -> None:
    dsn = postgres_dsn()
    role = f"gw_norights_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
        info["user"] = role
        with pytest.raises(StorageFailure, match=r"lacks rights \(\[storage\] url = " + role):
            PgDatabase(psycopg.conninfo.make_conninfo(**info), schema=f"s_{role}")
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_replicas_starting_together_apply_each_migration_once(pg_settings: StorageSettings) -> None:
    assert pg_settings.url is not None
    opened: list[PgDatabase] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            opened.append(
                PgDatabase(pg_settings.url or "", schema=pg_settings.db_schema, pool_size=2)
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors
        with opened[0].connection("test") as conn:
            rows = conn.execute("SELECT version FROM gateway_schema ORDER BY version").fetchall()
        assert [r[0] for r in rows] == [m.version for m in MIGRATIONS]
    finally:
        for db in opened:
            db.close()


def test_database_migrated_by_a_newer_gateway_is_refused(pg_settings: StorageSettings) -> None:
    db = PgDatabase(pg_settings.url or "", schema=pg_settings.db_schema, pool_size=2)
    with db.connection("test") as conn:
        conn.execute("INSERT INTO gateway_schema (version, description) VALUES (999, 'future')")
    db.close()
    with pytest.raises(StorageFailure, match="newer than this gateway"):
        PgDatabase(pg_settings.url or "", schema=pg_settings.db_schema, pool_size=2)


def test_schemas_are_isolated_from_each_other() -> None:
    dsn = postgres_dsn()
    with fresh_schema(dsn) as s1, fresh_schema(dsn) as s2:
        a = open_postgres_stores(StorageSettings(url=dsn, schema=s1, pool_size=2), 1000)
        b = open_postgres_stores(StorageSettings(url=dsn, schema=s2, pool_size=2), 1000)
        try:
            a.replay.check_and_record("x", "id", 1, 1)
            b.replay.check_and_record("x", "id", 1, 1)  # another gateway's state
            a.lease.start()
            b.lease.start()
            assert a.lease.held() and b.lease.held()  # leases are per schema
        finally:
            a.close()
            b.close()


def test_lease_is_held_by_one_replica_and_taken_over_when_it_goes(
    pg_settings: StorageSettings,
) -> None:
    db1 = PgDatabase(pg_settings.url or "", schema=pg_settings.db_schema, pool_size=2)
    db2 = PgDatabase(pg_settings.url or "", schema=pg_settings.db_schema, pool_size=2)
    first, second = PgLease(db1, interval=3600), PgLease(db2, interval=3600)
    try:
        assert first.poll() is True
        assert second.poll() is False
        assert first.poll() is True  # keeps it
        first.stop()  # its session ends: PostgreSQL frees the lock when it sees the close
        end = time.monotonic() + 10
        while not second.poll() and time.monotonic() < end:
            time.sleep(0.05)
        assert second.held()
        assert first.held() is False
    finally:
        first.stop()
        second.stop()
        db1.close()
        db2.close()


def test_only_the_lease_holder_signs_cadence_checkpoints(pg_settings: StorageSettings) -> None:
    holder = open_postgres_stores(pg_settings, 1000)
    other = open_postgres_stores(pg_settings, 1000)
    try:
        holder.lease.start()
        other.lease.start()
        assert holder.lease.held() and not other.lease.held()
        clock = [1_700_000_000.0]
        lh = Ledger(
            holder.ledger,
            KEY,
            ORIGIN,
            checkpoint_every=4,
            clock=lambda: clock[0],
            may_sign=holder.lease.held,
        )
        lo = Ledger(
            other.ledger,
            KEY,
            ORIGIN,
            checkpoint_every=4,
            clock=lambda: clock[0],
            may_sign=other.lease.held,
        )
        for i in range(9):
            lo.append(make_event(i))
        assert lo.checkpoints() == []  # not the holder: no cadence checkpoint
        assert lo.tick() is None
        cp = lh.tick()  # the holder catches up with the other replica's entries
        assert cp is not None and cp.checkpoint.size == 9
        assert cp.checkpoint.root == lo.root_at(9)
        assert lh.tick() is None  # nothing new: never a second checkpoint for size 9
        assert lo.checkpoint_now().checkpoint.size == 9  # on demand: the stored one
        assert [c.checkpoint.size for c in lh.checkpoints()] == [9]
    finally:
        holder.close()
        other.close()


def test_busy_pool_is_not_reported_as_an_unreachable_database_nor_makes_later_callers_fail_fast(
    pg_settings: StorageSettings,
) -> None:
    db = PgDatabase(pg_settings.url or "", schema=pg_settings.db_schema, pool_size=2)
    try:
        with db.connection("first"), db.connection("second"):
            # Every pooled connection busy: the caller waits its turn, then is
            # told so (not "PostgreSQL unreachable": the database answers).
            with pytest.raises(StorageFailure) as info:
                with db.connection("third"):
                    pass
            assert "no database connection free" in str(info.value)
            assert "unreachable" not in str(info.value)
        # A caller that finds the pool busy still waits the normal time for a
        # connection, not the half second meant for a database that is down.
        held = threading.Event()
        release = threading.Event()

        def busy_for_a_while() -> None:
            with db.connection("busy"), db.connection("busy"):
                held.set()
                release.wait(10)

        def release_soon() -> None:
            time.sleep(1.0)
            release.set()

        worker = threading.Thread(target=busy_for_a_while)
        worker.start()
        assert held.wait(5)
        threading.Thread(target=release_soon).start()
        try:
            with db.connection("patient") as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        finally:
            release.set()
            worker.join()
    finally:
        db.close()
