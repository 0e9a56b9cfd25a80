"""`gateway audit reconcile A B`, `gateway audit report LEDGER... -o report.html` and
`gateway audit subject`.

``report`` writes the compliance officer's self-contained HTML report
(``gateway.report``).

Owns: for ``reconcile``, reading each side (a ledger SQLite file, or
``JURISDICTION@host:port`` of a gateway's Ledger API over TLS with a
service-system token, paged through GetEntries; never plaintext: a live side
without its ``--cert-X`` or ``--token-file-X`` is a usage error) and printing the
reconciliation; for ``subject``, reading a holder's ledger, index store and
key offline (SQLite files, or with ``--config`` wherever its ``[storage]``
keeps them: PostgreSQL for replicas) and printing one person's verified access history and the index
store's consistency. Does not own the comparison (``gateway.ledger.reconcile``)
or the subject audit (``gateway.subject.audit``).

Exit status: for ``reconcile``, 0 when there is no true discrepancy (answered
but unacknowledged exchanges are listed with their reason, not errors), 1 when
an exchange is missing where it must exist or differs; for ``subject``, 0 when
the history verifies and the index store agrees with the ledger, 1 otherwise.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import identifiers
from gateway.cli.output import check_output
from gateway.config import GatewayConfig, load_config
from gateway.errors import InvalidArgument, NotFound, VerificationFailed
from gateway.ledger.entry import decode_entry
from gateway.ledger.events import LedgerEvent
from gateway.ledger.ledger import Ledger, SqliteLedger
from gateway.ledger.reconcile import reconcile
from gateway.subject.audit import SubjectAudit
from gateway.subject.store import SubjectIndexStore

if TYPE_CHECKING:
    import grpc

_ADDRESS = re.compile(r"^(?:(?P<j>[^@]*)@)?(?P<addr>[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5})$")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("audit", help="cross-ledger audits")
    asub = p.add_subparsers(dest="audit_command", metavar="SUBCOMMAND", required=True)
    r = asub.add_parser(
        "reconcile", help="report transfers missing on one side or differing between two ledgers"
    )
    side = "ledger SQLite file, or JURISDICTION@host:port of a gateway's Ledger API (service port)"
    r.add_argument("a", help=side)
    r.add_argument("b", help=side)
    for x in ("a", "b"):
        r.add_argument(
            f"--cert-{x}", type=Path, help=f"side {x}: the gateway's TLS certificate (tls.crt)"
        )
        r.add_argument(
            f"--token-file-{x}",
            type=Path,
            help=f"side {x}: file holding the token of a service system with the role audit",
        )
    r.set_defaults(func=cmd_reconcile)
    s = asub.add_parser(
        "subject",
        help="one person's access history at a holder, offline, with every proof verified",
        description="Run at the holder (its key is needed to find the person's entries). "
        "Give the id in a file or on stdin ('-') so it stays out of shell history.",
    )
    where = s.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--config",
        type=Path,
        help="the holder's gateway.toml: read its ledger and index store where it keeps them "
        "(SQLite files in data_dir, or the PostgreSQL database of [storage] url); --keys and "
        "--bundle default to its key_dir and trust_bundle",
    )
    where.add_argument("--ledger", type=Path, help="the holder's data/ledger.sqlite")
    s.add_argument(
        "--index-store", type=Path, help="the holder's data/subject_index.sqlite (with --ledger)"
    )
    s.add_argument("--keys", type=Path, help="the holder's key directory")
    s.add_argument("--bundle", type=Path, help="the federation trust bundle")
    s.add_argument("--id-file", required=True, help="file holding the person's id, or - for stdin")
    s.add_argument(
        "--requester-ledger",
        type=Path,
        action="append",
        default=[],
        help="a requesting member's ledger: pair each access with its entry there (repeatable)",
    )
    s.set_defaults(func=cmd_subject)

    rep = asub.add_parser(
        "report",
        help="self-contained HTML audit report (charts, verification, reconciliation, entries)",
        description="Verify one or more ledgers against the trust bundle and write one HTML "
        "file a compliance officer can open anywhere (no network needed).",
    )
    rep.add_argument("ledgers", nargs="+", type=Path, help="ledger SQLite files (one per gateway)")
    rep.add_argument("--bundle", type=Path, required=True, help="the federation's trust bundle")
    rep.add_argument(
        "--authority",
        type=Path,
        help="the federation authority's public key (default: authority.pub next to the bundle)",
    )
    rep.add_argument(
        "--witness",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help="a gateway's witness store (data/witness.sqlite): its cosigned checkpoints are "
        "checked against the ledgers and its fork/rollback evidence shown (repeatable)",
    )
    rep.add_argument("-o", "--out", type=Path, required=True, help="HTML file to write")
    rep.add_argument("--title", default="Data-exchange audit report")
    rep.set_defaults(func=cmd_report)


def read_side(
    spec: str,
    cert: Path | None = None,
    token_file: Path | None = None,
    options: tuple[str, str] = ("--cert", "--token-file"),
) -> list[tuple[int, LedgerEvent]]:
    """The entries of a ledger file, or, for ``JURISDICTION@host:port``, of that
    gateway's Ledger API read live (``options``: the command's names of the
    certificate and token options, for the message when one is missing)."""
    path = Path(spec)
    m = _live_address(spec)
    if path.exists() or not m:
        ledger = SqliteLedger.open_readonly(path)
        try:
            out: list[tuple[int, LedgerEvent]] = []
            for row in ledger.store.iter_entries():
                out.append((row.index, decode_entry(row.entry).event))
            return out
        finally:
            ledger.close()
    return _read_api(m.group("addr"), m.group("j"), cert, token_file, options)


def _live_address(spec: str) -> re.Match[str] | None:
    m = _ADDRESS.match(spec)
    if m and m["j"] is not None and not identifiers.is_jurisdiction(m["j"]):
        return None
    return m


def check_live_side(
    spec: str, cert: Path | None, token_file: Path | None, options: tuple[str, str]
) -> None:
    """Refuse, before anything is read, a live side (not an existing file) given
    without its certificate or token: a usage mistake naming the option to give."""
    m = _live_address(spec)
    if m and not Path(spec).exists():
        _check_credentials(m.group("addr"), m.group("j"), cert, token_file, options)


def _check_credentials(
    address: str,
    jurisdiction: str | None,
    cert: Path | None,
    token_file: Path | None,
    options: tuple[str, str],
) -> tuple[str, Path, Path]:
    cert_option, token_option = options
    if jurisdiction is None:
        raise InvalidArgument.expected("ledger API side", "JURISDICTION@host:port", address)
    if cert is None:
        raise InvalidArgument(
            f"{jurisdiction}@{address}: a live read needs that gateway's TLS certificate: "
            f"give {cert_option} (its keys/tls.crt); it is never read without TLS"
        )
    if token_file is None:
        raise InvalidArgument(
            f"{jurisdiction}@{address}: a live read needs a service-system token: give "
            f"{token_option} (a file holding the token of a service system with the role audit)"
        )
    return jurisdiction, cert, token_file


def ledger_api_channel(
    address: str,
    jurisdiction: str | None,
    cert: Path | None,
    token_file: Path | None,
    options: tuple[str, str] = ("--cert", "--token-file"),
) -> grpc.Channel:
    """A channel to a gateway's Ledger API: always TLS, trusting only ``cert``, with
    the service-system token in ``token_file``. Never plaintext: a missing
    certificate or token is ``InvalidArgument`` naming the option (``options``:
    the command's certificate and token options) to give."""
    from gateway.client import service_channel

    jurisdiction, cert, token_file = _check_credentials(
        address, jurisdiction, cert, token_file, options
    )
    token = token_file.read_text(encoding="utf-8").strip()
    if not token:
        raise InvalidArgument(f"{token_file}: the token file is empty ({options[1]})")
    return service_channel(address, cert.read_bytes(), jurisdiction, token)


def parse_api_spec(spec: str) -> tuple[str, str | None]:
    """(host:port, jurisdiction) of ``JURISDICTION@host:port``."""
    m = _ADDRESS.match(spec)
    if not m:
        raise InvalidArgument.expected("Ledger API address", "JURISDICTION@host:port", spec)
    return m.group("addr"), m.group("j")


def _read_api(
    address: str,
    jurisdiction: str | None,
    cert: Path | None,
    token_file: Path | None,
    options: tuple[str, str],
) -> list[tuple[int, LedgerEvent]]:
    import grpc

    from gateway._proto.dataexchange.gateway.v1 import ledger_pb2, ledger_pb2_grpc
    from gateway.errors import error_for_status

    channel = ledger_api_channel(address, jurisdiction, cert, token_file, options)
    out: list[tuple[int, LedgerEvent]] = []
    with channel:
        stub = ledger_pb2_grpc.LedgerStub(channel)
        start = 0
        end: int | None = None  # the size at the first page: audit reads add entries
        try:
            while end is None or start < end:
                page = stub.GetEntries(ledger_pb2.GetEntriesRequest(start=start), timeout=30)
                if end is None:
                    end = page.tree_size
                for e in page.entries:
                    if e.index < end:
                        out.append((e.index, decode_entry(e.entry).event))
                nxt = page.next_start or (page.entries[-1].index + 1 if page.entries else end)
                if nxt <= start:
                    break
                start = nxt
            return out
        except grpc.RpcError as exc:
            raise error_for_status(
                exc.code(), f"ledger API {address}: {exc.code().name}: {exc.details() or ''}"
            ) from exc


def side_jurisdiction(spec: str) -> str:
    """The jurisdiction whose ledger ``spec`` names ("" if it cannot be told), so an
    empty side (a requester that never ledgered) still reconciles."""
    path = Path(spec)
    m = _ADDRESS.match(spec)
    if not path.exists() and m:
        return m.group("j") or ""
    ledger = SqliteLedger.open_readonly(path)
    try:
        head = ledger.origin.split(".", 1)[0]
    finally:
        ledger.close()
    return head if re.fullmatch(r"[1-9][0-9]{5}", head) else ""


def cmd_report(args: argparse.Namespace) -> int:
    """Exit 0 when everything verifies and reconciles, 1 when the report shows problems."""
    from gateway.report.gather import gather
    from gateway.report.html import render
    from gateway.trust import load_bundle, read_authority_key

    witness_paths = [Path(spec.partition("=")[2] or spec) for spec in args.witness]
    check_output(args.out, "-o", [*args.ledgers, args.bundle, args.authority, *witness_paths])
    authority = read_authority_key(args.authority) if args.authority else None
    bundle = load_bundle(args.bundle, authority)
    witnesses = []
    for spec in args.witness:
        name, sep, path = spec.partition("=")
        witnesses.append((name, Path(path)) if sep else (f"witness store {spec}", Path(spec)))
    inputs = gather(args.ledgers, bundle, witnesses)
    args.out.write_text(render(inputs, args.title), encoding="utf-8")
    bad = [s.jurisdiction for s in inputs.ledgers if not s.ok]
    evidence = [w.label for w in inputs.witnesses if w.evidence]
    unreconciled = [
        f"{r.jurisdiction_a}<->{r.jurisdiction_b}" for r in inputs.reconciliations if not r.ok
    ]
    dropped = len(inputs.entries) - len(inputs.trusted_entries)
    print(
        f"audit report written to {args.out}: {len(inputs.ledgers)} ledger(s), "
        f"{len(inputs.entries)} entries"
        + (
            f" ({dropped} of them in ledgers that do not verify: marked UNVERIFIED and left "
            "out of the figures and charts)"
            if bad
            else ""
        )
    )
    if bad or unreconciled or evidence:
        raise VerificationFailed(
            "; ".join(
                ([f"ledger(s) {', '.join(bad)} do not verify"] if bad else [])
                + ([f"{', '.join(unreconciled)} do not reconcile"] if unreconciled else [])
                + ([f"{', '.join(evidence)} hold fork or rollback evidence"] if evidence else [])
            )
            + " (details in the report)"
        )
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    sides = (
        (args.a, args.cert_a, args.token_file_a, ("--cert-a", "--token-file-a")),
        (args.b, args.cert_b, args.token_file_b, ("--cert-b", "--token-file-b")),
    )
    for side in sides:  # both sides' options before either is read
        check_live_side(*side)
    report = reconcile(
        read_side(*sides[0]),
        read_side(*sides[1]),
        side_jurisdiction(args.a),
        side_jurisdiction(args.b),
    )
    ja, jb = report.jurisdiction_a or "A", report.jurisdiction_b or "B"
    print(
        f"reconcile {ja} <-> {jb}: {report.matched} exchanges match"
        + (f" ({report.receipts} with the requester's signed receipt)" if report.receipts else "")
    )
    if report.unacknowledged:
        print(
            f"  {len(report.unacknowledged)} answered but unacknowledged (not errors: the "
            "holder's signed entry stands):"
        )
    for u in report.unacknowledged:
        print(f"    {u.holder} entry {u.index} ({u.kind}), request {u.request_id}: {u.reason}")
    if report.interrupted:
        print(
            f"  {len(report.interrupted)} interrupted streamed transfers (not errors: both "
            "sides agree; resume with the cursor):"
        )
    for t in report.interrupted:
        print(f"    {t.holder} entry {t.index}, request {t.request_id}: {t.reason}")
    for rid, idx in report.missing_in_b:
        print(f"  DISCREPANCY missing in {jb}: request {rid} (entry {idx} in {ja})")
    for rid, idx in report.missing_in_a:
        print(f"  DISCREPANCY missing in {ja}: request {rid} (entry {idx} in {jb})")
    for d in report.differing:
        print(
            f"  DISCREPANCY differs: request {d.request_id} ({ja} entry {d.index_a}, {jb} entry "
            f"{d.index_b}): {', '.join(d.fields)}"
        )
    print(f"  {report.discrepancies} true discrepancies")
    if not report.ok:
        raise VerificationFailed(
            f"{len(report.missing_in_a) + len(report.missing_in_b)} missing, "
            f"{len(report.differing)} differing"
        )
    return 0


def _cst(ms: int) -> str:
    import datetime as dt

    tz = dt.timezone(dt.timedelta(hours=8))
    return dt.datetime.fromtimestamp(ms / 1000, tz).strftime("%Y-%m-%d %H:%M:%S")


def _holder_state(
    args: argparse.Namespace, config: GatewayConfig | None
) -> tuple[Ledger, SubjectIndexStore, Callable[[], None]]:
    """The holder's ledger (read-only) and index store, and how to close them:
    from the files given, or wherever the config's ``[storage]`` keeps them."""
    from gateway.subject.store import SqliteSubjectIndexStore

    if config is None:
        if not args.index_store.exists():
            raise InvalidArgument(f"{args.index_store}: no such index store")
        ledger = SqliteLedger.open_readonly(args.ledger)
        store = SqliteSubjectIndexStore(args.index_store)

        def close_files() -> None:
            store.close()
            ledger.close()

        return ledger, store, close_files
    from gateway.storage.backend import open_stores

    stores = open_stores(config)
    origin = stores.ledger.get_meta("origin")
    if origin is None:
        stores.close()
        raise NotFound(f"{stores.description}: no ledger there yet")
    return Ledger(stores.ledger, None, origin), stores.subject, stores.close


def cmd_subject(args: argparse.Namespace) -> int:
    import sys

    from gateway.identity import load_keys
    from gateway.limits import DEFAULT_LIMITS
    from gateway.subject.audit import audit_subject, check_store
    from gateway.subject.index import index_key
    from gateway.subject.verify import holder_keys
    from gateway.trust import load_bundle

    raw = sys.stdin.readline() if args.id_file == "-" else Path(args.id_file).read_text("utf-8")
    subject = identifiers.subject_id(raw.strip(), "subject id")
    config = load_config(args.config) if args.config else None
    keys_dir: Path | None = args.keys or (config.key_dir if config else None)
    bundle_path: Path | None = args.bundle or (config.trust_bundle if config else None)
    if keys_dir is None or bundle_path is None:
        raise InvalidArgument("give --keys and --bundle (or --config)")
    if config is None and args.index_store is None:
        raise InvalidArgument("give --index-store with --ledger (or --config)")
    bundle = load_bundle(bundle_path)
    ledger, store, close = _holder_state(args, config)
    peers: dict[str, SqliteLedger] = {}
    for path in args.requester_ledger:
        peer = SqliteLedger.open_readonly(path)
        owner = next((m.jurisdiction for m in bundle.members if m.origin == peer.origin), None)
        if owner is None:
            peer.close()
            close()
            raise VerificationFailed(f"{path}: origin {peer.origin!r} is not in the trust bundle")
        peers[owner] = peer
    try:
        member = next((m for m in bundle.members if m.origin == ledger.origin), None)
        if member is None:
            raise VerificationFailed(f"origin {ledger.origin!r} is not in the trust bundle")
        key = index_key(load_keys(keys_dir).pseudonym_key)
        report = check_store(ledger, store, DEFAULT_LIMITS)
        try:
            audit: SubjectAudit | None = audit_subject(
                ledger,
                store,
                key,
                holder_keys(bundle, member.jurisdiction, None),
                subject,
                DEFAULT_LIMITS,
                peers,
            )
            failure = ""
        except VerificationFailed as exc:
            audit, failure = None, str(exc)
    finally:
        close()
        for peer_ledger in peers.values():
            peer_ledger.close()
    bad: list[str] = []
    if audit is None:
        print(
            f"access history at {member.jurisdiction} ({member.name}): FAILED to verify: {failure}"
        )
    else:
        _print_history(member.jurisdiction, member.name, audit)
        bad = [s for c in audit.counterparts.values() for s in c.values() if s != "matches"]
    print(
        f"index store: {report.entries_checked} indexed entries checked against the ledger, "
        f"{len(report.problems)} problems"
        + (
            f", {report.unlinked_rows} rows of appends that never happened"
            if report.unlinked_rows
            else ""
        )
    )
    for problem in report.problems:
        print(f"  {problem}")
    if report.problems or bad or audit is None:
        raise VerificationFailed(
            f"{len(report.problems)} index-store problems, {len(bad)} counterpart mismatches"
            + (", the history does not verify" if audit is None else "")
        )
    return 0


def _print_history(jurisdiction: str, name: str, audit: SubjectAudit) -> None:
    print(
        f"access history at {jurisdiction} ({name}): {len(audit.items)} entries, "
        "every proof verified against the trust bundle"
    )
    for i in audit.items:
        fields = ", ".join(f"{n}:{t}" for n, t in i.fields) or "-"
        print(
            f"  {_cst(i.timestamp_ms)}  {i.kind:<18} {i.requester}/{i.service_system or '-'}  "
            f"{i.dataset} for {i.purpose}  agreement {i.agreement_id or '-'}  "
            f"entry {i.entry_index} (cosigned by {len(i.cosigned_by)})"
        )
        print(f"      request {i.request_id}")
        print(f"      fields: {fields}")
        if i.legal_basis:
            print(f"      legal basis: {i.legal_basis}")
        for j, state in sorted(audit.counterparts.get(i.request_id, {}).items()):
            print(f"      {j}'s ledger: {state}")
    if audit.truncated:
        print("  (more entries matched than one answer holds; the newest are shown)")
