"""The three-jurisdiction demo: Beijing, Tianjin and Hebei on loopback.

Owns: the demo's story. It lays out the federation (keys, signed bundle,
configs, synthetic data), starts three real ``gateway serve`` processes,
performs allowed and refused exchanges as service systems would, prints what
happened, then stops the gateways and verifies their ledgers offline.

Does not own: any gateway behaviour; it only calls the public surfaces.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import sqlalchemy as sa
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import Console
from rich.table import Table

from gateway.client import ServiceClient, service_channel
from gateway.demo.setup import Federation, GatewaySite, build_federation

console = Console(width=140)


@dataclass
class Outcome:
    title: str
    caller: str
    status: str
    detail: str
    request_id: str = ""
    holder: str = ""


def _wait_healthy(site: GatewaySite, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    channel = service_channel(site.service_address, site.tls_cert.read_bytes(), site.code, None)
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"gateway {site.code} exited with {proc.returncode}; see {site.root}/gateway.log"
                )
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    return
            except grpc.RpcError:
                time.sleep(0.2)
        raise RuntimeError(f"gateway {site.code} did not become healthy in {timeout:.0f} s")
    finally:
        channel.close()


def start_gateways(fed: Federation) -> dict[str, subprocess.Popen[bytes]]:
    procs: dict[str, subprocess.Popen[bytes]] = {}
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for code, site in fed.sites.items():
        log = (site.root / "gateway.log").open("wb")
        procs[code] = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "gateway", "serve", "--config", str(site.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    for code, site in fed.sites.items():
        _wait_healthy(site, procs[code])
    return procs


def stop_gateways(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs.values():
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()


def _subject(site: GatewaySite, sql: str) -> str:
    with sqlite3.connect(f"file:{site.data_source}?mode=ro", uri=True) as conn:
        row = conn.execute(sql).fetchone()
    return str(row[0])


def _record_exchanges(fed: Federation) -> list[Outcome]:
    bj, tj, hb = fed.sites["110000"], fed.sites["120000"], fed.sites["130000"]
    commuter = _subject(
        bj, "SELECT person_id FROM si_contributions WHERE residence_jurisdiction='130000' LIMIT 1"
    )
    hf_holder = _subject(tj, "SELECT person_id FROM hf_accounts LIMIT 1")
    enterprise = _subject(hb, "SELECT credit_code FROM ent_qualifications LIMIT 1")
    core_person = _subject(bj, "SELECT person_id FROM population_core LIMIT 1")
    outcomes: list[Outcome] = []

    def attempt(
        title: str, site: GatewaySite, service: str, token: str | None = None, **req: Any
    ) -> None:
        tok = token if token is not None else site.tokens[service]
        with ServiceClient(site.service_address, site.tls_cert, site.code, tok) as client:
            try:
                resp = client.get_records(**req)
            except grpc.RpcError as exc:
                outcomes.append(
                    Outcome(title, f"{site.code}/{service}", exc.code().name, exc.details() or "")
                )
                return
        rec = dict(resp.records[0].fields) if resp.records else {}
        shown = ", ".join(f"{k}={v}" for k, v in sorted(rec.items()))
        outcomes.append(
            Outcome(
                title,
                f"{site.code}/{service}",
                "OK",
                f"{len(resp.records)} record(s){' (capped by the agreement)' if resp.truncated else ''} "
                f"under {resp.decision.agreement_id}; "
                f"ledger #{resp.receipt.index}; first: {shown}",
                resp.request_id,
                str(req["holder_jurisdiction"]),
            )
        )

    attempt("Hebei housing fund reads a commuter's Beijing social-insurance history",
            hb, "hebei-housing-fund", holder_jurisdiction="110000", dataset="si_contributions",
            purpose="housing_fund_transfer", subject_ids=[commuter])  # fmt: skip
    attempt("Beijing housing fund reads a Tianjin housing-fund account (important data, approved)",
            bj, "beijing-housing-fund", holder_jurisdiction="120000", dataset="hf_accounts",
            purpose="housing_fund_transfer", subject_ids=[hf_holder])  # fmt: skip
    attempt("Tianjin procurement checks a Hebei enterprise's qualification",
            tj, "tianjin-procurement", holder_jurisdiction="130000", dataset="ent_qualifications",
            purpose="procurement_qualification_check", subject_ids=[enterprise])  # fmt: skip
    attempt("Tianjin planning reads pseudonymised Beijing commuter rows (bulk)",
            tj, "tianjin-planning", holder_jurisdiction="110000", dataset="si_contributions",
            purpose="commuter_planning")  # fmt: skip
    attempt("REFUSED: same Hebei service, undeclared purpose 'marketing'",
            hb, "hebei-housing-fund", holder_jurisdiction="110000", dataset="si_contributions",
            purpose="marketing", subject_ids=[commuter])  # fmt: skip
    attempt("REFUSED: Hebei asks for the phone number (not in the agreement)",
            hb, "hebei-housing-fund", holder_jurisdiction="110000", dataset="si_contributions",
            purpose="housing_fund_transfer", subject_ids=[commuter], fields=["name", "phone"])  # fmt: skip
    attempt("REFUSED: core population data never leaves Beijing",
            hb, "hebei-housing-fund", holder_jurisdiction="110000", dataset="population_core",
            purpose="housing_fund_transfer", subject_ids=[core_person])  # fmt: skip
    attempt("REFUSED: bulk request where the agreement names subjects only",
            hb, "hebei-housing-fund", holder_jurisdiction="110000", dataset="si_contributions",
            purpose="housing_fund_transfer")  # fmt: skip
    attempt("REFUSED: a caller with an unregistered token",
            hb, "hebei-housing-fund", token="svc_not-a-registered-token",  # noqa: S106 - deliberately wrong
            holder_jurisdiction="110000", dataset="si_contributions",
            purpose="housing_fund_transfer", subject_ids=[commuter])  # fmt: skip
    attempt("REFUSED: a jurisdiction outside the federation (Shanghai 310000)",
            hb, "hebei-housing-fund", holder_jurisdiction="310000", dataset="si_contributions",
            purpose="housing_fund_transfer", subject_ids=[commuter])  # fmt: skip
    return outcomes


def _bulk_stream(fed: Federation) -> list[Outcome]:
    """A streamed bulk transfer, stopped by the agreement's per-request cap and
    continued from its cursor."""
    tj = fed.sites["120000"]
    title = "Tianjin planning streams the pseudonymised Beijing commuter register, then resumes"
    caller = "120000/tianjin-planning"
    args = ("110000", "si_contributions", "commuter_planning")
    with ServiceClient(
        tj.service_address, tj.tls_cert, "120000", tj.tokens["tianjin-planning"]
    ) as c:
        try:
            parts = []
            cursor = ""
            for _ in range(2):
                msgs = list(c.stream_records(*args, cursor=cursor, timeout=60))
                done = msgs[-1].completed
                parts.append((msgs[0].started.request_id, done))
                cursor = done.cursor
        except grpc.RpcError as exc:
            return [Outcome(title, caller, exc.code().name, exc.details() or "")]
    (rid, first), (_, second) = parts
    return [
        Outcome(
            title,
            caller,
            "OK",
            f"{first.row_count} rows in {first.chunk_count} chunk(s), signed commitment "
            f"{first.commitment[:16]}… verified; {'capped: ' + first.truncated_reason if first.truncated else 'complete'}; "
            f"resumed from the cursor: {second.row_count} more rows; ledger #{first.receipt.index}",
            rid,
            "110000",
        )
    ]


def _print(title: str, outcomes: list[Outcome]) -> None:
    table = Table(title=title, title_justify="left", show_lines=True)
    table.add_column("exchange", max_width=46)
    table.add_column("caller", max_width=26)
    table.add_column("status")
    table.add_column("what happened", max_width=58)
    for o in outcomes:
        style = "green" if o.status == "OK" else "yellow"
        table.add_row(o.title, o.caller, f"[{style}]{o.status}[/{style}]", o.detail)
    console.print(table)


# Extra chapters (statistics, ledger evidence) register here: each gets the
# federation while the gateways run, and may return a check to run after stop.
Chapter = Callable[[Federation], Callable[[], bool] | None]
CHAPTERS: list[Chapter] = []
AFTER_STOP: list[Callable[[Federation, list[Outcome]], bool]] = []
BEFORE_STOP: list[Callable[[Federation, dict[str, subprocess.Popen[bytes]]], None]] = []


_SUITE_LINE = {
    "intl": "intl: Ed25519 signatures, X25519 + ChaCha20-Poly1305 sealing, SHA-256 ledger",
    "gm": "gm (国密): SM2-with-SM3 signatures, SM2 + SM4-GCM sealing, SM3 ledger, HMAC-SM3",
}


def run_demo(
    root: Path,
    rows: int = 2000,
    keep: bool = True,
    suite: str = "intl",
    source_url: str | None = None,
    source_schema: str = "gateway_demo",
) -> int:
    if root.exists():
        shutil.rmtree(root)
    console.rule("[bold]Cross-jurisdiction data-exchange gateway: Beijing–Tianjin–Hebei demo")
    console.print(
        f"Setting up the federation in {root} (keys, signed trust bundle, configs, synthetic data)..."
    )
    console.print(f"Cipher suite {_SUITE_LINE[suite]}; transport: TLS 1.3.")
    fed = build_federation(
        root, rows=rows, suite=suite, source_url=source_url, source_schema=source_schema
    )
    if source_url is not None:
        shown = sa.make_url(source_url).render_as_string(hide_password=True)
        console.print(f"  registers kept in {shown}, schemas {source_schema}_<code>")
    for site in fed.sites.values():
        console.print(
            f"  {site.code} {site.name}: peer 127.0.0.1:{site.peer_port} (mTLS), "
            f"service {site.service_address} (TLS + token)"
        )
    procs = start_gateways(fed)
    console.print("Three gateways are up (each a `gateway serve` process).\n")
    ok = True
    later: list[Callable[[], bool]] = []
    outcomes: list[Outcome] = []
    try:
        outcomes = _record_exchanges(fed) + _bulk_stream(fed)
        _print("Record exchanges", outcomes)
        expected_ok = 5
        got_ok = sum(o.status == "OK" for o in outcomes)
        if got_ok != expected_ok or any(o.status == "INTERNAL" for o in outcomes):
            console.print(f"[red]expected {expected_ok} successful exchanges, got {got_ok}[/red]")
            ok = False
        for chapter in CHAPTERS:
            check = chapter(fed)
            if check is not None:
                later.append(check)
        for before in BEFORE_STOP:
            before(fed, procs)
    finally:
        stop_gateways(procs)
    console.print("\nGateways stopped. Compliance checks, offline, from the ledger files alone:")
    for check in later:
        ok = check() and ok
    for after in AFTER_STOP:
        ok = after(fed, outcomes) and ok
    console.rule(
        "[bold green]demo finished: all checks passed"
        if ok
        else "[bold red]demo finished with failures"
    )
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1
