"""`gateway storage ...`: where a gateway keeps its state, and moving it.

Owns: argument parsing and printing for

    gateway storage status --config gateway.toml
    gateway storage verify-ledger --config gateway.toml
    gateway storage migrate-from-sqlite --config gateway.toml [--from DATA_DIR]

Does not own: the stores (``gateway.storage``), verification
(``gateway.ledger.verify``), the migration (``gateway.storage.migrate``). Log
keys always come from the configured (authority-verified) trust bundle.
"""

from __future__ import annotations

import argparse
import base64
from pathlib import Path
from typing import Any

from gateway.config import GatewayConfig, load_config
from gateway.errors import InvalidArgument
from gateway.keyring import KeyRing


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "storage", help="a gateway's state store: status, ledger check, SQLite -> PostgreSQL"
    )
    ssub = p.add_subparsers(dest="storage_command", metavar="SUBCOMMAND", required=True)
    st = ssub.add_parser("status", help="backend, schema version and which replica holds the lease")
    st.add_argument("--config", type=Path, required=True, help="path to gateway.toml")
    st.set_defaults(func=cmd_status)
    v = ssub.add_parser("verify-ledger", help="verify the ledger in the configured store")
    v.add_argument("--config", type=Path, required=True, help="path to gateway.toml")
    v.set_defaults(func=cmd_verify_ledger)
    m = ssub.add_parser(
        "migrate-from-sqlite",
        help="copy a single-machine gateway's SQLite state into the configured PostgreSQL",
    )
    m.add_argument("--config", type=Path, required=True, help="gateway.toml with [storage] url")
    m.add_argument(
        "--from",
        dest="source",
        type=Path,
        help="folder with the SQLite files (default: the config's data_dir)",
    )
    m.set_defaults(func=cmd_migrate)


def _own_log(config: GatewayConfig) -> tuple[str, KeyRing]:
    """This gateway's ledger origin and ledger key ring (the current key and the retired
    ones with their validity, so checkpoints signed before a rotation still verify),
    from its authority-verified trust bundle."""
    from gateway.trust import load_bundle, read_authority_key

    bundle = load_bundle(
        config.trust_bundle,
        read_authority_key(config.authority_key, config.limits),
        limits=config.limits,
    )
    me = bundle.member(config.jurisdiction)
    return me.origin, me.ring("ledger")


def _postgres(config: GatewayConfig, *, read_only: bool = False) -> Any:
    """The configured database; ``read_only``: a schema no gateway created is
    refused (``NotFound``), never created, and nothing is migrated."""
    from gateway.storage.postgres.db import PgDatabase

    if config.storage.url is None:
        raise InvalidArgument(
            "[storage] url is not set in the config: the gateway uses SQLite files in "
            f"{config.data_dir}; set it to the PostgreSQL database to use"
        )
    return PgDatabase(
        config.storage.url, schema=config.storage.db_schema, pool_size=2, read_only=read_only
    )


def cmd_status(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if config.storage.url is None:
        print(f"storage: SQLite files in {config.data_dir} (one process; no replicas)")
        return 0
    db = _postgres(config, read_only=True)
    try:
        print(f"storage: PostgreSQL {db.where}, schema {db.schema}")
        print(f"  schema version: {db.schema_version()}")
        with db.connection("reading the lease") as conn:
            key = db.lock_key("checkpoint-signer")
            row = conn.execute(
                "SELECT a.client_addr::text, a.pid, a.backend_start FROM pg_locks l"
                " JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory'"
                " AND l.granted AND ((l.classid::bigint << 32) | l.objid::bigint) = %s",
                (key,),
            ).fetchone()
            size = conn.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_entries").fetchone()
        if row is None:
            print("  signing lease: free (no replica running, or taking over)")
        else:
            print(f"  signing lease: held by session {row[1]} from {row[0] or 'local socket'}")
        print(f"  ledger entries: {size[0] if size else 0}")
    finally:
        db.close()
    return 0


def cmd_verify_ledger(args: argparse.Namespace) -> int:
    from gateway.ledger.storage import SqliteLedgerStore
    from gateway.ledger.verify import verify_store
    from gateway.storage.backend import LEDGER_FILE
    from gateway.storage.postgres.ledger import PgLedgerStore

    config = load_config(args.config)
    origin, ring = _own_log(config)
    # Read-only: a wrong data_dir or schema is named, never created (an empty
    # ledger created there would verify "OK").
    if config.storage.url is None:
        store: Any = SqliteLedgerStore(config.data_dir / LEDGER_FILE, readonly=True)
        where, close = f"SQLite files in {config.data_dir}", store.close
    else:
        db = _postgres(config, read_only=True)
        store = PgLedgerStore(db)
        where, close = f"PostgreSQL {db.where} (schema {db.schema})", db.close
    try:
        report = verify_store(store, origin, ring, limits=config.limits)
    finally:
        close()
    _print(report, origin, where)
    report.raise_for_problem()
    return 0


def _print(report: Any, origin: str, where: str) -> None:
    print(f"ledger {origin} in {where}: {report.entries} entries, {report.checkpoints} checkpoints")
    print("  log keys from: trust bundle (current and retired ledger keys)")
    if report.ok:
        root = base64.b64encode(report.root).decode()
        print(f"  OK: chain, Merkle tree and checkpoints verify; root {root}")
    for w in report.warnings:
        print(f"  note: {w}")


def cmd_migrate(args: argparse.Namespace) -> int:
    from gateway.storage.migrate import migrate_from_sqlite

    config = load_config(args.config)
    source: Path = args.source or config.data_dir
    origin, ring = _own_log(config)
    db = _postgres(config)
    try:
        report = migrate_from_sqlite(source, db, origin, ring, limits=config.limits)
    finally:
        db.close()
    _print(report.before, origin, f"SQLite {source}")
    for table, n in report.copied.items():
        print(f"  copied {table}: {n}")
    _print(report.after, origin, f"PostgreSQL {db.where} (schema {db.schema})")
    print("migration done: same entries, checkpoints and root on both sides")
    return 0
