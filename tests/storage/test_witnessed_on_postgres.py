"""`gateway ledger witnessed --config`: what a witness on PostgreSQL cosigned.

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
