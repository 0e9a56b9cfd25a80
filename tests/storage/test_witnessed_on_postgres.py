"""`ledger witnessed --config` and `ledger verify --witness-config`: what a witness
on PostgreSQL cosigned.

Tianjin (120000) keeps its state, witness state included, in PostgreSQL; it
cosigns Beijing's checkpoints. The operator reads that state through Tianjin's
config (no witness.sqlite exists), gets the cosigned note, and uses it to
prove Beijing's ledger file was not truncated; fork evidence recorded in the
shared database makes the command exit 1.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from gateway.cli import main
from gateway.config import load_config
from gateway.ledger.witness import Evidence
from tests.pgtest import fresh_schema, postgres_dsn
from tests.storage.kit import hebei_exchange, running_with_one_site_on_postgres


def _cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(list(argv))
    return status, out.getvalue()


def test_witnessed_reads_the_witness_state_of_a_gateway_on_postgresql(tmp_path: Path) -> None:
    dsn = postgres_dsn()
    with fresh_schema(dsn, "wit") as schema:
        with running_with_one_site_on_postgres(tmp_path, dsn, schema, "120000", 40) as rf:
            hebei_exchange(rf)
            bj = rf.gateways["110000"]
            outcomes = bj.checkpoint_and_witness()
            assert outcomes["120000"].startswith("cosigned"), outcomes
            size = bj.ledger.latest_checkpoint().checkpoint.size  # type: ignore[union-attr]
        fed = rf.fed
        tj_config = fed.sites["120000"].config
        assert not (fed.sites["120000"].root / "data" / "witness.sqlite").exists()

        note = tmp_path / "seen-by-120000.note"
        origin = bj.ledger.origin
        status, out = _cli(
            "ledger", "witnessed", "--config", str(tj_config), "--origin", origin,
            "--note-out", str(note),
        )  # fmt: skip
        assert status == 0, out
        assert f"{origin}: last cosigned size {size}" in out
        ledger_file = str(fed.sites["110000"].root / "data" / "ledger.sqlite")
        status, out = _cli(
            "ledger", "verify", ledger_file, "--bundle", str(fed.bundle), "--checkpoint", str(note)
        )
        assert status == 0, out

        # Evidence recorded by any replica is in the shared database: exit 1.
        from gateway.storage.backend import open_stores

        stores = open_stores(load_config(tj_config))
        try:
            held = stores.witness.latest(origin)
            assert held is not None
            stores.witness.record_evidence(
                Evidence(origin, "fork", held.note, held.note, "test: two roots at one size", 1)
            )
        finally:
            stores.close()
        status, out = _cli("ledger", "witnessed", "--config", str(tj_config))
        assert status == 1 and f"EVIDENCE {origin}: fork" in out, out
        # A gateway on SQLite: --config reads its data_dir's witness.sqlite.
        status, out = _cli("ledger", "witnessed", "--config", str(fed.sites["130000"].config))
        assert status == 0 and f"{origin}: last cosigned size {size}" in out, out
        assert main(["ledger", "witnessed"]) == 2  # neither a file nor --config


def _cut_back(ledger_file: Path, size: int) -> None:
    """Cut a ledger file back to its first ``size`` entries, its later checkpoints with them."""
    import sqlite3

    db = sqlite3.connect(ledger_file)
    db.execute("DELETE FROM ledger_checkpoints WHERE size > ?", (size,))
    db.execute("DELETE FROM ledger_entries WHERE idx >= ?", (size,))
    db.commit()
    db.close()


def test_verify_against_a_witness_on_postgresql_catches_a_ledger_cut_back_behind_what_it_cosigned(
    tmp_path: Path,
) -> None:
    """`ledger verify --witness-config`: the officer checks Beijing's file against
    what Tianjin, on PostgreSQL, cosigned, with no note written by hand. A file
    cut back to an earlier checkpoint verifies on its own; against the witness it
    fails. A config whose schema no gateway ran on is refused, and not created."""
    import psycopg

    dsn = postgres_dsn()
    with fresh_schema(dsn, "wit") as schema:
        with running_with_one_site_on_postgres(tmp_path, dsn, schema, "120000", 40) as rf:
            bj = rf.gateways["110000"]
            origin = bj.ledger.origin
            hebei_exchange(rf)
            assert bj.checkpoint_and_witness()["120000"].startswith("cosigned")
            early = bj.ledger.latest_checkpoint().checkpoint.size  # type: ignore[union-attr]
            hebei_exchange(rf)
            assert bj.checkpoint_and_witness()["120000"].startswith("cosigned")
            held = rf.gateways["120000"].stores.witness.latest(origin)
            assert held is not None and held.size > early
        fed = rf.fed
        tj_config = fed.sites["120000"].config
        ledger_file = fed.sites["110000"].root / "data" / "ledger.sqlite"
        alone = ["ledger", "verify", str(ledger_file), "--bundle", str(fed.bundle)]
        verify = [*alone, "--witness-config", str(tj_config)]
        status, out = _cli(*verify)
        assert status == 0, out
        assert f"truncation: excluded below size {held.size}" in out, out

        _cut_back(ledger_file, early)
        status, out = _cli(*alone)
        assert status == 0 and "truncation: CANNOT be excluded" in out, out
        status, out = _cli(*verify)
        assert status == 1 and "FAILED (truncated)" in out, out

        with fresh_schema(dsn, "none") as missing:
            elsewhere = tj_config.with_name("elsewhere.toml")
            text = tj_config.read_text(encoding="utf-8")
            elsewhere.write_text(text.replace(f'"{schema}"', f'"{missing}"'), encoding="utf-8")
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                status, _ = _cli(*alone, "--witness-config", str(elsewhere))
            assert status == 2 and f"no gateway state in schema {missing}" in err.getvalue()
            with psycopg.connect(dsn) as conn:
                found = conn.execute(
                    "SELECT 1 FROM pg_namespace WHERE nspname = %s", (missing,)
                ).fetchone()
            assert found is None, "a read-only look created the schema"
