"""`gateway call ...`: make a request as a registered service system, no code needed.

Owns: argument parsing and printing for ``gateway call records`` (named
subjects, or a bulk read when none are given and the agreement allows it),
``gateway call stats`` (a differentially private statistic, ``--dry-run`` for
cost and accuracy only), ``gateway call datasets`` and ``gateway call health``.
Readable tables by default, the reply as JSON (protobuf field names) with
``--json``. Does not own: the client (``gateway.client``).

Where to connect comes from ``--config gateway.toml`` (service port, the
gateway's certificate and jurisdiction) or from ``--address``, ``--cert`` and
``--jurisdiction``. The token is read from ``--token-file`` or the
``GATEWAY_TOKEN`` environment variable, never from the command line (it would
show in the process list and the shell history); subject ids likewise may come
from ``--subjects-file`` (one per line, ``-`` for standard input).

Exit status: 0 on success, 3 when the gateway refused or failed (the gRPC
status and its message are printed) or a bulk stream ended without the holder's
completion, 2 for a usage mistake. A bulk ``--out`` file is created 0600 (it
holds records about people).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from gateway.cli.output import check_output
from gateway.errors import InvalidArgument

EXIT_REFUSED = 3


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "call",
        help="call a gateway's service API as a registered service system (records, stats)",
        description="Make a request to a gateway's service port as a registered service system.",
    )
    s = p.add_subparsers(dest="call_command", metavar="SUBCOMMAND", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "--config", type=Path, help="the gateway's gateway.toml (address, certificate)"
        )
        q.add_argument("--address", help="service port host:port (instead of --config)")
        q.add_argument("--cert", type=Path, help="the gateway's TLS certificate (tls.crt)")
        q.add_argument("--jurisdiction", help="the gateway's own jurisdiction code (TLS name)")
        q.add_argument(
            "--token-file",
            type=Path,
            help="file holding this service system's bearer token (default: $GATEWAY_TOKEN)",
        )
        q.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
        q.add_argument("--json", action="store_true", help="print the reply as JSON")

    r = s.add_parser("records", help="records about named subjects, or a bulk read")
    common(r)
    r.add_argument("--holder", required=True, help="holding jurisdiction, e.g. 110000")
    r.add_argument("--dataset", required=True, help="dataset code, e.g. si_contributions")
    r.add_argument("--purpose", required=True, help="declared purpose code")
    r.add_argument("--subject", action="append", default=[], help="a subject id (repeatable)")
    r.add_argument(
        "--subjects-file", type=Path, help="subject ids, one per line ('-' reads standard input)"
    )
    r.add_argument("--field", action="append", default=[], help="only this field (repeatable)")
    r.add_argument("--client-reference", default="", help="your correlation id (ledgered)")
    r.set_defaults(func=_records)

    b = s.add_parser(
        "bulk",
        help="a streamed bulk transfer, written as JSON lines (resumable with --cursor)",
    )
    common(b)
    b.add_argument("--holder", required=True, help="holding jurisdiction, e.g. 110000")
    b.add_argument("--dataset", required=True, help="dataset code of a bulk agreement")
    b.add_argument("--purpose", required=True, help="declared purpose code")
    b.add_argument("--field", action="append", default=[], help="only this field (repeatable)")
    b.add_argument(
        "--cursor", default="", help="resume after this cursor (printed on interruption)"
    )
    b.add_argument("--client-reference", default="", help="your correlation id (ledgered)")
    b.add_argument(
        "--max-rows",
        type=int,
        default=0,
        help="at most this many rows (default: as many as the agreement allows)",
    )
    b.add_argument(
        "--out",
        type=Path,
        help="write the records here as JSON lines (default: standard output); a new file "
        "is made readable by you only (0600); appended to when resuming with --cursor",
    )
    b.set_defaults(func=_bulk, timeout=3600.0)

    st = s.add_parser("stats", help="a differentially private statistic (or --dry-run)")
    common(st)
    st.add_argument(
        "--holders", required=True, help="comma-separated jurisdictions, e.g. 110000,120000"
    )
    st.add_argument("--dataset", required=True)
    st.add_argument("--purpose", required=True)
    st.add_argument(
        "--statistic",
        required=True,
        choices=["count", "sum", "mean", "quantile", "median", "histogram"],
    )
    st.add_argument("--epsilon", type=float, required=True, help="privacy loss at each holder")
    st.add_argument("--confidence", type=float, default=0.95)
    st.add_argument("--column", default="", help="measured column (not for count)")
    st.add_argument("--group-by", default="", help="comma-separated public-key columns")
    st.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="COLUMN=V1,V2",
        help="keep rows whose COLUMN is one of the values (repeatable; AND-ed)",
    )
    st.add_argument("--quantile", type=float, default=0.0, help="for --statistic quantile")
    st.add_argument("--bin-edges", default="", help="comma-separated, for a numeric histogram")
    st.add_argument("--client-reference", default="")
    st.add_argument(
        "--dry-run", action="store_true", help="cost and expected accuracy only; spends nothing"
    )
    st.set_defaults(func=_stats)

    d = s.add_parser("datasets", help="federation members and the datasets each offers")
    common(d)
    d.set_defaults(func=_datasets)

    h = s.add_parser("health", help="the gateway's gRPC health status (no token needed)")
    common(h)
    h.set_defaults(func=_health)


# -- connecting -------------------------------------------------------------


def _target(args: argparse.Namespace) -> tuple[str, Path, str]:
    address, cert, jurisdiction = args.address, args.cert, args.jurisdiction
    if args.config is not None:
        from gateway.config import load_config

        config = load_config(args.config)
        host, _, port = config.listen.service.rpartition(":")
        if host in ("0.0.0.0", "::", "[::]", ""):  # noqa: S104 - reading a bind address
            host = "127.0.0.1"
        address = address or f"{host}:{port}"
        cert = cert or config.key_dir / "tls.crt"
        jurisdiction = jurisdiction or config.jurisdiction
    if not (address and cert and jurisdiction):
        raise InvalidArgument(
            "say where the gateway is: --config gateway.toml, or --address, --cert and "
            "--jurisdiction"
        )
    return str(address), Path(cert), str(jurisdiction)


def _token(args: argparse.Namespace, required: bool = True) -> str | None:
    token: str
    if args.token_file is not None:
        try:
            token = args.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InvalidArgument(f"--token-file {args.token_file}: {exc.strerror}") from exc
    else:
        token = os.environ.get("GATEWAY_TOKEN", "").strip()
    if not token:
        if required:
            raise InvalidArgument(
                "no token: give --token-file FILE or set GATEWAY_TOKEN "
                "(issued by `gateway service-system add --token`)"
            )
        return None
    return token


def _client(args: argparse.Namespace, token_required: bool = True) -> Any:
    from gateway.client import ServiceClient

    address, cert, jurisdiction = _target(args)
    if not cert.is_file():
        raise InvalidArgument(f"--cert {cert}: no such file")
    return ServiceClient(address, cert, jurisdiction, _token(args, token_required))


def _rpc(fn: Any) -> tuple[Any, int]:
    """Run one call; on a gRPC error print its status and message, exit 3."""
    import grpc

    try:
        return fn(), 0
    except grpc.RpcError as exc:
        code = exc.code().name if exc.code() else "UNKNOWN"
        print(f"gateway call: {code}: {exc.details() or ''}", file=sys.stderr)
        return None, EXIT_REFUSED


def _print_json(message: Any) -> None:
    from google.protobuf.json_format import MessageToDict

    data = MessageToDict(message, preserving_proto_field_name=True)
    print(json.dumps(data, ensure_ascii=False, indent=2))


def _console() -> Any:
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160)


# -- records ----------------------------------------------------------------


def _subjects(args: argparse.Namespace) -> list[str]:
    ids = list(args.subject)
    if args.subjects_file is not None:
        if str(args.subjects_file) == "-":
            text = sys.stdin.read()
        else:
            try:
                text = args.subjects_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise InvalidArgument(
                    f"--subjects-file {args.subjects_file}: {exc.strerror}"
                ) from exc
        ids += [line.strip() for line in text.splitlines() if line.strip()]
    return ids


def _records(args: argparse.Namespace) -> int:
    subjects = _subjects(args)
    with _client(args) as gw:
        reply, status = _rpc(
            lambda: gw.get_records(
                timeout=args.timeout,
                holder_jurisdiction=args.holder,
                dataset=args.dataset,
                purpose=args.purpose,
                subject_ids=subjects,
                fields=args.field,
                client_reference=args.client_reference,
            )
        )
    if status:
        return status
    if args.json:
        _print_json(reply)
        return 0
    from rich.table import Table

    d = reply.decision
    console = _console()
    console.print(
        f"[bold]{len(reply.records)} record(s)[/bold] from {reply.holder_jurisdiction} "
        f"{reply.dataset}{' (capped by the agreement)' if reply.truncated else ''}\n"
        f"agreement {d.agreement_id} (sha256 {d.agreement_digest[:16]}…)  "
        f"request id {reply.request_id}\n"
        f"ledger receipt: {reply.receipt.jurisdiction} entry #{reply.receipt.index} "
        f"{reply.receipt.entry_hash[:16]}…"
    )
    if reply.records:
        columns = [f.name for f in d.fields if any(f.name in r.fields for r in reply.records)]
        table = Table(show_lines=False)
        for c in columns:
            table.add_column(c)
        for r in reply.records:
            table.add_row(*(r.fields.get(c, "") for c in columns))
        console.print(table)
    return 0


# -- bulk -------------------------------------------------------------------


def _bulk(args: argparse.Namespace) -> int:
    """Stream a bulk transfer to JSON lines. Rows are written as chunks arrive;
    only a ``completed`` message (the holder's commitment, verified by this
    gateway) makes the transfer complete. On interruption the last cursor is
    printed so the same command with ``--cursor`` continues."""
    import grpc

    from gateway.client import chunk_row_count, chunk_rows

    if args.max_rows < 0:
        raise InvalidArgument.expected("--max-rows", "a whole number >= 0", args.max_rows)
    out: Any = sys.stdout
    handle = None
    if args.out is not None:
        check_output(args.out, "--out")
    gw = _client(args)  # a usage mistake (no token, no certificate) leaves --out untouched
    if args.out is not None:
        try:
            handle = _open_extract(args.out, append=bool(args.cursor))
        except OSError as exc:
            gw.close()
            raise InvalidArgument(f"--out {args.out}: {exc.strerror}") from exc
        out = handle
    rows = chunks = 0
    cursor = args.cursor
    started: Any = None
    completed: Any = None
    try:
        with gw:
            try:
                for message in gw.stream_records(
                    args.holder,
                    args.dataset,
                    args.purpose,
                    tuple(args.field),
                    cursor=args.cursor,
                    client_reference=args.client_reference,
                    timeout=args.timeout,
                    columnar=True,
                    max_rows=args.max_rows,
                ):
                    kind = message.WhichOneof("kind")
                    if kind == "started":
                        started = message.started
                    elif kind == "chunk":
                        for row in chunk_rows(message.chunk):
                            out.write(json.dumps(row, ensure_ascii=False) + "\n")
                        rows += chunk_row_count(message.chunk)
                        chunks += 1
                        cursor = message.chunk.cursor
                    elif kind == "completed":
                        completed = message.completed
            except grpc.RpcError as exc:
                code = exc.code().name if exc.code() else "UNKNOWN"
                print(f"gateway call: {code}: {exc.details() or ''}", file=sys.stderr)
                if rows:
                    print(
                        f"interrupted after {rows} row(s) in {chunks} chunk(s); "
                        f"not complete. Resume with: --cursor {cursor}",
                        file=sys.stderr,
                    )
                return EXIT_REFUSED
    finally:
        out.flush()
        if handle is not None:
            handle.close()
    if completed is None:
        # Only the holder's verified commitment ends a transfer: a stream that simply
        # stops (a gateway cut off, a proxy) is incomplete, whatever arrived.
        print(
            f"gateway call: the stream ended without the holder's completion after {rows} "
            f"row(s) in {chunks} chunk(s); not complete."
            + (f" Resume with: --cursor {cursor}" if cursor else ""),
            file=sys.stderr,
        )
        return EXIT_REFUSED
    summary = {
        "request_id": started.request_id if started is not None else "",
        "holder_jurisdiction": args.holder,
        "dataset": args.dataset,
        "agreement_id": started.decision.agreement_id if started is not None else "",
        "rows": rows,
        "chunks": chunks,
        "complete": not completed.truncated,
        "commitment": completed.commitment,
        "truncated_reason": completed.truncated_reason,
        "resume_cursor": completed.cursor if completed.truncated else "",
    }
    if args.json:
        print(json.dumps(summary, ensure_ascii=False), file=sys.stderr)
    else:
        state = "complete" if summary["complete"] else "truncated by the agreement's caps"
        print(
            f"{rows} row(s) in {chunks} chunk(s) from {args.holder} {args.dataset}: {state}; "
            f"commitment {summary['commitment'][:16]}…, request id {summary['request_id']}",
            file=sys.stderr,
        )
        if summary["resume_cursor"]:
            print(
                f"{summary['truncated_reason']}; resume with: --cursor {summary['resume_cursor']}",
                file=sys.stderr,
            )
    return 0


def _open_extract(path: Path, append: bool) -> Any:
    """The extract file: records about people, so a new one is readable by its owner
    only (0600); an existing one keeps the mode its owner gave it."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    return os.fdopen(os.open(path, flags, 0o600), "w", encoding="utf-8")


# -- statistics -------------------------------------------------------------


def _split(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _filters(specs: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for spec in specs:
        column, sep, values = spec.partition("=")
        if not sep or not column.strip() or not _split(values):
            raise InvalidArgument.expected("--filter", "COLUMN=V1,V2", spec)
        out.setdefault(column.strip(), []).extend(_split(values))
    return out


def _stats(args: argparse.Namespace) -> int:
    from gateway.client import stats_request

    try:
        edges = [float(x) for x in _split(args.bin_edges)]
    except ValueError as exc:
        raise InvalidArgument.expected(
            "--bin-edges", "numbers like 0,12,24", args.bin_edges
        ) from exc
    request = stats_request(
        _split(args.holders),
        args.dataset,
        args.purpose,
        args.statistic,
        epsilon=args.epsilon,
        confidence=args.confidence,
        column=args.column,
        group_by=_split(args.group_by),
        filters=_filters(args.filter),
        quantile=args.quantile,
        bin_edges=edges,
        client_reference=args.client_reference,
    )
    with _client(args) as gw:
        call = gw.dry_run if args.dry_run else gw.query
        reply, status = _rpc(lambda: call(request, timeout=args.timeout))
    if status:
        return status
    if args.json:
        _print_json(reply)
        return 0
    print_stats(reply, _console())
    return 0


def print_stats(reply: Any, console: Any) -> None:
    from rich.table import Table

    what = "DRY RUN (nothing spent, nothing released)" if reply.dry_run else "released"
    console.print(f"[bold]{what}[/bold]  request id {reply.request_id}")
    releases = list(reply.parts) + ([reply.combined] if reply.has_combined else [])
    for rel in releases:
        who = "+".join(rel.jurisdictions)
        label = "combined " if rel is releases[-1] and reply.has_combined else ""
        noise = ", ".join(f"{c.name}: {c.mechanism} scale {c.scale:.4g}" for c in rel.components)
        table = Table(
            title=f"{label}{who}  {rel.dataset}  ε={rel.epsilon:g}  {noise}",
            title_justify="left",
        )
        keys = list(rel.group_by) or ["(all rows)"]
        for k in keys:
            table.add_column(k)
        table.add_column("value", justify="right")
        table.add_column(f"{rel.confidence:.0%} interval", justify="right")
        for cell in rel.cells:
            interval = f"[{cell.lower:.4g}, {cell.upper:.4g}]" if cell.has_interval else "-"
            value = "-" if reply.dry_run else f"{cell.value:.4g}"
            table.add_row(*(list(cell.key) or [""]), value, interval)
        console.print(table)
    for m in reply.missing:
        console.print(f"[yellow]missing {m.jurisdiction}: {m.code}: {m.reason}[/yellow]")
    for b in reply.remaining:
        console.print(
            f"budget left at {b.jurisdiction}: you ε={b.requester_epsilon:g}, "
            f"dataset ε={b.dataset_epsilon:g}"
        )


# -- datasets and health ------------------------------------------------------


def _datasets(args: argparse.Namespace) -> int:
    with _client(args) as gw:
        reply, status = _rpc(lambda: gw.list_datasets(timeout=args.timeout))
    if status:
        return status
    if args.json:
        _print_json(reply)
        return 0
    for m in reply.members:
        print(f"{m.jurisdiction}  {m.name}: {', '.join(m.datasets) or '(none)'}")
    return 0


def _health(args: argparse.Namespace) -> int:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with _client(args, token_required=False) as gw:
        stub = health_pb2_grpc.HealthStub(gw.channel)
        reply, status = _rpc(
            lambda: stub.Check(health_pb2.HealthCheckRequest(), timeout=args.timeout)
        )
    if status:
        return status
    if args.json:
        _print_json(reply)
        return 0
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(name)
    return 0 if name == "SERVING" else EXIT_REFUSED
