"""Only the replica holding the signing lease ever signs a checkpoint.

Two ``Ledger`` objects on one PostgreSQL schema, each with its own real
``PgLease`` and ``PgCheckpointAsks`` (two "replicas"). Their clocks differ, so a
stored checkpoint's issue time says which replica signed it. A replica
without the lease asked for a checkpoint (a proof for its newest entries)
asks the holder and returns the holder's checkpoint; with no holder answering
it fails UNAVAILABLE within ``Limits.checkpoint_wait_seconds`` and signs nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from gateway.config import StorageSettings
from gateway.errors import StorageFailure
from gateway.ledger.ledger import Ledger
from gateway.limits import DEFAULT_LIMITS
from gateway.storage.backend import Stores, open_postgres_stores
from gateway.storage.postgres.db import PgDatabase
from gateway.storage.postgres.lease import LINK_TIMEOUT_MS, PgLease
from tests.ledger.ledger_testkit import ORIGIN, make_event
from tests.pgtest import TcpProxy, fresh_schema, postgres_dsn
from tests.storage.test_store_contracts import KEY

HOLDER_MS, OTHER_MS = 1_000_000, 2_000_000  # each replica's clock: who signed what
# How long the non-holder waits for the holder's checkpoint: ample by default (an
# answer ends the wait at once, however loaded the machine), short where no one answers.
ANSWERED_WAIT, UNANSWERED_WAIT = 30.0, 0.6


def _replica(settings: StorageSettings, now_ms: int, wait: float = 5.0) -> tuple[Stores, Ledger]:
    stores = open_postgres_stores(settings, 300_000)
    ledger = Ledger(
        stores.ledger,
        KEY,
        ORIGIN,
        checkpoint_every=1000,
        checkpoint_interval=3600.0,
        clock=lambda: now_ms / 1000.0,
        limits=replace(DEFAULT_LIMITS, checkpoint_wait_seconds=wait),
        may_sign=stores.lease.held,
        ask_signer=stores.asks.ask,
    )
    stores.lease.start()
    stores.asks.serve(ledger.sign_if_holder)
    return stores, ledger


@pytest.fixture
def two(
    pg_settings: StorageSettings, request: pytest.FixtureRequest
) -> Iterator[tuple[Stores, Ledger, Stores, Ledger]]:
    a, la = _replica(pg_settings, HOLDER_MS)
    assert a.lease.held()
    b, lb = _replica(pg_settings, OTHER_MS, wait=getattr(request, "param", ANSWERED_WAIT))
    assert not b.lease.held()
    yield a, la, b, lb
    b.close()
    a.close()


def _signers(ledger: Ledger) -> set[int]:
    return {c.issued_ms for c in ledger.checkpoints()}


def _wait_for(cond: Callable[[], object], failure: str, seconds: float = 10.0) -> None:
    """Poll ``cond`` until it holds; fail with ``failure`` after ``seconds``."""
    end = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < end, failure
        time.sleep(0.05)


def test_replica_without_the_lease_gets_a_checkpoint_signed_by_the_holder(
    two: tuple[Stores, Ledger, Stores, Ledger],
) -> None:
    _a, la, _b, lb = two
    for i in range(5):
        lb.append(make_event(i))
    assert lb.checkpoints() == [], "the non-holder signed a cadence checkpoint"
    t0 = time.perf_counter()
    cp = lb.checkpoint_now()
    took = time.perf_counter() - t0
    assert cp.checkpoint.size == 5 and cp.issued_ms == HOLDER_MS
    print(f"on-demand checkpoint through the holder: {took * 1000:.1f} ms")
    # Many proofs asked at once of the non-holder: one holder signature per size.
    for i in range(5, 9):
        lb.append(make_event(i))
    with ThreadPoolExecutor(8) as pool:
        sizes = list(pool.map(lambda _: lb.checkpoint_now().checkpoint.size, range(8)))
    assert sizes == [9] * 8
    assert [c.checkpoint.size for c in la.checkpoints()] == [5, 9]
    assert _signers(la) == {HOLDER_MS}, "a checkpoint was signed by the replica without the lease"


@pytest.mark.parametrize("two", [UNANSWERED_WAIT], indirect=True)
def test_without_an_answering_holder_the_non_holder_fails_unavailable_and_signs_nothing(
    two: tuple[Stores, Ledger, Stores, Ledger],
) -> None:
    a, la, b, lb = two
    lb.append(make_event(0))
    a.asks.stop()  # the holder keeps the lease but no longer answers (stuck, partitioned)
    t0 = time.monotonic()  # the clock the ledger's deadline is on
    with pytest.raises(StorageFailure, match=r"did not sign one within 0\.6 s") as info:
        lb.checkpoint_now()
    took = time.monotonic() - t0
    assert info.value.grpc_code == grpc.StatusCode.UNAVAILABLE
    # It waited out the configured limit for the holder, then gave up (the generous
    # upper bound tells giving up from waiting on; it measures no speed).
    assert UNANSWERED_WAIT <= took < 10.0, took
    assert lb.checkpoints() == []
    # The holder goes away: the lease moves to the other replica, which then signs itself.
    a.close()
    _wait_for(lambda: b.lease.held(), "no takeover")
    cp = lb.checkpoint_now()
    assert cp.checkpoint.size == 1 and cp.issued_ms == OTHER_MS
    assert _signers(lb) == {OTHER_MS}
    del la


def test_proof_asked_of_a_replica_without_the_lease_is_against_the_holders_checkpoint(
    tmp_path: Path,
) -> None:
    """Two real replicas of Beijing (gRPC, one schema). The second runs its
    clock two minutes ahead, so a checkpoint's issue time says who signed it:
    an auditor's inclusion proof for the newest entry, asked of the replica
    without the lease, is served against a checkpoint the holder signed."""
    from gateway._proto.dataexchange.gateway.v1 import ledger_pb2, ledger_pb2_grpc
    from gateway.client import ServiceClient
    from gateway.config import load_config
    from gateway.demo.setup import add_replicas, build_federation
    from gateway.server.app import Gateway
    from tests.conftest import RunningFederation
    from tests.storage.kit import hebei_exchange

    ahead_ms = 120_000
    dsn = postgres_dsn()
    with fresh_schema(dsn, "sign") as schema:
        fed = build_federation(tmp_path, rows=60)
        sites = add_replicas(fed, "110000", dsn, schema, 2)
        holder = Gateway(load_config(sites[0].config))
        other = Gateway(
            load_config(sites[1].config), clock_ms=lambda: int(time.time() * 1000) + ahead_ms
        )
        gws = {c: Gateway(load_config(fed.sites[c].config)) for c in ("120000", "130000")}
        rf = RunningFederation(fed, {**gws, "110000": holder})
        try:
            holder.start()
            assert holder.stores.lease.held()
            for gw in [other, *gws.values()]:
                gw.start()
            assert not other.stores.lease.held()
            for _ in range(3):
                hebei_exchange(rf)
            newest = other.stores.ledger.size() - 1
            latest = other.ledger.latest_checkpoint()
            assert latest is None or latest.checkpoint.size <= newest
            site = sites[1]
            with ServiceClient(
                site.service_address, site.tls_cert, "110000", site.tokens["beijing-audit"]
            ) as c:
                resp = ledger_pb2_grpc.LedgerStub(c.channel).GetInclusionProof(
                    ledger_pb2.GetInclusionProofRequest(index=newest), timeout=15
                )
            assert resp.tree_size >= newest + 1
            signed = other.ledger.checkpoint_covering(resp.tree_size)
            assert signed is not None and signed.checkpoint.size == resp.tree_size
            now_ms = int(time.time() * 1000)
            assert abs(signed.issued_ms - now_ms) < ahead_ms / 2, "signed by the non-holder"
            issued = [c.issued_ms for c in holder.ledger.checkpoints()]
            assert all(abs(ms - now_ms) < ahead_ms / 2 for ms in issued), issued
        finally:
            for gw in [other, holder, *gws.values()]:
                gw.stop(grace=0.2)


# --------------------------------------------------------------------------
# A holder whose keep-alive hangs must stop acting as holder
# --------------------------------------------------------------------------

KEEPALIVE_CHECK = 0.25  # the lease's check interval in these tests: keep-alive timeout 0.5 s


def _lease_lost(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "lease lost" in r.getMessage()]


@contextmanager
def _lease_behind_a_proxy(prefix: str) -> Iterator[tuple[PgLease, TcpProxy]]:
    """A lease (not yet started) whose database link runs through a proxy the
    test can freeze (bytes acknowledged, never forwarded) and thaw."""
    dsn = postgres_dsn()
    proxy = TcpProxy.before(dsn)
    with fresh_schema(dsn, prefix) as schema:
        db = PgDatabase(proxy.url_for(dsn), schema=schema, pool_size=2)
        lease = PgLease(db, interval=KEEPALIVE_CHECK)
        try:
            yield lease, proxy
        finally:
            proxy.thaw()
            lease.stop()
            db.close()
            proxy.cut()


def test_lease_holder_whose_keep_alive_blocks_on_the_server_loses_the_lease_and_frees_it(
    pg_settings: StorageSettings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The keep-alive blocks in the server (here a pg_sleep in its place): without a
    statement timeout the holder waited on it indefinitely, still saying it held
    the lease, and kept the lock from every other replica."""
    url, schema = pg_settings.url or "", pg_settings.db_schema
    db1 = PgDatabase(url, schema=schema, pool_size=2)
    db2 = PgDatabase(url, schema=schema, pool_size=2)
    first = PgLease(db1, interval=KEEPALIVE_CHECK)
    second = PgLease(db2, interval=KEEPALIVE_CHECK)
    try:
        assert first.poll() and not second.poll()
        monkeypatch.setattr(PgLease, "keepalive_sql", "SELECT pg_sleep(8)")
        result: list[bool] = []
        with caplog.at_level(logging.WARNING, "gateway.storage"):
            check = threading.Thread(target=lambda: result.append(first.poll()), daemon=True)
            check.start()
            end = time.monotonic() + 4
            while first.held() and time.monotonic() < end:
                time.sleep(0.02)
            assert not first.held(), "the holder still signs while its keep-alive hangs"
            check.join(4)  # the server cancelled the keep-alive: the check ended
            assert result == [False]
        monkeypatch.undo()
        # Its session was closed, so the lock is free: the other replica takes it.
        _wait_for(lambda: second.poll(), "the lock was not freed")
        (lost,) = _lease_lost(caplog)  # logged once
        assert "keep-alive did not answer within 0.5 s" in lost
    finally:
        first.stop()
        second.stop()
        db1.close()
        db2.close()


def test_lease_holder_cut_off_by_a_hung_connection_stops_signing_within_the_keep_alive_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The link to the database hangs (no error, no answer: a frozen proxy): the
    server never sees the keep-alive, so only the holder's own clock can tell.
    It stops saying it holds the lease once the keep-alive is overdue, logs it
    once, and holds the lease again after the link recovers."""
    with (
        _lease_behind_a_proxy("hang") as (lease, proxy),
        caplog.at_level(logging.WARNING, "gateway.storage"),
    ):
        assert lease.start().held()
        proxy.freeze()
        t0 = time.monotonic()
        while lease.held() and time.monotonic() - t0 < 5:
            time.sleep(0.02)
        took = time.monotonic() - t0
        assert not lease.held(), "the holder still signs on a hung connection"
        # One check interval until the next keep-alive, then its timeout
        # (a generous bound: it tells "stopped" from "never stops").
        assert took < 3.0, took
        assert not lease.held()
        proxy.thaw()
        _wait_for(lambda: lease.held(), "the lease was not taken again")
        (lost,) = _lease_lost(caplog)
        assert "keep-alive has not answered within 0.5 s" in lost


def test_a_lease_thread_blocked_on_a_hung_link_returns_once_its_keep_alive_is_overdue(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The link hangs (a frozen proxy: bytes acknowledged, never forwarded, so neither
    the server's statement timeout nor the client's TCP timeout ever fires): ``held``
    went False, but the lease thread stayed blocked on the keep-alive until the link
    recovered, so the replica could not try for the lease again. The lease now shuts
    the connection's socket down: the thread returns at once and drops the session."""
    with (
        _lease_behind_a_proxy("hungthread") as (lease, proxy),
        caplog.at_level(logging.WARNING, "gateway.storage"),
    ):
        assert lease.start().held()
        hung = lease._conn
        assert hung is not None
        proxy.freeze()
        t0 = time.monotonic()
        while (lease._conn is hung or not hung.closed) and time.monotonic() - t0 < 5:
            time.sleep(0.02)
        took = time.monotonic() - t0
        assert hung.closed and lease._conn is not hung, "the lease thread is still blocked"
        assert took < 3.0, took  # an interval, the keep-alive timeout, a watchdog tick
        assert not lease.held()
        proxy.thaw()
        _wait_for(lambda: lease.held(), "the lease was not taken again")
        (lost,) = _lease_lost(caplog)  # logged once
        assert "keep-alive has not answered within 0.5 s" in lost


def test_a_hung_link_unblocks_the_lease_thread_from_the_client_side_too(tmp_path: Path) -> None:
    """On a link that goes dead mid-way (no FIN, no RST: a switch or a VM gone), the
    keep-alive the lease thread sent stays unacknowledged; TCP keepalives never
    probe such a link, so the thread stayed blocked until the kernel's retransmissions
    ran out (about 15 minutes) and this replica could not try for the lease again.
    The server end had a TCP user timeout; the lease's own connection now has one
    too (libpq's ``tcp_user_timeout``, with keepalives), so the client gives up as
    soon as the server does. (A loopback proxy cannot drop segments, so this checks
    the connection the lease opens rather than waiting out a real dead link.)"""
    dsn = postgres_dsn()
    with fresh_schema(dsn, "linkto") as schema:
        db = PgDatabase(dsn, schema=schema, pool_size=2)
        lease = PgLease(db, interval=KEEPALIVE_CHECK)
        try:
            assert lease.poll()
            conn = lease._conn
            assert conn is not None
            params = conn.info.get_parameters()
            assert params.get("tcp_user_timeout") == str(LINK_TIMEOUT_MS)
            assert params.get("keepalives") == "1"
            assert int(params["keepalives_idle"]) * 1000 < LINK_TIMEOUT_MS
            # Both ends give up on the link within the same bound.
            row = conn.execute("SHOW tcp_user_timeout").fetchone()
            assert row is not None and row[0] in (str(LINK_TIMEOUT_MS), f"{LINK_TIMEOUT_MS}ms")
        finally:
            lease.stop()
            db.close()
