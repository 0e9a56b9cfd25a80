"""Scale benchmark: the ledger and the exchange path on PostgreSQL against SQLite.

In one run:

1. durable ledger appends (each caller answered only after its commit):
   single (one caller) and concurrent (32 callers, group-committed), on a
   SQLite file and on PostgreSQL, plus 32 callers spread over two PostgreSQL
   "replicas" (two ledgers, two pools, one schema: the cross-replica lock);
2. one-record exchange throughput at concurrency 32 through a requester
   gateway to the holder 110000 running as: one replica on SQLite, one on
   PostgreSQL, two on PostgreSQL (both endpoints in the bundle). Every
   gateway is a real ``gateway serve`` process.

PostgreSQL: ``GATEWAY_BENCH_POSTGRES_DSN`` (default the machine's
``postgresql://postgres@127.0.0.1:5432/test``); a fresh schema per run,
dropped afterwards.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import grpc
import psycopg
from psycopg import sql

from benchparts.common import Report
from benchparts.exchange import _bench_policies, _drive
from benchparts.procstat import cpu_seconds
from gateway.client import ServiceClient
from gateway.config import StorageSettings
from gateway.crypto import SigningKey
from gateway.demo.run import _wait_healthy, start_gateways, stop_gateways
from gateway.demo.setup import CLUSTER, add_replicas, build_federation, use_storage
from gateway.errors import StorageFailure
from gateway.ledger.ledger import Ledger
from gateway.ledger.storage import SqliteLedgerStore
from gateway.storage.backend import open_postgres_stores
from tests.ledger.ledger_testkit import make_event

ORIGIN = "110000.gateway.dataexchange.cn/ledger"
ENV = "GATEWAY_BENCH_POSTGRES_DSN"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def _appends(ledgers: list[Ledger], callers: int, per_caller: int) -> float:
    """Entries/s with ``callers`` threads appending (spread over ``ledgers``)."""
    counter = iter(range(10**9))
    lock = threading.Lock()

    def one() -> None:
        with lock:
            i = next(counter)
        ledgers[i % len(ledgers)].append(make_event(i))

    _, rate = _drive(one, callers, per_caller)
    return rate


def _append_part(rep: Report, dsn: str, schema: str, tmp: Path, quick: bool) -> dict[str, float]:
    singles, per = (40, 6) if quick else (300, 40)
    key = SigningKey(bytes(range(32)))
    out: dict[str, float] = {}
    sq = Ledger(SqliteLedgerStore(tmp / "ledger.sqlite"), key, ORIGIN, checkpoint_every=1000)
    settings = StorageSettings(url=dsn, schema=schema, pool_size=16)
    pg_a, pg_b = open_postgres_stores(settings, 1000), open_postgres_stores(settings, 1000)
    try:
        pa = Ledger(pg_a.ledger, key, ORIGIN, checkpoint_every=1000)
        pb = Ledger(pg_b.ledger, key, ORIGIN, checkpoint_every=1000)
        for name, ledgers, callers, n in (
            ("SQLite single", [sq], 1, singles),
            ("PostgreSQL single", [pa], 1, singles),
            ("SQLite concurrent (32 callers)", [sq], 32, per),
            ("PostgreSQL concurrent (32 callers)", [pa], 32, per),
            ("PostgreSQL 2 replicas (32 callers)", [pa, pb], 32, per),
        ):
            _appends(ledgers, callers, 2)  # warm up
            out[name] = _appends(ledgers, callers, n)
            rep.row(f"durable appends, {name}", out[name], "entries/s")
    finally:
        sq.close()
        pg_a.close()
        pg_b.close()
    return out


def _exchange_rate(client: ServiceClient, req: dict[str, object], per: int) -> float:
    def call() -> object:
        return client.get_records(**req)

    _drive(call, 32, per)  # warm up
    _, rate = _drive(call, 32, per)
    return rate


def _first_call(client: ServiceClient, req: dict[str, object]) -> None:
    """Wait until the requester reaches its holder (a new bundle, a restarted holder)."""
    end = time.monotonic() + 30
    while True:
        try:
            client.get_records(**req)
            return
        except grpc.RpcError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def _exchange_part(rep: Report, dsn: str, schema: str, tmp: Path, quick: bool) -> dict[str, float]:
    """Three federations side by side (holder on SQLite, on PostgreSQL, two
    PostgreSQL replicas), measured in interleaved rounds so that a change in the
    machine's load falls on all three alike; each figure is the median round."""
    rounds, per = (1, 3) if quick else (7, 20)
    members = tuple(m for m in CLUSTER if m.code in ("110000", "130000"))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    clients: dict[str, tuple[ServiceClient, dict[str, object]]] = {}
    try:
        for name, where, replicas in (
            ("1 replica, SQLite", None, 1),
            ("1 replica, PostgreSQL", schema + "_one", 1),
            ("2 replicas, PostgreSQL", schema + "_two", 2),
        ):
            fed = build_federation(
                tmp / f"fed-{len(clients)}", rows=500,
                policies=_bench_policies(tmp / f"policies-{len(clients)}"), members=members,
            )  # fmt: skip
            holder = fed.sites["110000"]
            if where is not None:
                use_storage(holder.config, dsn, where)
            sites = add_replicas(fed, "110000", dsn, where or "", 2) if replicas == 2 else []
            started = start_gateways(fed)  # re-signed bundle: both endpoints listed
            procs.update({f"{name}/{k}": v for k, v in started.items()})
            for i, site in enumerate(sites[1:], 2):
                procs[f"{name}/replica {i}"] = p = _serve(site.config, site.root)
                _wait_healthy(site, p)
            hb = fed.sites["130000"]
            with sqlite3.connect(holder.data_source) as conn:
                subject = conn.execute("SELECT person_id FROM si_contributions LIMIT 1").fetchone()[
                    0
                ]
            client = ServiceClient(
                hb.service_address, hb.tls_cert, "130000", hb.tokens["hebei-housing-fund"]
            )
            req: dict[str, object] = dict(
                holder_jurisdiction="110000", dataset="si_contributions",
                purpose="housing_fund_transfer", subject_ids=[subject],
            )  # fmt: skip
            clients[name] = (client, req)
        for client, req in clients.values():
            _first_call(client, req)
        rates: dict[str, list[float]] = {name: [] for name in clients}
        cpu: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
        for _ in range(rounds):
            for name, (client, req) in clients.items():
                holders = [
                    p.pid for k, p in procs.items() if k.startswith(name) and "130000" not in k
                ]
                before = (sum(map(cpu_seconds, holders)), _postgres_cpu())
                rates[name].append(_exchange_rate(client, req, per))
                calls = 2 * 32 * per  # warm-up and measured calls
                cpu[name].append(
                    (
                        1000 * (sum(map(cpu_seconds, holders)) - before[0]) / calls,
                        1000 * (_postgres_cpu() - before[1]) / calls,
                    )
                )
        out = {name: statistics.median(r) for name, r in rates.items()}
        for name, rate in out.items():
            rep.row(f"exchanges c=32, holder {name}", rate, "req/s")
        for name in clients:
            rep.row(
                f"CPU per exchange, holder {name}",
                statistics.median(c[0] for c in cpu[name]),
                "ms",
            )
            if "PostgreSQL" in name:
                rep.row(
                    f"CPU per exchange, PostgreSQL server ({name})",
                    statistics.median(c[1] for c in cpu[name]),
                    "ms",
                )
        rep.notes.append(
            f"exchanges: median of {rounds} interleaved rounds of {32 * per} calls; rounds "
            + "; ".join(f"{n}: " + ", ".join(f"{r:.0f}" for r in rs) for n, rs in rates.items())
        )
    finally:
        for client, _ in clients.values():
            client.close()
        stop_gateways(procs)
    return out


def _postgres_cpu() -> float:
    """CPU seconds of every PostgreSQL server process on this machine (its
    backends do the gateways' statements; other clients of the server count too)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "comm").read_text().strip() == "postgres":
                    total += cpu_seconds(int(proc.name))
            except OSError:  # ended meanwhile, or not ours to read
                continue
    return total


def _serve(config: Path, root: Path) -> subprocess.Popen[bytes]:
    import sys

    log = (root / f"{config.stem}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _drop_schemas(dsn: str, *names: str) -> None:
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for name in names:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
                )
    except psycopg.OperationalError:
        pass  # no server: nothing was created


def run(quick: bool = False) -> Report:
    dsn = os.environ.get(ENV, DEFAULT_DSN)
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))

    def body(schema: str) -> Report:
        rep = Report(
            "scale: ledger and exchanges on PostgreSQL (shared by replicas) vs SQLite",
            ["value", "unit"],
        )
        ap = _append_part(rep, dsn, schema + "_ledger", tmp, quick)
        ex = _exchange_part(rep, dsn, schema, tmp, quick)
        rep.ratio(
            "appends concurrent PostgreSQL / SQLite",
            ap["PostgreSQL concurrent (32 callers)"] / ap["SQLite concurrent (32 callers)"],
            ">= 0.5",
        )
        rep.ratio(
            "appends single PostgreSQL / SQLite",
            ap["PostgreSQL single"] / ap["SQLite single"],
            ">= 0.0",
        )
        rep.ratio(
            "exchanges c=32: 1 replica PostgreSQL / 1 SQLite",
            ex["1 replica, PostgreSQL"] / ex["1 replica, SQLite"],
            ">= 0.0",
        )
        rep.ratio(
            "exchanges c=32: 2 replicas PostgreSQL / 1 SQLite",
            ex["2 replicas, PostgreSQL"] / ex["1 replica, SQLite"],
            ">= 0.8",
        )
        rep.notes.append(
            f"{os.cpu_count()} CPUs shared by the client, the requester gateway, the holder "
            "replica(s) and PostgreSQL; durable = SQLite synchronous=FULL (fsync per group "
            "commit), PostgreSQL synchronous_commit as configured on the server"
        )
        return rep

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    try:
        return body(schema)
    except StorageFailure as exc:
        raise SystemExit(f"scale benchmark needs PostgreSQL (set {ENV}): {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        _drop_schemas(dsn, schema + "_one", schema + "_two", schema + "_ledger")
