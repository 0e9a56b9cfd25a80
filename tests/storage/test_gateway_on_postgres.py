"""A real gateway whose state lives in PostgreSQL (``[storage] url``)."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import load_config
from gateway.demo.setup import use_storage
from gateway.ledger.verify import verify_store
from gateway.server.app import Gateway
from tests.conftest import RunningFederation
from tests.helpers import ledger_events
from tests.pgtest import fresh_schema, postgres_dsn
from tests.storage.kit import hebei_exchange


def test_exchange_with_a_holder_on_postgres_is_ledgered_there_and_verifies(tmp_path: Path) -> None:
    from gateway.demo.setup import build_federation

    dsn = postgres_dsn()
    with fresh_schema(dsn, "gw") as schema:
        fed = build_federation(tmp_path, rows=100)
        use_storage(fed.sites["110000"].config, dsn, schema)
        gws = {code: Gateway(load_config(site.config)) for code, site in fed.sites.items()}
        rf = RunningFederation(fed, gws)
        try:
            for gw in gws.values():
                gw.start()
            holder = gws["110000"]
            assert holder.stores.shared and "PostgreSQL" in holder.stores.description
            request_id = hebei_exchange(rf)
            events = ledger_events(holder)
            assert [e.request_id for e in events if e.kind == "transfer"] == [request_id]
            assert not (fed.sites["110000"].root / "data" / "ledger.sqlite").exists()
            holder.ledger.checkpoint_now()
            key = holder.keys.ledger.verify_key
            report = verify_store(holder.stores.ledger, holder.ledger.origin, key)
            assert report.ok and report.entries == len(events)
            # Issue 16 on PostgreSQL: the blind-index rows are in the shared
            # database too, and the officer's offline audit reads them there.
            assert not (fed.sites["110000"].root / "data" / "subject_index.sqlite").exists()
            assert [e.request_id for e in holder.stores.subject.all_entries()] == [request_id]
            holder.checkpoint_and_witness()
            id_file = tmp_path / "id.txt"
            id_file.write_text(rf.commuter() + "\n")
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                status = main(
                    ["audit", "subject", "--config", str(fed.sites["110000"].config),
                     "--id-file", str(id_file)]
                )  # fmt: skip
            assert status == 0, out.getvalue()
            assert f"request {request_id}" in out.getvalue()
            assert "1 indexed entries checked against the ledger, 0 problems" in out.getvalue()
        finally:
            for gw in gws.values():
                gw.stop(grace=0.2)


def test_serve_with_unreachable_database_exits_with_an_error_naming_the_setting(
    tmp_path: Path,
) -> None:
    from gateway.demo.setup import build_federation

    fed = build_federation(tmp_path, rows=20)
    config = fed.sites["120000"].config
    use_storage(config, "postgresql://gw:s3cret@127.0.0.1:1/gateway", "gw_x")
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "[storage] url" in proc.stderr and "gw@127.0.0.1:1/gateway" in proc.stderr
    assert "s3cret" not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("bad", ['url = "mysql://x@y/z"', 'schema = "Robert\'); DROP"'])
def test_storage_setting_that_is_not_postgresql_is_refused_on_load(
    tmp_path: Path, bad: str
) -> None:
    from gateway.errors import PolicyFileError

    config = tmp_path / "gateway.toml"
    config.write_text(
        'jurisdiction = "110000"\nname = "x"\nkey_dir = "k"\ndata_dir = "d"\n'
        'data_source = "s"\npolicies = "p"\ntrust_bundle = "b"\nauthority_key = "a"\n'
        '[listen]\npeer = "127.0.0.1:1"\nservice = "127.0.0.1:2"\n'
        f"[storage]\n{bad}\n"
    )
    with pytest.raises(PolicyFileError, match="storage"):
        load_config(config)


def test_a_request_id_another_requester_used_is_refused_unavailable_and_nothing_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A request id is indexed once: the holder's index rows ride with its entry,
    # so an exchange reusing an id another requester used fails alone, with a
    # bounded message saying what to do, no entry, no charge kept, no traceback.
    import logging

    import grpc
    import psycopg
    from psycopg import sql

    from gateway.demo.setup import build_federation
    from gateway.exchange import requester
    from tests.conftest import running

    dsn = postgres_dsn()
    with fresh_schema(dsn, "reuse") as schema:
        fed = build_federation(tmp_path, rows=100)
        use_storage(fed.sites["110000"].config, dsn, schema)
        with running(fed) as rf, caplog.at_level(logging.INFO):
            holder = rf.gateways["110000"]
            taken = hebei_exchange(rf)
            monkeypatch.setattr(requester, "new_request_id", lambda: taken)
            with rf.client("120000", "tianjin-planning") as c, pytest.raises(grpc.RpcError) as err:
                c.get_records(
                    holder_jurisdiction="110000",
                    dataset="si_contributions",
                    purpose="commuter_planning",
                    subject_ids=[],
                )
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            details = err.value.details() or ""
            assert "new request id" in details and "duplicate key" not in details
            assert len(details) <= holder.config.limits.max_status_chars
            events = [e for e in ledger_events(holder) if e.request_id == taken]
            assert [(e.kind, e.counterparty) for e in events] == [("transfer", "130000")]
            with psycopg.connect(dsn) as conn:
                conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
                used = conn.execute(
                    "SELECT COALESCE(SUM(used), 0) FROM quota_usage WHERE requester = '120000'"
                ).fetchone()
            assert used == (0,)  # charged, then given back
            assert not any(r.exc_info for r in caplog.records)
