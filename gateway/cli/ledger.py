"""`gateway ledger ...`: verify, export, checkpoint, proof.

Owns: argument parsing, reading files, the progress bar and printing. Does
not own: any verification or proof logic (``gateway.ledger.*``).

    gateway ledger verify PATH [--bundle TRUST] [--key VKEY] [--checkpoint NOTE]...
    gateway ledger export --ledger PATH (--request-id ID | --since ISO --until ISO)
                          [--bundle TRUST] -o OUT
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.crypto import AnyVerifyKey
from gateway.errors import InvalidArgument, NotFound, VerificationFailed
from gateway.keyring import KeyRing
from gateway.ledger.bundle import MemberKeys, export_bundle, verify_bundle_bytes
from gateway.ledger.ledger import SqliteLedger, default_origin
from gateway.ledger.note import parse_vkey
from gateway.ledger.storage import SqliteLedgerStore
from gateway.ledger.verify import LedgerReport, verify_store

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
        help="a signed checkpoint obtained independently (e.g. from a witness); "
        "the ledger must contain it (detects truncation)",
    )
    v.add_argument("--decode", action="store_true", help="also strictly decode every entry")
    v.add_argument("--no-nodes", action="store_true", help="skip checking the stored Merkle nodes")
    v.set_defaults(func=cmd_verify)

    e = lsub.add_parser("export", help="write a self-contained evidence bundle")
    e.add_argument("--ledger", type=Path, required=True, help="ledger SQLite file")
    e.add_argument("--request-id", help="the transfer's request id")
    e.add_argument("--since", help="ISO 8601 start (inclusive, UTC if no offset)")
    e.add_argument("--until", help="ISO 8601 end (exclusive)")
    e.add_argument("--bundle", type=Path, help="federation trust bundle (keys to include)")
    e.add_argument("-o", "--output", type=Path, required=True, help="bundle file to write")
    e.set_defaults(func=cmd_export)

    w = lsub.add_parser(
        "witnessed",
        help="what this gateway, as witness, last cosigned for each peer log, and any fork evidence",
    )
    w.add_argument("db", type=Path, help="a gateway's data/witness.sqlite")
    w.add_argument("--origin", help="only this log (e.g. 110000.gateway.dataexchange.cn/ledger)")
    w.add_argument(
        "--note-out", type=Path, help="write that log's last cosigned checkpoint note here"
    )
    w.set_defaults(func=cmd_witnessed)

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


def trusted_keys(bundle_path: Path) -> tuple[dict[str, KeyRing], list[MemberKeys]]:
    """origin -> the log's ledger keys over time, and current member keys,
    from a verified trust bundle."""
    from gateway.trust import load_bundle

    bundle = load_bundle(bundle_path)
    members = [
        MemberKeys(
            jurisdiction=m.jurisdiction,
            origin=m.origin or default_origin(m.jurisdiction),
            ledger_key=m.ledger_key,
            signing_key=m.signing_key,
        )
        for m in bundle.members
    ]
    return {m.origin: m.ring("ledger") for m in bundle.members}, members


def trusted_witness_keys(bundle_path: Path, exclude_origin: str = "") -> dict[str, KeyRing]:
    """witness name -> the member's witness (cosigner) keys over time."""
    from gateway.trust import load_bundle

    return {
        m.witness_name: m.ring("witness")
        for m in load_bundle(bundle_path).members
        if (m.origin or default_origin(m.jurisdiction)) != exclude_origin
    }


def _open(path: Path) -> SqliteLedger:
    return SqliteLedger.open_readonly(path)


def _log_key(
    ledger: SqliteLedger, bundle: Path | None, key: str | None
) -> tuple[AnyVerifyKey | KeyRing, str]:
    if bundle is not None:
        keys, _ = trusted_keys(bundle)
        if ledger.origin not in keys:
            raise VerificationFailed(f"origin {ledger.origin!r} is not in the trust bundle")
        return keys[ledger.origin], "trust bundle"
    if key is not None:
        v = parse_vkey(key)
        if v.name != ledger.origin:
            raise InvalidArgument.expected("--key name", ledger.origin, v.name)
        return v.key, "--key"
    stored = ledger.store.get_meta("vkey")
    if not stored:
        raise NotFound("no key to verify with: pass --bundle or --key")
    return parse_vkey(stored).key, "the ledger file itself (NOT independently trusted)"


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------


def _is_bundle(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(1) == b"{"


def cmd_witnessed(args: argparse.Namespace) -> int:
    """Print witnessed sizes and evidence; exit 1 if any fork/rollback evidence is held."""
    from gateway.ledger.witness import SqliteWitnessStore

    if not args.db.is_file():
        raise NotFound(f"{args.db}: no such witness database")
    store = SqliteWitnessStore(args.db)
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
        store.close()


def cmd_verify(args: argparse.Namespace) -> int:
    path: Path = args.path
    if not path.exists():
        raise NotFound(f"{path}: no such file")
    if _is_bundle(path):
        pinned: dict[str, AnyVerifyKey | KeyRing] | None = None
        if args.bundle:
            pinned = dict(trusted_keys(args.bundle)[0])
        witnesses = trusted_witness_keys(args.bundle) if args.bundle else None
        if args.key:
            v = parse_vkey(args.key)
            pinned = {v.name: v.key}
        breport = verify_bundle_bytes(path.read_bytes(), pinned, witnesses)
        print(
            f"evidence bundle OK: {breport.entries} entries of {breport.origin} proven in tree "
            f"of size {breport.tree_size}"
        )
        print(f"  cosigned by: {', '.join(breport.cosigners) or '(no witnesses)'}")
        print(f"  log key from: {breport.key_source}")
        return 0
    ledger = _open(path)
    try:
        key, source = _log_key(ledger, args.bundle, args.key)
        trusted = [p.read_text(encoding="utf-8") for p in args.checkpoint]
        store = ledger.store
        assert isinstance(store, SqliteLedgerStore)
        total = store.size()
        report = _run_with_progress(
            total,
            lambda progress: verify_store(
                store,
                ledger.origin,
                key,
                trusted=trusted,
                progress=progress,
                check_nodes=not args.no_nodes,
                decode=args.decode,
            ),
        )
    finally:
        ledger.close()
    _print_report(report, ledger.origin, source)
    report.raise_for_problem()
    return 0


def _run_with_progress(
    total: int, run: Callable[[Callable[[int, int], None] | None], LedgerReport]
) -> LedgerReport:
    if total < PROGRESS_THRESHOLD:
        return run(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "verifying",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task("verify", total=total)
        return run(lambda done, _total: bar.update(task, completed=done))


def _print_report(report: LedgerReport, origin: str, source: str) -> None:
    print(f"ledger {origin}: {report.entries} entries, {report.checkpoints} checkpoints")
    print(f"  log key from: {source}")
    if report.ok:
        print(
            f"  OK: chain, Merkle tree and checkpoints verify; root "
            f"{base64.b64encode(report.root).decode()}"
        )
    else:
        assert report.problem is not None
        where = (
            f"first bad entry: {report.problem.index}"
            if report.problem.index is not None
            else "no single entry to blame"
        )
        print(f"  FAILED ({report.problem.kind}); {where}")
        print(f"  why: {report.problem.detail}")
    for w in report.warnings:
        print(f"  warning: {w}")


def _parse_time(text: str, what: str) -> int:
    try:
        t = _dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidArgument.expected(what, "ISO 8601 date/time", text) from exc
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.UTC)
    return int(t.timestamp() * 1000)


def cmd_export(args: argparse.Namespace) -> int:
    if (args.request_id is None) == (args.since is None and args.until is None):
        raise InvalidArgument("export: give --request-id, or --since and --until")
    if args.request_id is None and (args.since is None or args.until is None):
        raise InvalidArgument("export: --since and --until go together")
    ledger = _open(args.ledger)
    try:
        members: list[MemberKeys] = []
        log_key = None
        pinned: dict[str, AnyVerifyKey | KeyRing] | None = None
        witnesses: dict[str, AnyVerifyKey | KeyRing] | None = None
        if args.bundle is not None:
            keys, members = trusted_keys(args.bundle)
            log_key = keys.get(ledger.origin)
            if log_key is None:
                raise VerificationFailed(f"origin {ledger.origin!r} is not in the trust bundle")
            pinned = {ledger.origin: log_key}
            witnesses = dict(trusted_witness_keys(args.bundle, ledger.origin))
        data = export_bundle(
            ledger,
            request_id=args.request_id,
            since_ms=_parse_time(args.since, "--since") if args.since else None,
            until_ms=_parse_time(args.until, "--until") if args.until else None,
            members=members,
            log_key=log_key,
            witness_keys=witnesses,
        )
    finally:
        ledger.close()
    # Never hand out a bundle that does not verify (with the trust bundle's keys
    # when given: a gm bundle's SM2 user id is in those keys, not in the file).
    verify_bundle_bytes(data, pinned, witnesses)
    args.output.write_bytes(data)
    print(f"wrote {args.output} ({len(data)} bytes)")
    return 0


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
