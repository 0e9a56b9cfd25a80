"""The database goes away and comes back: calls fail UNAVAILABLE, nothing half-written."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from gateway.config import StorageSettings
from gateway.errors import CommitUnknown, StorageFailure
from gateway.ledger.ledger import Ledger
from gateway.ledger.verify import verify_store
from gateway.storage.backend import open_postgres_stores
from tests.ledger.ledger_testkit import ORIGIN, make_event
from tests.pgtest import TcpProxy, fresh_schema, postgres_dsn
from tests.storage.test_store_contracts import KEY


def _until_ok(fn: Callable[[], object], timeout: float = 20.0) -> object:
    end = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except StorageFailure:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def test_database_outage_fails_calls_unavailable_and_recovers_without_a_torn_entry() -> None:
    dsn = postgres_dsn()
    proxy = TcpProxy.before(dsn)
    with fresh_schema(dsn, "out") as schema:
        stores = open_postgres_stores(
            StorageSettings(url=proxy.url_for(dsn), schema=schema, pool_size=4), 300_000
        )
        try:
            stores.lease.start()
            assert stores.lease.held()
            ledger = Ledger(
                stores.ledger, KEY, ORIGIN, checkpoint_every=3, may_sign=stores.lease.held
            )
            for i in range(5):
                ledger.append(make_event(i))
            stores.replay.check_and_record("120000", "before", 1, 1)

            proxy.cut()
            with pytest.raises(StorageFailure) as info_append:
                ledger.append(make_event(5))
            assert info_append.value.grpc_code == grpc.StatusCode.UNAVAILABLE
            assert "[storage] url" in str(info_append.value)
            with pytest.raises(StorageFailure):
                stores.replay.check_and_record("120000", "during", 1, 1)
            stores.lease.poll()
            assert not stores.lease.held(), "a replica cut off from the database keeps the lease"

            proxy.restore()
            _until_ok(lambda: ledger.append(make_event(6)))
            stores.replay.check_and_record("120000", "during", 1, 1)  # was never recorded
            end = time.monotonic() + 20
            while not stores.lease.poll() and time.monotonic() < end:
                time.sleep(0.2)  # the old session's lock goes when PostgreSQL sees it closed
            assert stores.lease.held(), "the lease was not taken again after the outage"
            ledger.checkpoint_now()
            report = verify_store(stores.ledger, ORIGIN, KEY.verify_key)
            assert report.ok, report.problem
            assert report.entries == 6  # entry 5 was refused whole; 6 follows 4
            assert [e.event.request_id for e in ledger.entries(0, 10)][-1] == "req-000006"
        finally:
            stores.close()
            proxy.cut()


def test_replica_frozen_inside_a_ledger_append_does_not_block_the_other_replicas_forever() -> None:
    """A replica whose machine dies (or whose process is stopped) in the middle of
    a group commit leaves its transaction open, holding the ledger's append lock;
    PostgreSQL sees no closed socket, so without a bound every other replica's
    appends wait for hours (the server's TCP keepalive). The frozen session is
    ended after ``[limits] storage_idle_transaction_seconds``: the others go on,
    and the frozen replica's batch, never acknowledged, is not stored."""
    import threading

    from gateway.limits import Limits

    dsn = postgres_dsn()
    limits = Limits(storage_idle_transaction_seconds=2.0)
    with fresh_schema(dsn, "frz") as schema:
        settings = StorageSettings(url=dsn, schema=schema, pool_size=4)
        frozen = open_postgres_stores(settings, 300_000, limits=limits)
        other = open_postgres_stores(settings, 300_000, limits=limits)
        try:
            a = Ledger(frozen.ledger, KEY, ORIGIN)
            b = Ledger(other.ledger, KEY, ORIGIN)
            a.append(make_event(0))
            in_lock, resume = threading.Event(), threading.Event()
            a_failed: list[BaseException] = []

            def freeze_mid_append() -> None:
                try:
                    with frozen.ledger.exclusive(a.size) as head:
                        assert head is not None
                        frozen.ledger.append(head.size, [], [], [])
                        in_lock.set()
                        resume.wait(30)  # the machine is gone, as far as anyone can tell
                except StorageFailure as exc:
                    a_failed.append(exc)

            t = threading.Thread(target=freeze_mid_append)
            t.start()
            assert in_lock.wait(10)
            done = threading.Event()
            b_result: list[object] = []

            def append_on_other() -> None:
                try:
                    b_result.append(b.append(make_event(1)))
                except BaseException as exc:
                    b_result.append(exc)
                done.set()

            threading.Thread(target=append_on_other, daemon=True).start()
            finished = done.wait(15)
            resume.set()
            t.join(30)
            assert finished, "the other replica's append waited for the frozen one's lock"
            assert not isinstance(b_result[0], BaseException), b_result
            assert a_failed, "the frozen replica's transaction was committed after all"
            assert other.ledger.size() == 2
        finally:
            frozen.close()
            other.close()


def test_connection_lost_at_commit_is_commit_unknown_and_lost_before_it_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Failure: a COMMIT whose answer never came back was an ordinary
    # StorageFailure ("nothing stored"), so a holder gave back the quota charge
    # of an entry that may well be stored. It is now CommitUnknown; a failure
    # before the COMMIT is sent stays a plain StorageFailure.
    from gateway.storage.postgres.ledger import PgLedgerStore

    dsn = postgres_dsn()
    proxy = TcpProxy.before(dsn)
    with fresh_schema(dsn, "commit") as schema:
        stores = open_postgres_stores(
            StorageSettings(url=proxy.url_for(dsn), schema=schema, pool_size=2), 300_000
        )
        try:
            ledger = Ledger(stores.ledger, KEY, ORIGIN, checkpoint_every=100)
            ledger.append(make_event(0))
            write = PgLedgerStore.append

            def then_cut(self: PgLedgerStore, *args: Any) -> None:
                write(self, *args)  # the batch is written in the open transaction ...
                proxy.cut()  # ... and the connection is gone before its COMMIT is answered

            with monkeypatch.context() as m:
                m.setattr(PgLedgerStore, "append", then_cut)
                with pytest.raises(CommitUnknown) as lost:
                    ledger.append(make_event(1))
            assert lost.value.grpc_code == grpc.StatusCode.UNAVAILABLE
            assert "may or may not be stored" in str(lost.value)
            # The connection lost before anything was sent: certainly not stored.
            with pytest.raises(StorageFailure) as before:
                ledger.append(make_event(2))
            assert not isinstance(before.value, CommitUnknown)
            proxy.restore()
            _until_ok(lambda: ledger.append(make_event(3)))
            report = verify_store(stores.ledger, ORIGIN, KEY.verify_key)
            assert report.ok, report.problem
        finally:
            stores.close()
            proxy.cut()
