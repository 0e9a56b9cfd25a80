"""The start-up check on PostgreSQL: spent budget and quota can never be reopened.

Beijing (110000) keeps its state in PostgreSQL. A statistics release and an
exchange spend budget and quota; a clean restart passes (and records its
cover); then tables rolled back behind the gateway's back (as restoring one
table from an older dump would) make the next start refuse, naming what the
ledger shows as spent.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from gateway.config import load_config
from gateway.errors import VerificationFailed
from gateway.ops.spent import COVER_FILE
from gateway.server.app import Gateway
from tests.pgtest import fresh_schema, postgres_dsn
from tests.storage.kit import hebei_exchange, running_with_one_site_on_postgres

BJ = "110000"


def _sql(dsn: str, schema: str, *statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        for s in statements:
            conn.execute(s)  # type: ignore[call-overload]


def test_start_up_check_reads_the_shared_database_and_refuses_rolled_back_tables(
    tmp_path: Path,
) -> None:
    dsn = postgres_dsn()
    with fresh_schema(dsn, "spent") as schema:
        with running_with_one_site_on_postgres(tmp_path, dsn, schema, BJ, 100) as rf:
            hebei_exchange(rf)
            with rf.client("120000", "tianjin-planning") as c:
                c.query_statistics(
                    [BJ], "si_contributions", "commuter_planning", "count", epsilon=0.25
                )
        config = rf.site(BJ).config

        # A clean restart passes and records what it verified.
        Gateway(load_config(config)).stop(grace=0.1)
        cover = json.loads((rf.site(BJ).root / "data" / COVER_FILE).read_text())
        assert cover["ledger_size"] > 0 and cover["rows"] == 1

        # The release's settle lost (its row left ``reserved``): the next start
        # marks it released from the ledger, still counted.
        _sql(dsn, schema, "ALTER TABLE spends DISABLE TRIGGER USER",
             "UPDATE spends SET status = 'reserved'",
             "ALTER TABLE spends ENABLE TRIGGER USER")  # fmt: skip
        Gateway(load_config(config)).stop(grace=0.1)
        with psycopg.connect(dsn) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            assert conn.execute("SELECT status FROM spends").fetchall() == [("released",)]

        # quota_usage rolled back: today's release is no longer counted.
        _sql(dsn, schema, "CREATE TABLE quota_saved AS SELECT * FROM quota_usage",
             "UPDATE quota_usage SET used = 0")  # fmt: skip
        with pytest.raises(VerificationFailed, match="quota store: dataset si_contributions") as e:
            Gateway(load_config(config))
        assert "pg_dump" in str(e.value)
        _sql(dsn, schema, "DELETE FROM quota_usage",
             "INSERT INTO quota_usage SELECT * FROM quota_saved")  # fmt: skip
        Gateway(load_config(config)).stop(grace=0.1)

        # spends rolled back (the append-only triggers switched off to do it):
        # the cover no longer holds, the whole ledger is read, the release is missing.
        _sql(dsn, schema, "ALTER TABLE spends DISABLE TRIGGER USER", "DELETE FROM spends",
             "ALTER TABLE spends ENABLE TRIGGER USER")  # fmt: skip
        with pytest.raises(VerificationFailed, match=r"1 more release\(s\) \(epsilon 0.25\)"):
            Gateway(load_config(config))
