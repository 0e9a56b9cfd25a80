"""A bulk transfer's resume cursor is checked against the requesting gateway's own
ledger when that ledger is in PostgreSQL (Tianjin, 120000, the requester)."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import pytest

from tests.pgtest import fresh_schema, postgres_dsn
from tests.storage.kit import running_with_one_site_on_postgres

ARGS = ("110000", "si_contributions", "commuter_planning")


def test_resume_cursors_are_checked_against_a_requester_ledger_on_postgresql(
    tmp_path: Path,
) -> None:
    dsn = postgres_dsn()
    with fresh_schema(dsn, "bulk") as schema:
        with running_with_one_site_on_postgres(tmp_path, dsn, schema, "120000", 40) as rf:
            with rf.client("120000", "tianjin-planning") as c:
                whole = list(c.stream_records(*ARGS, max_rows=15, timeout=30))
                done = whole[-1].completed
                assert (done.row_count, done.truncated) == (15, True)
                rest = list(c.stream_records(*ARGS, cursor=done.cursor, timeout=30))
                assert rest[0].started.start_row == 15
                for forged in (f"v1:{uuid.uuid4()}:15", done.cursor.replace(":15", ":16")):
                    with pytest.raises(grpc.RpcError) as err:
                        list(c.stream_records(*ARGS, cursor=forged, timeout=30))
                    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                    assert (err.value.details() or "").startswith("cursor: ")
