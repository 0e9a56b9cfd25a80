"""The database goes away and comes back: calls fail UNAVAILABLE, nothing half-written."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
import psycopg
import pytest

from gateway.config import StorageSettings
from gateway.errors import StorageFailure
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
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    proxy = TcpProxy(str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432))
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
