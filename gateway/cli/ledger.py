"""`gateway ledger ...`: verify, export, show, checkpoint, proof.

Owns: argument parsing, reading files, the progress bar and printing. Does
not own: any verification or proof logic (``gateway.ledger.*``).

    gateway ledger verify PATH [--bundle TRUST | --key VKEY] [--checkpoint NOTE]...
                          [--witness-db DB]... [--witness-config gateway.toml]...
                          [--from-witness J@HOST:PORT --witness-cert CRT
                           --witness-token-file TOKEN]... [--require-witnesses N]
    gateway ledger export --ledger PATH (--request-id ID | --since ISO --until ISO)
                          --bundle TRUST [--require-witnesses N] -o OUT
    gateway ledger show PATH [--since ISO] [--until ISO] [--counterparty J] [--dataset D]
                        [--kind K] [--role R] [--request-id ID] [--json] [--limit N]
    gateway ledger witnessed (DB | --config gateway.toml) [--origin O] [--note-out NOTE]
    gateway ledger checkpoint PATH
    gateway ledger proof inclusion PATH (--index N | --request-id ID) [--size N]
    gateway ledger proof consistency PATH --old N [--new N]
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.cli.output import check_output, is_sqlite
from gateway.crypto import AnyVerifyKey
from gateway.errors import InvalidArgument, NotFound, VerificationFailed
from gateway.ledger.bundle import export_bundle, verify_bundle_bytes
from gateway.ledger.entry import KINDS, ROLES
from gateway.ledger.ledger import SqliteLedger
from gateway.ledger.note import parse_vkey
from gateway.ledger.show import EntryFilter, shown_entries
from gateway.ledger.storage import SqliteLedgerStore
from gateway.ledger.trustkeys import TrustedKeys
from gateway.ledger.verify import LedgerReport, verify_store

if TYPE_CHECKING:
    from gateway.ledger.witness import WitnessStore

PROGRESS_THRESHOLD = 50_000


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "ledger", help="verify, export and prove against transparency ledgers"
    )
    lsub = p.add_subparsers(dest="ledger_command", metavar="SUBCOMMAND", required=True)

    v = lsub.add_parser("verify", help="verify a ledger file or an evidence bundle offline")
    v.add_argument("path", type=Path, help="ledger SQLite file or evidence bundle JSON")
    v.add_argument("--bundle", type=Path, help="federation trust bundle (pins the log keys)")
    v.add_argument("--key", help="log verifier key <name>+<keyid>+<base64> (instead of --bundle)")
    v.add_argument(
        "--checkpoint",
        type=Path,
        action="append",
        default=[],
        help="a signed checkpoint obtained outside the file (e.g. `ledger witnessed "
        "--note-out`); the ledger must hold the tree it signs (detects truncation and forks)",
    )
    v.add_argument(
        "--witness-db",
        type=Path,
        action="append",
        default=[],
        help="a witness's data/witness.sqlite: the checkpoint it last cosigned for this log "
        "is used as with --checkpoint",
    )
    v.add_argument(
        "--witness-config",
        type=Path,
        action="append",
        default=[],
        metavar="GATEWAY_TOML",
        help="a witness gateway's gateway.toml: as --witness-db, from where that gateway keeps "
        "its witness state (its data_dir's witness.sqlite, or the PostgreSQL database of "
        "[storage] url its replicas share, read-only)",
    )
    v.add_argument(
        "--from-witness",
        action="append",
        default=[],
        metavar="JURISDICTION@HOST:PORT",
        help="fetch, live from that gateway's Ledger API (its service port), the checkpoint it "
        "last cosigned as witness for this log; used as with --checkpoint (repeatable, each "
        "with its --witness-cert and --witness-token-file)",
    )
    v.add_argument(
        "--witness-cert", action="append", default=[], type=Path,
        help="the witness gateway's TLS certificate (tls.crt), one per --from-witness",
    )  # fmt: skip
    v.add_argument(
        "--witness-token-file", action="append", default=[], type=Path,
        help="a file holding a service-system token of the witness gateway, one per --from-witness",
    )  # fmt: skip
    v.add_argument(
        "--require-witnesses",
        type=int,
        default=None,
        metavar="N",
        help="fail unless the newest checkpoint (of an evidence bundle: its checkpoint) is "
        "cosigned by N trusted witnesses (default: 0 for ledgers; for evidence with --bundle, "
        "1 when the federation has another member)",
    )
    v.add_argument("--decode", action="store_true", help="also strictly decode every entry")
    v.add_argument("--no-nodes", action="store_true", help="skip checking the stored Merkle nodes")
    v.add_argument(
        "--no-signatures",
        action="store_true",
        help="skip checking every entry's exchange signatures (checked with --bundle by default)",
    )
    v.set_defaults(func=cmd_verify)

    e = lsub.add_parser("export", help="write a self-contained evidence bundle")
    e.add_argument("--ledger", type=Path, required=True, help="ledger SQLite file")
    e.add_argument("--request-id", help="the transfer's request id")
    e.add_argument("--since", help="ISO 8601 start (inclusive, UTC if no offset)")
    e.add_argument("--until", help="ISO 8601 end (exclusive)")
    e.add_argument(
        "--bundle", type=Path, required=True, help="federation trust bundle (keys to embed)"
    )
    e.add_argument(
        "--require-witnesses",
        type=int,
        default=None,
        metavar="N",
        help="use a checkpoint cosigned by N trusted witnesses (default: 1 when the "
        "federation has another member)",
    )
    e.add_argument("-o", "--output", type=Path, required=True, help="bundle file to write")
    e.set_defaults(func=cmd_export)

    w = lsub.add_parser(
        "witnessed",
        help="what this gateway, as witness, last cosigned for each peer log, and any fork evidence",
    )
    w.add_argument(
        "db", type=Path, nargs="?", help="a gateway's data/witness.sqlite (or give --config)"
    )
    w.add_argument(
        "--config",
        type=Path,
        help="the gateway's gateway.toml: read the witness state where it keeps it (its "
        "data_dir's witness.sqlite, or the PostgreSQL database of [storage] url its replicas share)",
    )
    w.add_argument("--origin", help="only this log (e.g. 110000.gateway.dataexchange.cn/ledger)")
    w.add_argument(
        "--note-out",
        type=Path,
        help="write the last cosigned checkpoint note of the log given by --origin here",
    )
    w.set_defaults(func=cmd_witnessed)

    sh = lsub.add_parser(
        "show", help="list and decode ledger entries (a table, or JSON lines), with filters"
    )
    sh.add_argument("path", type=Path, help="ledger SQLite file, or an evidence bundle")
    sh.add_argument(
        "--bundle",
        type=Path,
        help="trust bundle: verify the ledger (as `ledger verify` does) or the evidence bundle "
        "before showing it",
    )
    sh.add_argument("--since", help="ISO 8601 start (inclusive, UTC if no offset)")
    sh.add_argument("--until", help="ISO 8601 end (exclusive)")
    sh.add_argument("--counterparty", help="the other jurisdiction, e.g. 130000")
    sh.add_argument("--dataset")
    sh.add_argument("--kind", choices=KINDS)
    sh.add_argument("--role", choices=ROLES)
    sh.add_argument("--request-id")
    sh.add_argument("--json", action="store_true", help="one JSON object per line, every field")
    sh.add_argument("--limit", type=int, default=0, help="at most N entries (0: all)")
    sh.set_defaults(func=cmd_show)

    c = lsub.add_parser("checkpoint", help="print the newest signed checkpoint")
    c.add_argument("path", type=Path)
    c.set_defaults(func=cmd_checkpoint)

    pr = lsub.add_parser("proof", help="print an inclusion or consistency proof (JSON)")
    psub = pr.add_subparsers(dest="proof_kind", metavar="KIND", required=True)
    inc = psub.add_parser("inclusion", help="inclusion proof for one entry")
    inc.add_argument("path", type=Path)
    which = inc.add_mutually_exclusive_group(required=True)
    which.add_argument("--index", type=int)
    which.add_argument("--request-id")
    inc.add_argument("--size", type=int, default=0, help="tree size (default: newest checkpoint)")
    inc.set_defaults(func=cmd_proof_inclusion)
    con = psub.add_parser("consistency", help="consistency proof between two sizes")
    con.add_argument("path", type=Path)
    con.add_argument("--old", type=int, required=True)
    con.add_argument("--new", type=int, default=0, help="default: newest checkpoint")
    con.set_defaults(func=cmd_proof_consistency)


# --------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------


def trusted_keys(bundle_path: Path) -> TrustedKeys:
    """Every member's keys and signing names, from a verified trust bundle."""
    from gateway.trust import load_bundle

    return TrustedKeys.from_bundle(load_bundle(bundle_path))


def _open(path: Path) -> SqliteLedger:
    return SqliteLedger.open_readonly(path)


def _log_keys(
    ledger: SqliteLedger, bundle: Path | None, key: str | None
) -> tuple[AnyVerifyKey | TrustedKeys, str]:
    if bundle is not None:
        keys = trusted_keys(bundle)
        if keys.by_origin(ledger.origin) is None:
            raise VerificationFailed(f"origin {ledger.origin!r} is not in the trust bundle")
        return keys, keys.source
    if key is not None:
        v = parse_vkey(key)
        if v.name != ledger.origin:
            raise InvalidArgument.expected("--key name", ledger.origin, v.name)
        return v.key, "--key (the log's key only)"
    # Never the key the file carries (its ``vkey``): a forger writes that too.
    raise InvalidArgument(
        "no trusted key to verify with: pass --bundle (the federation trust bundle) or --key; "
        "the key the ledger file itself names proves nothing"
    )


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------


def _is_ledger_file(path: Path) -> bool:
    """A SQLite file is a ledger; anything else is read as an evidence bundle, so a
    damaged evidence file is still reported as evidence."""
    return is_sqlite(path)


def cmd_witnessed(args: argparse.Namespace) -> int:
    """Print witnessed sizes and evidence; exit 1 if any fork/rollback evidence is held."""
    if args.note_out is not None:
        if not args.origin:
            raise InvalidArgument(
                "--note-out writes one log's checkpoint note: give --origin (the log's origin)"
            )
        check_output(args.note_out, "--note-out", [args.db, args.config])
    store, close = _witness_store(args.db, args.config)
    try:
        origins = [args.origin] if args.origin else store.origins()
        for origin in origins:
            state = store.latest(origin)
            if state is None:
                print(f"{origin}: never witnessed")
                continue
            print(f"{origin}: last cosigned size {state.size}")
            if args.note_out:
                args.note_out.write_text(state.note, encoding="utf-8")
                print(f"  checkpoint note written to {args.note_out}")
        evidence = store.evidence(args.origin)
        for ev in evidence:
            print(f"EVIDENCE {ev.origin}: {ev.kind}: {ev.detail}")
            print("  checkpoint cosigned before:\n    " + ev.held_note.replace("\n", "\n    "))
            print("  conflicting checkpoint shown:\n    " + ev.shown_note.replace("\n", "\n    "))
        return 1 if evidence else 0
    finally:
        close()


def _witness_store(
    db: Path | None, config_path: Path | None
) -> tuple[WitnessStore, Callable[[], None]]:
    """The witness store of a file, or of a gateway's configured storage; and its closer."""
    from gateway.ledger.witness import SqliteWitnessStore

    if (db is None) == (config_path is None):
        raise InvalidArgument("give either a witness.sqlite file or --config gateway.toml")
    if config_path is not None:
        from gateway.config import load_config
        from gateway.storage.backend import WITNESS_FILE

        config = load_config(config_path)
        if config.storage.url is not None:
            from gateway.storage.postgres.db import PgDatabase
            from gateway.storage.postgres.witness import PgWitnessStore

            pg = PgDatabase(
                config.storage.url, schema=config.storage.db_schema, pool_size=2, read_only=True
            )
            return PgWitnessStore(pg), pg.close
        db = config.data_dir / WITNESS_FILE
    assert db is not None
    if not db.is_file():
        raise NotFound(f"{db}: no such witness database")
    store = SqliteWitnessStore(db)
    return store, store.close


def _outside_checkpoints(args: argparse.Namespace, origin: str) -> list[tuple[str, str]]:
    """(label, note) of every checkpoint obtained from outside the ledger file."""
    certs, tokens = args.witness_cert, args.witness_token_file
    n_live = len(args.from_witness)
    if len(certs) != n_live or len(tokens) != n_live:
        # Live reads are TLS with the named certificate and a token, never plaintext.
        raise InvalidArgument(
            "give one --witness-cert and one --witness-token-file per --from-witness "
            f"({n_live} --from-witness, {len(certs)} --witness-cert, "
            f"{len(tokens)} --witness-token-file)"
        )
    out = [(f"outside checkpoint {p}", p.read_text(encoding="utf-8")) for p in args.checkpoint]
    witnesses: list[tuple[Path | None, Path | None]] = [(db, None) for db in args.witness_db]
    witnesses += [(None, config) for config in args.witness_config]
    for db, config in witnesses:
        where = f"witness state {db}" if db else f"witness state of {config}"
        store, close = _witness_store(db, config)
        try:
            state = store.latest(origin)
        finally:
            close()
        if state is None:
            raise NotFound(f"{where}: this witness never cosigned {origin}")
        out.append((where, state.note))
    for spec, cert, token in zip(args.from_witness, certs, tokens, strict=True):
        out.append((f"checkpoint witnessed by {spec}", fetch_witnessed(spec, cert, token, origin)))
    return out


def fetch_witnessed(spec: str, cert: Path, token_file: Path, origin: str) -> str:
    """The checkpoint the gateway at ``spec`` last cosigned for ``origin``, live (TLS
    trusting ``cert``, with the token in ``token_file``). Trusted for nothing by
    itself: verification checks its signatures against the trust bundle."""
    import grpc

    from gateway._proto.dataexchange.gateway.v1 import ledger_pb2, ledger_pb2_grpc
    from gateway.cli.audit import ledger_api_channel, parse_api_spec
    from gateway.errors import error_for_status

    address, jurisdiction = parse_api_spec(spec)
    options = ("--witness-cert", "--witness-token-file")
    with ledger_api_channel(address, jurisdiction, cert, token_file, options) as channel:
        try:
            resp = ledger_pb2_grpc.LedgerStub(channel).GetWitnessedCheckpoint(
                ledger_pb2.GetWitnessedCheckpointRequest(origin=origin), timeout=30
            )
        except grpc.RpcError as exc:
            raise error_for_status(
                exc.code(), f"ledger API {address}: {exc.code().name}: {exc.details() or ''}"
            ) from exc
    return str(resp.checkpoint)


def _check_require_witnesses(n: int | None) -> None:
    if n is not None and n < 0:
        raise InvalidArgument.expected("--require-witnesses", "a count >= 0", n)


def cmd_verify(args: argparse.Namespace) -> int:
    _check_require_witnesses(args.require_witnesses)
    if args.require_witnesses and args.key and not args.bundle:
        raise InvalidArgument(
            "--require-witnesses counts cosignatures, which need the witnesses' keys: "
            "pass --bundle (the federation trust bundle); --key is the log's key only"
        )
    path: Path = args.path
    if not path.exists():
        raise NotFound(f"{path}: no such file")
    if not _is_ledger_file(path):
        return _verify_evidence(args)
    ledger = _open(path)
    try:
        keys, source = _log_keys(ledger, args.bundle, args.key)
        outside = _outside_checkpoints(args, ledger.origin)
        report = verify_ledger_file(
            ledger,
            keys,
            outside=outside,
            require_witnesses=args.require_witnesses or 0,
            check_nodes=not args.no_nodes,
            decode=args.decode,
            check_signatures=isinstance(keys, TrustedKeys) and not args.no_signatures,
        )
    finally:
        ledger.close()
    for line in report_lines(report, ledger.origin, source, check_nodes=not args.no_nodes):
        print(line)
    report.raise_for_problem()
    return 0


def _verify_evidence(args: argparse.Namespace) -> int:
    path: Path = args.path
    if args.key:
        raise InvalidArgument(
            f"{path} is an evidence bundle: verify it with --bundle (the trust bundle), not --key"
        )
    if args.checkpoint or args.witness_db or args.witness_config or args.from_witness:
        raise InvalidArgument(f"{path} is an evidence bundle: --checkpoint applies to ledgers")
    if not args.bundle:
        # Never the keys the evidence embeds: a forger embeds its own.
        raise InvalidArgument(
            f"{path} is an evidence bundle: verify it with --bundle (the federation trust "
            "bundle); the keys it embeds prove nothing"
        )
    print(f"evidence bundle {path}:")
    try:
        breport = verify_bundle_bytes(
            path.read_bytes(), trusted_keys(args.bundle), require_witnesses=args.require_witnesses
        )
    except VerificationFailed as exc:
        print(f"  FAILED: {exc}")
        raise
    print(
        f"  OK: {breport.entries} entries of {breport.origin} proven in its tree of size "
        f"{breport.tree_size}"
        + (f" (plus {breport.context} neighbouring entries)" if breport.context else "")
    )
    if breport.completeness:
        print(f"  range {breport.completeness}")
    print(f"  checkpoint cosigned by: {', '.join(breport.cosigners) or '(no witness)'}")
    print(f"  keys from: {breport.key_source}")
    return 0


def verify_ledger_file(
    ledger: SqliteLedger,
    keys: AnyVerifyKey | TrustedKeys,
    *,
    outside: Sequence[tuple[str, str]] = (),
    require_witnesses: int = 0,
    check_nodes: bool = True,
    decode: bool = False,
    check_signatures: bool = True,
) -> LedgerReport:
    """The whole-ledger check ``verify`` and ``export`` share (with a progress bar)."""
    store = ledger.store
    assert isinstance(store, SqliteLedgerStore)
    return _run_with_progress(
        store.size(),
        lambda progress: verify_store(
            store,
            ledger.origin,
            keys,
            trusted=outside,
            require_witnesses=require_witnesses,
            progress=progress,
            check_nodes=check_nodes,
            decode=decode,
            check_signatures=check_signatures and isinstance(keys, TrustedKeys),
        ),
    )


def _run_with_progress(
    total: int, run: Callable[[Callable[[int, int], None] | None], LedgerReport]
) -> LedgerReport:
    if total < PROGRESS_THRESHOLD or not sys.stderr.isatty():
        return run(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    # On stderr, and only on a terminal: nothing of the bar lands in stdout or a log.
    with Progress(
        "verifying",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
        console=Console(stderr=True),
    ) as bar:
        task = bar.add_task("verify", total=total)
        return run(lambda done, _total: bar.update(task, completed=done))


MAX_CHECKPOINT_LINES = 20


def _what_was_checked(report: LedgerReport, check_nodes: bool) -> tuple[list[str], list[str]]:
    """(what verified, what was not checked and how to check it) for an OK report."""
    done = ["hash chain", "Merkle tree"]
    skipped = []
    if check_nodes:
        done.append("stored Merkle nodes")
    else:
        skipped.append("stored Merkle nodes (--no-nodes)")
    done.append(f"log signatures of {report.checkpoints} checkpoints")
    if report.witnesses_checked:
        done.append("cosignatures")
    else:
        skipped.append("cosignatures (no witness keys: pass --bundle)")
    if report.signatures is not None:
        done.append("exchange signatures")
    elif report.witnesses_checked:
        skipped.append("exchange signatures (--no-signatures)")
    else:
        skipped.append("exchange signatures (no member keys: pass --bundle)")
    return done, skipped


def report_lines(
    report: LedgerReport, origin: str, source: str, *, check_nodes: bool = True
) -> list[str]:
    """What ``ledger verify`` prints for a ledger file: the OK line names exactly what
    was checked and what was not (``check_nodes``: the stored nodes were checked)."""
    out = [f"ledger {origin}: {report.entries} entries, {report.checkpoints} checkpoints"]
    out.append(f"  keys from: {source}")
    if report.stored and report.witnesses_checked:
        shown = report.stored[-MAX_CHECKPOINT_LINES:]
        if len(report.stored) > len(shown):
            bare = sum(1 for c in report.stored if not c.cosigners)
            out.append(
                f"  {len(report.stored) - len(shown)} older checkpoints not listed "
                f"({bare} of all {len(report.stored)} checkpoints have no cosignature)"
            )
        for c in shown:
            out.append(
                f"  {c.label} (size {c.size}): cosigned by {', '.join(c.cosigners) or 'no witness'}"
            )
    for c in report.outside:
        by = f"; cosigned by {', '.join(c.cosigners)}" if c.cosigners else ""
        out.append(f"  {c.label}: size {c.size}{by}")
    if report.signatures is not None and report.ok:
        out.append(f"  {report.signatures} exchange signatures verify (requesters' and holders')")
    if report.ok:
        done, skipped = _what_was_checked(report, check_nodes)
        out.append(
            f"  OK: {', '.join(done[:-1])} and {done[-1]} verify; root "
            f"{base64.b64encode(report.root).decode()}"
        )
        if skipped:
            out.append(f"  NOT checked: {'; '.join(skipped)}")
        below = report.truncation_excluded_below
        if report.outside:
            out.append(
                f"  truncation: excluded below size {below} (the file holds the tree that "
                "checkpoints from outside it sign)"
                + (
                    f"; the {report.entries - below} newer entries could still be cut"
                    if report.entries > below
                    else ""
                )
            )
        else:
            out.append(
                "  truncation: CANNOT be excluded: this file alone cannot show that newer entries "
                "(with their checkpoints) were not cut off; pass --checkpoint, --witness-db or "
                "--witness-config with a checkpoint a witness holds"
            )
    else:
        assert report.problem is not None
        where = (
            f"first bad entry: {report.problem.index}"
            if report.problem.index is not None
            else "no single entry to blame"
        )
        out.append(f"  FAILED ({report.problem.kind}); {where}")
        out.append(f"  why: {report.problem.detail}")
    for w in report.warnings:
        out.append(f"  warning: {w}")
    return out


def _parse_time(text: str, what: str) -> int:
    try:
        t = _dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidArgument.expected(what, "ISO 8601 date/time", text) from exc
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.UTC)
    return int(t.timestamp() * 1000)


def cmd_export(args: argparse.Namespace) -> int:
    _check_require_witnesses(args.require_witnesses)
    if (args.request_id is None) == (args.since is None and args.until is None):
        raise InvalidArgument("export: give --request-id, or --since and --until")
    if args.request_id is None and (args.since is None or args.until is None):
        raise InvalidArgument("export: --since and --until go together")
    check_output(args.output, "-o", [args.ledger, args.bundle])
    keys = trusted_keys(args.bundle)
    ledger = _open(args.ledger)
    try:
        if keys.by_origin(ledger.origin) is None:
            raise VerificationFailed(f"origin {ledger.origin!r} is not in the trust bundle")
        # The same whole-ledger check as `ledger verify`: both accept and refuse the same files.
        report = verify_ledger_file(ledger, keys)
        if not report.ok:
            for line in report_lines(report, ledger.origin, keys.source):
                print(line)
            raise VerificationFailed(
                f"the ledger does not verify, nothing exported: {report.problem}"
            )
        log = keys.by_origin(ledger.origin)
        assert log is not None
        need = args.require_witnesses
        if need is None:
            need = 1 if keys.witnesses(exclude=log.jurisdiction) else 0
        data = export_bundle(
            ledger,
            keys,
            request_id=args.request_id,
            since_ms=_parse_time(args.since, "--since") if args.since else None,
            until_ms=_parse_time(args.until, "--until") if args.until else None,
            require_witnesses=need,
        )
    finally:
        ledger.close()
    verify_bundle_bytes(data, keys, require_witnesses=need)  # never hand out what fails
    args.output.write_bytes(data)
    print(f"wrote {args.output} ({len(data)} bytes)")
    return 0


SHOW_COLUMNS = (
    "index", "time (UTC+8)", "kind", "role", "counterparty", "service system", "dataset",
    "purpose", "decision", "records", "agreement", "approval", "reason",
)  # fmt: skip


def cmd_show(args: argparse.Namespace) -> int:
    where = EntryFilter(
        since_ms=_parse_time(args.since, "--since") if args.since else None,
        until_ms=_parse_time(args.until, "--until") if args.until else None,
        counterparty=args.counterparty,
        dataset=args.dataset,
        kind=args.kind,
        role=args.role,
        request_id=args.request_id,
    )
    if args.limit < 0:
        raise InvalidArgument.expected("--limit", ">= 0", args.limit)
    if not args.path.exists():
        raise NotFound(f"{args.path}: no such file")
    is_ledger = _is_ledger_file(args.path)
    if is_ledger:
        _verify_before_showing(args.path, args.bundle)
    store = SqliteLedgerStore(args.path, readonly=True) if is_ledger else None
    try:
        rows: Iterable[tuple[int, bytes]]
        if store is not None:
            rows = ((r.index, r.entry) for r in store.iter_entries())
        else:
            rows = _evidence_rows(args.path, args.bundle)
        picked = []
        for n, e in enumerate(shown_entries(rows, where)):
            if args.limit and n >= args.limit:
                break
            if args.json:
                print(json.dumps(e.to_json(), ensure_ascii=False, sort_keys=True))
            else:
                picked.append(e)
    finally:
        if store is not None:
            store.close()
    if not args.json:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{args.path}: {len(picked)} entries")
        for col in SHOW_COLUMNS:
            table.add_column(col, no_wrap=col != "reason", overflow="fold")
        for e in picked:
            ev = e.event
            table.add_row(
                str(e.index), e.time_cst[:23], ev.kind, ev.role, ev.counterparty,
                ev.service_system, ev.dataset, ev.purpose, ev.decision, str(ev.record_count),
                ev.agreement_id, ev.approval_id, ev.reason,
            )  # fmt: skip
        console = Console()
        # On a terminal, its width; into a file or pipe, wide enough not to fold ids.
        Console(width=console.width if console.is_terminal else 320).print(table)
    return 0


def _verify_before_showing(path: Path, bundle: Path | None) -> None:
    """With a trust bundle, the whole-ledger check of ``ledger verify``: nothing is shown
    from a ledger that fails it. Without one, a note says nothing was verified."""
    if bundle is None:
        print(f"note: {path} shown without verification (pass --bundle to verify it first)",
              file=sys.stderr)  # fmt: skip
        return
    ledger = _open(path)
    try:
        keys, source = _log_keys(ledger, bundle, None)
        report = verify_ledger_file(ledger, keys)
    finally:
        ledger.close()
    if not report.ok:
        for line in report_lines(report, ledger.origin, source):
            print(line, file=sys.stderr)
        raise VerificationFailed(f"{path} does not verify, nothing shown: {report.problem}")


def _evidence_rows(path: Path, bundle: Path | None) -> list[tuple[int, bytes]]:
    """The entries of an evidence bundle, verified first when a trust bundle is given."""
    data = path.read_bytes()
    if bundle is not None:
        verify_bundle_bytes(data, trusted_keys(bundle))
    else:
        print(f"note: {path} shown without verification (pass --bundle to verify it first)",
              file=sys.stderr)  # fmt: skip
    try:
        entries = json.loads(data)["content"]["entries"]
        return [(int(e["index"]), base64.b64decode(e["entry"], validate=True)) for e in entries]
    except (ValueError, KeyError, TypeError) as exc:
        raise VerificationFailed(f"{path}: not a readable evidence bundle") from exc


def cmd_checkpoint(args: argparse.Namespace) -> int:
    ledger = _open(args.path)
    try:
        cp = ledger.latest_checkpoint()
    finally:
        ledger.close()
    if cp is None:
        raise NotFound("no checkpoint issued yet")
    sys.stdout.write(cp.note)
    return 0


def _default_size(ledger: SqliteLedger, size: int) -> int:
    if size:
        return size
    cp = ledger.latest_checkpoint()
    if cp is None:
        raise NotFound("no checkpoint issued yet; pass --size")
    return cp.checkpoint.size


def cmd_proof_inclusion(args: argparse.Namespace) -> int:
    ledger = _open(args.path)
    try:
        if args.request_id is not None:
            found = ledger.find(args.request_id)
            if not found:
                raise NotFound("no ledger entry for that request id")
            index = found[0].index
        else:
            index = args.index
        size = _default_size(ledger, args.size)
        proof = ledger.inclusion_proof(index, size)
        leaf = ledger.store.entries(index, index + 1)[0].entry_hash
        cps = [c.note for c in ledger.checkpoints() if c.checkpoint.size == size]
    finally:
        ledger.close()
    print(
        json.dumps(
            {
                "index": index,
                "tree_size": size,
                "leaf_hash": base64.b64encode(leaf).decode(),
                "proof": [base64.b64encode(p).decode() for p in proof],
                "checkpoint": cps[-1] if cps else "",
            },
            indent=1,
        )
    )
    return 0


def cmd_proof_consistency(args: argparse.Namespace) -> int:
    ledger = _open(args.path)
    try:
        new = _default_size(ledger, args.new)
        proof = ledger.consistency_proof(args.old, new)
        roots = (ledger.root_at(args.old), ledger.root_at(new))
    finally:
        ledger.close()
    print(
        json.dumps(
            {
                "size1": args.old,
                "size2": new,
                "root1": base64.b64encode(roots[0]).decode(),
                "root2": base64.b64encode(roots[1]).decode(),
                "proof": [base64.b64encode(p).decode() for p in proof],
            },
            indent=1,
        )
    )
    return 0
