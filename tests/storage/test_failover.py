"""Failover on real processes: kill -9 a holder replica while clients keep calling.

Holder 110000 runs as two ``gateway serve`` replicas on one PostgreSQL schema,
listed as two endpoints in the trust bundle; 130000 requests records and
120000 asks statistics in loops. Twice, at random moments, one replica is
killed with SIGKILL (the first time the lease holder) and restarted. Then:

* every failed call failed UNAVAILABLE (only calls in flight on the killed
  replica may fail), everything else succeeded;
* the holder's ledger verifies (chain, tree, every checkpoint) with the key
  from the trust bundle, every acknowledged exchange is on both sides, the
  checkpoint history is one history (strictly growing sizes, one per size)
  and the surviving replica went on signing after the takeover;
* 200 racing statistics queries spread across both replicas never spend
  more than the budget of 10.

Bounded: about 25-40 s on a loaded 2-core machine.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from gateway._proto.dataexchange.gateway.v1 import stats_pb2, stats_pb2_grpc
from gateway.client import ServiceClient, service_channel
from gateway.config import load_config
from gateway.demo.chapters import commuters_by_age
from gateway.demo.run import _wait_healthy
from gateway.demo.setup import REPO_POLICIES, GatewaySite, add_replicas, build_federation
from gateway.ledger.verify import verify_store
from gateway.server.app import Gateway
from gateway.storage.postgres.db import PgDatabase
from gateway.storage.postgres.ledger import PgLedgerStore
from gateway.trust import load_bundle
from tests.pgtest import fresh_schema, postgres_dsn

T0 = 0.0
LEASE_LOG = "now holds the checkpoint-signing lease"


class Replica:
    def __init__(self, site: GatewaySite, name: str) -> None:
        self.site = site
        self.name = name
        self.log = site.root / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0

    def start(self) -> None:
        self.started += 1
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--config", str(self.site.config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def wait_healthy(self) -> None:
        assert self.proc is not None
        _wait_healthy(self.site, self.proc)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def lease_events(self) -> int:
        return self.log.read_text(errors="replace").count(LEASE_LOG)


def _policies(tmp: Path) -> Path:
    """The repository's policies with one budget of epsilon 10 for the holder's dataset
    (and a daily record quota the loops cannot exhaust)."""
    out = tmp / "policies"
    shutil.copytree(REPO_POLICIES, out)
    stats = out / "110000" / "statistics.yaml"
    text = stats.read_text(encoding="utf-8")
    assert "epsilon_per_requester: 3.0" in text and "epsilon_total: 10.0" in text
    stats.write_text(text.replace("epsilon_per_requester: 3.0", "epsilon_per_requester: 10.0"))
    agreement = out / "110000" / "agreements" / "si-contributions-to-hebei-housing-fund.yaml"
    text = agreement.read_text(encoding="utf-8")
    assert "quota_per_day: 1000\n" in text
    agreement.write_text(text.replace("quota_per_day: 1000\n", "quota_per_day: 1000000\n"))
    return out


def _faster_checkpoints(config: Path) -> None:
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("checkpoint_every_seconds = 5", "checkpoint_every_seconds = 1"))


def _stats_query(epsilon: float) -> stats_pb2.StatsQueryRequest:
    return commuters_by_age(["110000"], epsilon)


def test_kill_9_of_holder_replicas_loses_no_acknowledged_exchange_and_overspends_nothing(
    tmp_path: Path,
) -> None:
    global T0
    T0 = time.monotonic()
    dsn = postgres_dsn()
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    print(f"failover test seed {seed}")
    with fresh_schema(dsn, "fo") as schema:
        fed = build_federation(tmp_path, rows=100, policies=_policies(tmp_path))
        sites = add_replicas(fed, "110000", dsn, schema, 2)
        for s in sites:
            _faster_checkpoints(s.config)
        replicas = [Replica(s, f"replica{i}") for i, s in enumerate(sites)]
        # The requesters run in this process (only the holder's replicas are killed).
        others = {c: Gateway(load_config(fed.sites[c].config)) for c in ("120000", "130000")}
        try:
            for r in replicas:
                r.start()
            for gw in others.values():
                gw.start()
            for r in replicas:
                r.wait_healthy()
            print(f"failover: gateways up at {time.monotonic() - T0:.1f} s")
            _run_and_check(fed, replicas, others, dsn, schema, rnd)
        finally:
            for r in replicas:
                r.stop()
            for gw in others.values():
                gw.stop(grace=0.2)
            print(f"failover: gateways stopped at {time.monotonic() - T0:.1f} s")


def _run_and_check(  # type: ignore[no-untyped-def]
    fed,
    replicas: list[Replica],
    others: dict[str, Gateway],
    dsn: str,
    schema: str,
    rnd: random.Random,
) -> None:
    requester = fed.sites["130000"]
    planner = fed.sites["120000"]
    subject = _subject(fed)
    stop = threading.Event()
    acked: list[str] = []
    codes: Counter[str] = Counter()
    stats_codes: Counter[str] = Counter()
    lock = threading.Lock()

    def exchanges() -> None:
        client = ServiceClient(
            requester.service_address,
            requester.tls_cert,
            "130000",
            requester.tokens["hebei-housing-fund"],
        )
        try:
            while not stop.is_set():
                try:
                    resp = client.get_records(
                        timeout=10,
                        holder_jurisdiction="110000",
                        dataset="si_contributions",
                        purpose="housing_fund_transfer",
                        subject_ids=[subject],
                    )
                    with lock:
                        acked.append(resp.request_id)
                        codes["OK"] += 1
                except grpc.RpcError as exc:
                    with lock:
                        codes[exc.code().name] += 1
        finally:
            client.close()

    def statistics() -> None:
        ch = service_channel(
            planner.service_address,
            planner.tls_cert.read_bytes(),
            "120000",
            planner.tokens["tianjin-planning"],
        )
        stub = stats_pb2_grpc.StatisticsStub(ch)
        try:
            while not stop.is_set():
                try:
                    stub.Query(_stats_query(0.05), timeout=10)
                    code = "OK"
                except grpc.RpcError as exc:
                    code = exc.code().name
                with lock:
                    stats_codes[code] += 1
                stop.wait(0.3)
        finally:
            ch.close()

    t0 = time.monotonic()
    workers = [threading.Thread(target=exchanges) for _ in range(4)]
    workers.append(threading.Thread(target=statistics))
    for w in workers:
        w.start()
    try:
        time.sleep(1.0)
        # Round 1: kill the lease holder; round 2: a random replica.
        holder = max(replicas, key=lambda r: (r.lease_events(), r.started))
        for victim in (holder, rnd.choice(replicas)):
            time.sleep(rnd.uniform(0.3, 1.5))
            before = len(acked)
            victim.kill9()
            time.sleep(1.5)  # the other replica carries everything meanwhile
            assert len(acked) > before, f"calls stopped while one replica was down: {codes}"
            victim.start()
            victim.wait_healthy()
        time.sleep(1.0)
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=30)
    print(f"failover: exchanges {dict(codes)}, statistics {dict(stats_codes)}")
    assert codes["OK"] > 20, codes
    assert set(codes) <= {"OK", "UNAVAILABLE"}, codes
    assert set(stats_codes) <= {"OK", "UNAVAILABLE"}, stats_codes
    assert stats_codes["OK"] > 0

    # 200 racing statistics queries across both replicas: never beyond epsilon 10.
    spent_before = _spent_units(dsn, schema)
    ch = service_channel(
        planner.service_address,
        planner.tls_cert.read_bytes(),
        "120000",
        planner.tokens["tianjin-planning"],
    )
    stub = stats_pb2_grpc.StatisticsStub(ch)

    def race(_: int) -> str:
        try:
            stub.Query(_stats_query(1.0), timeout=30)
            return "OK"
        except grpc.RpcError as exc:
            return exc.code().name

    with ThreadPoolExecutor(32) as pool:
        race_codes = Counter(pool.map(race, range(200)))
    ch.close()
    print(f"failover: racing statistics {dict(race_codes)} at {time.monotonic() - t0:.1f} s")
    assert set(race_codes) <= {"OK", "RESOURCE_EXHAUSTED"}, race_codes
    assert race_codes["RESOURCE_EXHAUSTED"] > 0

    db = PgDatabase(dsn, schema=schema, pool_size=2)
    try:
        with db.connection("test") as conn:
            row = conn.execute(
                "SELECT COALESCE(SUM(epsilon_units), 0), count(*) FROM spends"
            ).fetchone()
        assert row is not None
        spent_units, spends = int(row[0]), int(row[1])
        assert spent_units <= 10 * 10**9, f"budget overspent: {spent_units / 1e9}"
        # Exactly what was left is granted: nothing overspent, nothing lost.
        assert race_codes["OK"] == (10 * 10**9 - spent_before) // 10**9
        assert spent_units == spent_before + race_codes["OK"] * 10**9

        # Let the lease holder cover the tail with a checkpoint (cadence: 1 s).
        store = PgLedgerStore(db)
        size = store.size()
        end = time.monotonic() + 15
        while time.monotonic() < end:
            latest = store.latest_checkpoint()
            if latest is not None and latest.size >= size:
                break
            time.sleep(0.25)
        member = load_bundle(fed.bundle, fed.authority_pub_key()).member("110000")
        report = verify_store(store, member.origin, member.ledger_key)
        assert report.ok, report.problem
        assert report.checkpoint_size >= size, "no checkpoint after the takeover"
        print(f"failover: ledger of {size} entries verified at {time.monotonic() - t0:.1f} s")
        rows = store.checkpoints()
        sizes = [r.size for r in rows]
        assert sizes == sorted(set(sizes)), "two checkpoints for one size"
        assert [r.seq for r in rows] == list(range(len(rows)))
        holder_ids = {r.request_id for r in store.iter_entries()}
        missing_on_holder = [i for i in acked if i not in holder_ids]
        assert not missing_on_holder, missing_on_holder[:5]
        assert spends >= race_codes["OK"] + stats_codes["OK"]
    finally:
        db.close()
    assert sum(r.lease_events() for r in replicas) >= 2, "the lease was never taken over"

    req = others["130000"]
    req.ledger.checkpoint_now()
    req_ids = {r.request_id for r in req.stores.ledger.iter_entries()}
    he = load_bundle(fed.bundle, fed.authority_pub_key()).member("130000")
    assert verify_store(req.stores.ledger, he.origin, he.ledger_key).ok
    assert not [i for i in acked if i not in req_ids]


def _spent_units(dsn: str, schema: str) -> int:
    db = PgDatabase(dsn, schema=schema, pool_size=2)
    try:
        with db.connection("test") as conn:
            row = conn.execute("SELECT COALESCE(SUM(epsilon_units), 0) FROM spends").fetchone()
        return int(row[0]) if row else 0
    finally:
        db.close()


def _subject(fed) -> str:  # type: ignore[no-untyped-def]
    import sqlite3

    path = fed.sites["110000"].data_source
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as c:
        row = c.execute(
            "SELECT person_id FROM si_contributions WHERE residence_jurisdiction='130000' LIMIT 1"
        ).fetchone()
    return str(row[0])


pytestmark = pytest.mark.timeout(240)
