"""`/readyz` and `/metrics` of replicas on PostgreSQL report the shared database.

Two replicas of the holder 110000 on one schema, reached through a TCP proxy
that stands for the network to the database: both report the same ledger size
and store rows (the shared tables, not SQLite files that are not there), only
one reports the signing lease, and both turn not ready, naming the database,
when it is cut off, and ready again when it returns.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import load_config
from gateway.demo.setup import add_replicas, build_federation
from gateway.server.app import Gateway
from tests.conftest import RunningFederation
from tests.pgtest import TcpProxy, fresh_schema, postgres_dsn
from tests.storage.kit import hebei_exchange


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _gauges(ops_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = _get(ops_url + "/metrics")
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(body.decode())
        for s in fam.samples
    }


def _ready(ops_url: str) -> tuple[int, dict[str, str]]:
    status, body = _get(ops_url + "/readyz")
    return status, json.loads(body)["checks"]


def test_replicas_report_the_shared_databases_state_and_readiness(tmp_path: Path) -> None:
    dsn = postgres_dsn()
    proxy = TcpProxy.before(dsn)
    with fresh_schema(dsn, "ops") as schema:
        fed = build_federation(tmp_path, rows=60)
        replicas = add_replicas(fed, "110000", proxy.url_for(dsn), schema, 2)
        gws = {c: Gateway(load_config(fed.sites[c].config)) for c in ("120000", "130000")}
        holders = [Gateway(load_config(r.config)) for r in replicas]
        rf = RunningFederation(fed, {**gws, "110000": holders[0]})
        try:
            for gw in [*holders, *gws.values()]:
                gw.start()
            for _ in range(4):
                hebei_exchange(rf)
            for gw in gws.values():  # receipts (and their request ids) arrive no more
                gw.receipts.stop(flush=True)
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f'SET search_path TO "{schema}"')
                (replay,) = conn.execute("SELECT count(*) FROM seen_requests").fetchone()  # type: ignore[misc]
                (quota,) = conn.execute("SELECT count(*) FROM quota_usage").fetchone()  # type: ignore[misc]
            assert replay >= 4 and quota >= 1
            size = holders[0].stores.ledger.size()
            lease = 0.0
            for r in replicas:
                g = _gauges(r.ops_url)
                assert g[("gateway_ledger_entries", ())] == size, r.config.name
                assert g[("gateway_store_rows", (("store", "replay"),))] == replay
                assert g[("gateway_store_rows", (("store", "quota"),))] == quota
                lease += g[("gateway_signing_lease_held", ())]
                assert _ready(r.ops_url) == (200, {k: "ok" for k in _ready(r.ops_url)[1]})
            assert lease == 1, "exactly one replica reports the signing lease"
            assert not (replicas[0].root / "data" / "replay.sqlite").exists()

            proxy.cut()
            for r in replicas:
                status, checks = _ready(r.ops_url)
                assert status == 503 and "PostgreSQL unreachable" in checks["storage"], checks
                assert "[storage] url" in checks["storage"] and "keys" in checks
                assert ("gateway_store_rows", (("store", "replay"),)) not in _gauges(r.ops_url)
            proxy.restore()
            end = time.monotonic() + 20
            while any(_ready(r.ops_url)[0] != 200 for r in replicas):
                assert time.monotonic() < end, "replicas did not become ready again"
                time.sleep(0.2)
        finally:
            if proxy._listener is None:  # cut, and an assertion failed before the restore
                proxy.restore()
            for gw in [*holders, *gws.values()]:
                gw.stop(grace=0.2)
