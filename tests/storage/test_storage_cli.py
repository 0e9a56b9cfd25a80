"""`gateway storage status` and `verify-ledger`: they report on what is there, and create nothing."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import psycopg

from gateway.cli import main
from tests.pgtest import fresh_schema, postgres_dsn


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(argv))
    return status, out.getvalue(), err.getvalue()


def _schema_exists(dsn: str, schema: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)", (schema,)
        ).fetchone()
    return bool(row and row[0])


def test_verify_ledger_after_a_restore_into_a_mistyped_schema_fails_instead_of_creating_an_empty_ok_ledger(
    tmp_path: Path,
) -> None:
    """After ``pg_restore`` the operator runs ``verify-ledger``; a config naming a
    schema that holds no gateway state (a typo, the dump restored elsewhere) used
    to migrate a new empty schema there and report "OK: 0 entries"."""
    from gateway.demo.setup import build_federation, use_storage

    dsn = postgres_dsn()
    fed = build_federation(tmp_path, rows=20)
    config = fed.sites["110000"].config
    with fresh_schema(dsn, "typo") as schema:
        use_storage(config, dsn, schema)
        for command in ("verify-ledger", "status"):
            status, out, err = _cli("storage", command, "--config", str(config))
            assert status != 0, (command, out)
            assert "no gateway state in schema" in err, (command, err)
            assert "OK" not in out and "ledger entries: 0" not in out
            assert not _schema_exists(dsn, schema), f"`storage {command}` created the schema"


def test_verify_ledger_of_a_data_dir_without_a_ledger_fails_instead_of_creating_one(
    tmp_path: Path,
) -> None:
    from gateway.config import load_config
    from gateway.demo.setup import build_federation

    fed = build_federation(tmp_path, rows=20)
    config = fed.sites["110000"].config
    ledger = load_config(config).data_dir / "ledger.sqlite"
    assert not ledger.exists()
    status, out, err = _cli("storage", "verify-ledger", "--config", str(config))
    assert status != 0 and "OK" not in out
    assert "ledger file not found" in err
    assert not ledger.exists(), "`storage verify-ledger` created an empty ledger"


def _ledger_written_under_a_key_rotated_since(tmp_path: Path) -> Path:
    """110000's SQLite ledger with a checkpoint signed by its first ledger key, then
    a checkpoint by the key that replaced it (`keygen --rotate ledger`, then the
    authority's `federation rotate-keys`): the gateway's config."""
    from gateway.config import load_config
    from gateway.demo.setup import build_federation
    from gateway.identity import load_keys
    from gateway.ledger.ledger import SqliteLedger
    from tests.ledger.ledger_testkit import make_event
    from tests.server.access_testkit import cli

    fed = build_federation(tmp_path, rows=20)
    config = fed.sites["110000"].config
    cfg = load_config(config)
    ledger_file = cfg.data_dir / "ledger.sqlite"
    origin = "110000.gateway.dataexchange.cn/ledger"
    old = SqliteLedger(ledger_file, load_keys(cfg.key_dir).ledger, origin)
    old.append_many([make_event(i) for i in range(3)])
    old.checkpoint_now()
    old.close()
    cli("keygen", "--rotate", "ledger", "--out", str(cfg.key_dir))
    cli("federation", "rotate-keys", "--bundle", str(fed.bundle),
        "--authority-key", str(fed.authority_key), "--public", str(cfg.key_dir / "public.json"),
        "--overlap-hours", "1")  # fmt: skip
    new = SqliteLedger(ledger_file, load_keys(cfg.key_dir).ledger, origin)
    new.append_many([make_event(i) for i in range(3, 5)])
    new.checkpoint_now()
    new.close()
    return config


def test_verify_ledger_after_a_ledger_key_rotation_accepts_checkpoints_of_the_retired_key(
    tmp_path: Path,
) -> None:
    """The checkpoint signed before the rotation verifies with the retired key the
    bundle lists for that time (it used to be checked against the current key only,
    and the gateway's own ledger failed `verify-ledger`)."""
    config = _ledger_written_under_a_key_rotated_since(tmp_path)
    status, out, err = _cli("storage", "verify-ledger", "--config", str(config))
    assert status == 0, (out, err)
    assert "5 entries, 2 checkpoints" in out and "OK" in out


def test_migrate_after_a_ledger_key_rotation_accepts_checkpoints_of_the_retired_key(
    tmp_path: Path,
) -> None:
    from gateway.demo.setup import use_storage

    dsn = postgres_dsn()
    config = _ledger_written_under_a_key_rotated_since(tmp_path)
    with fresh_schema(dsn, "rotated") as schema:
        use_storage(config, dsn, schema)
        status, out, err = _cli("storage", "migrate-from-sqlite", "--config", str(config))
        assert status == 0, (out, err)
        assert out.count("OK: chain, Merkle tree and checkpoints verify") == 2
        status, out, err = _cli("storage", "verify-ledger", "--config", str(config))
        assert status == 0 and "5 entries, 2 checkpoints" in out, (out, err)
