"""A holder on PostgreSQL whose quota another replica used up after its last reading.

The policy's early quota check reads a counter remembered for up to
``Limits.quota_reading_seconds``; the charge is what decides. Here another
"replica" (a direct UPDATE of the shared counter, as its charges would leave
it) spends the rest of the day's quota right after this holder's reading: the
next request must be refused by the charge with RESOURCE_EXHAUSTED and a
bounded message naming the quota, the refusal ledgered, nothing released and
nothing charged past the limit.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import psycopg
import pytest
from psycopg import sql

from gateway.config import load_config
from gateway.demo.setup import build_federation, use_storage
from gateway.server.app import Gateway
from tests.conftest import RunningFederation
from tests.helpers import ledger_events
from tests.pgtest import fresh_schema, postgres_dsn
from tests.storage.kit import hebei_exchange

QUOTA = 1000  # policies/110000/agreements/si-contributions-to-hebei-housing-fund.yaml


def _used(dsn: str, schema: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            sql.SQL("SELECT used FROM {}.quota_usage").format(sql.Identifier(schema))
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_quota_spent_by_another_replica_after_our_reading_is_refused_by_the_charge(
    tmp_path: Path,
) -> None:
    dsn = postgres_dsn()
    with fresh_schema(dsn, "gw") as schema:
        fed = build_federation(tmp_path, rows=100)
        config = fed.sites["110000"].config
        use_storage(config, dsn, schema)
        # A reading that stays fresh for the whole test, so the charge decides.
        with config.open("a", encoding="utf-8") as f:
            f.write("\n[limits]\nquota_reading_seconds = 600\n")
        gws = {c: Gateway(load_config(site.config)) for c, site in fed.sites.items()}
        rf = RunningFederation(fed, gws)
        try:
            for gw in gws.values():
                gw.start()
            hebei_exchange(rf)  # the holder's reading of the counter is now 1
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("UPDATE {}.quota_usage SET used = %s").format(sql.Identifier(schema)),
                    (QUOTA,),
                )
            with pytest.raises(grpc.RpcError) as err:
                hebei_exchange(rf)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            message = err.value.details() or ""
            # Refused by the charge (the early check still saw 1 used), naming the quota.
            assert "quota exceeded" in message and f"used {QUOTA} of {QUOTA}" in message, message
            assert len(message) <= 1000
            refusals = [e for e in ledger_events(gws["110000"]) if e.kind == "refusal"]
            assert len(refusals) == 1 and refusals[0].record_count == 0
            assert _used(dsn, schema) == QUOTA
        finally:
            for gw in gws.values():
                gw.stop(grace=0.2)
