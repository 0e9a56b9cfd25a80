"""`gateway backup` and `gateway restore`: consistent snapshots of a gateway's state.

Owns: argument parsing, the "is the gateway still running?" guard, verifying
the backed-up ledger against the trust bundle, keeping the replaced files,
and printing what was done. Does not own: the snapshot and the budget rule
(``gateway.ops.backup``, ``gateway.ops.spent``).

Exit status: 0 done; 1 the backup does not verify or would reopen spent
budget (nothing was changed); 2 a usage mistake.
"""

from __future__ import annotations

import argparse
import datetime as dt
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.errors import InvalidArgument, VerificationFailed

if TYPE_CHECKING:
    from gateway.config import GatewayConfig


def register(sub: Any) -> None:
    b: argparse.ArgumentParser = sub.add_parser(
        "backup",
        help="consistent online snapshot of a gateway's ledger, budgets, quotas and state",
        description="Snapshot the state stores of a gateway (running or not) with SQLite's "
        "online backup API into a new folder with a manifest of digests.",
    )
    b.add_argument("--config", type=Path, required=True, help="the gateway's gateway.toml")
    b.add_argument("--out", type=Path, required=True, help="a new (or empty) folder")
    b.set_defaults(func=_backup)

    r = sub.add_parser(
        "restore",
        help="restore a backup (refuses one that would reopen spent privacy budget or quota)",
        description="Check a backup (digests, ledger against the trust bundle, budgets and "
        "quotas not lower than the ledger shows as spent) and install it into a stopped "
        "gateway's data folder. The replaced files are kept in data_dir/pre-restore-<time>/; "
        "a store the backup lacks is kept as it is in place; the accepted trust-bundle "
        "version never goes down and the replay memory keeps the request ids seen in place.",
    )
    r.add_argument("--config", type=Path, required=True, help="the gateway's gateway.toml")
    r.add_argument(
        "--from", dest="source", type=Path, required=True, help="a `gateway backup` folder"
    )
    r.set_defaults(func=_restore)


def _backup(args: argparse.Namespace) -> int:
    from gateway.config import load_config
    from gateway.ops.backup import take_backup

    config = load_config(args.config)
    _refuse_postgres(config, "backup")
    manifest = take_backup(config.data_dir, args.out, config.jurisdiction)
    print(
        f"backup of {config.jurisdiction} written to {args.out}: ledger {manifest.ledger_size} "
        f"entries; {', '.join(sorted(manifest.files))}"
    )
    print("keys are not in it: back up keys/ separately, encrypted, and offline")
    return 0


def _refuse_postgres(config: GatewayConfig, what: str) -> None:
    """``backup``/``restore`` copy SQLite files; a gateway on PostgreSQL has none."""
    if config.storage.url is not None:
        raise InvalidArgument(
            f"[storage] url is set: this gateway's state is in PostgreSQL, not in "
            f"{config.data_dir}; {what} it with PostgreSQL's tools (pg_dump -Fc -n <schema>, "
            "or pg_basebackup with WAL archiving), then run `gateway storage verify-ledger`"
        )


def _listening(address: str) -> bool:
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - reading a bind address
        host = "127.0.0.1"
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return True
    except OSError:
        return False


def _restore(args: argparse.Namespace) -> int:
    from gateway.config import load_config
    from gateway.ledger.storage import SqliteLedgerStore
    from gateway.ledger.verify import verify_store
    from gateway.ops.backup import (
        DATABASES,
        STATE_FILES,
        check_backup,
        first_difference,
        install_backup,
    )
    from gateway.ops.spent import check_stores_cover_ledger, refuse_shortfalls
    from gateway.trust import load_bundle, read_authority_key

    config = load_config(args.config)
    _refuse_postgres(config, "restore")
    if _listening(config.listen.service) or _listening(config.listen.peer):
        raise InvalidArgument(
            f"gateway {config.jurisdiction} is running (its ports answer); stop it first"
        )
    manifest = check_backup(args.source, config.jurisdiction)
    limits = config.limits
    bundle = load_bundle(
        config.trust_bundle, read_authority_key(config.authority_key, limits), limits=limits
    )
    member = bundle.member(config.jurisdiction)
    store = SqliteLedgerStore(args.source / "ledger.sqlite", readonly=True)
    try:
        origin = store.get_meta("origin") or ""
        report = verify_store(store, origin, member.ring("ledger"), limits=limits)
    finally:
        store.close()
    if member.origin and origin != member.origin:
        raise VerificationFailed(f"backup ledger origin {origin!r} is not {member.origin!r}")
    report.raise_for_problem()

    # A store the backup lacks is kept as it is in place, never wiped: the
    # replay memory, the witness store and the accepted-bundle version only
    # protect more the more they hold, and a budget or quota store kept is
    # checked below like one installed (what will be in place is what counts).
    kept = [n for n in DATABASES + STATE_FILES if n not in manifest.files]
    now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    budget, quota = (
        (args.source if name in manifest.files else config.data_dir) / name
        for name in ("budget.sqlite", "quota.sqlite")
    )
    me = config.jurisdiction
    # Against the backup's own ledger, and against the ledger in place now
    # (an old backup must not undo spends made since it was taken).
    shortfalls = check_stores_cover_ledger(
        args.source / "ledger.sqlite", me, budget, quota, now_ms, limits
    )
    current = config.data_dir / "ledger.sqlite"
    if current.is_file():
        live = SqliteLedgerStore(current, readonly=True)
        backed_up = SqliteLedgerStore(args.source / "ledger.sqlite", readonly=True)
        try:
            current_size = live.size()
            differs = None if current_size > report.entries else first_difference(backed_up, live)
        finally:
            live.close()
            backed_up.close()
        if current_size > report.entries:
            raise VerificationFailed(
                f"the backup's ledger has {report.entries} entries but the current one has "
                f"{current_size}: restoring would roll the ledger back (its witnesses would "
                "report it). If the current ledger is lost or corrupt, move data_dir away first"
            )
        if differs is not None:
            raise VerificationFailed(
                f"the backup's ledger does not extend the current one: they differ at entry "
                f"{differs} (a backup of another history); restoring would drop the current "
                "entries from there on and fork the log its witnesses cosigned. If the current "
                "ledger is lost or corrupt, move data_dir away first"
            )
        shortfalls += check_stores_cover_ledger(current, me, budget, quota, now_ms, limits)
    refuse_shortfalls(shortfalls, f"backup {args.source} refused")

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    done = install_backup(
        args.source, manifest, config.data_dir, config.data_dir / f"pre-restore-{stamp}"
    )
    print(
        f"restored {', '.join(done.installed)} into {config.data_dir} "
        f"(ledger {report.entries} entries, verified against the trust bundle)"
    )
    for note in done.notes:
        print(note)
    if done.moved:
        print(f"the replaced files are kept in {done.keep}")
    in_place = [n for n in kept if (config.data_dir / n).exists()]
    if in_place:
        print(f"not in the backup, so kept as they are in place: {', '.join(in_place)}")
    return 0
