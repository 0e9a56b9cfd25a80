"""Structured logs of real `gateway serve` processes: JSON lines, the right fields, no personal data.

Three gateway processes log JSON at DEBUG to files. Known subject ids and
tokens are pushed through every path a service system can reach (allowed,
refused by policy, malformed, duplicated, unknown caller, unknown member,
statistics, a holder that is down), plus SIGUSR1 and SIGHUP; then every line
must parse as one JSON object and no line may contain a subject id, a record
value or a token.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from gateway.client import ServiceClient
from gateway.demo.setup import Federation, GatewaySite, build_federation


def _start(fed: Federation) -> dict[str, subprocess.Popen[bytes]]:
    from gateway.demo.run import _wait_healthy

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = {}
    for code, site in fed.sites.items():
        procs[code] = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--config", str(site.config),
             "--log-format", "json", "--log-level", "DEBUG"],
            stdout=(site.root / "stdout.log").open("wb"),
            stderr=(site.root / "gateway.jsonl").open("wb"),
            env=env,
        )  # fmt: skip
    for code, site in fed.sites.items():
        _wait_healthy(site, procs[code])
    return procs


def _stop(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs.values():
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()


def _tls_probe(port: int) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with ctx.wrap_socket(raw) as tls:
                tls.sendall(b"PRI * HTTP/2.0\r\n\r\n")
                tls.recv(16)
        except (ssl.SSLError, OSError):
            pass  # refused: the peer port requires a member certificate
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")


def _one(site: GatewaySite, sql: str) -> str:
    with sqlite3.connect(f"file:{site.data_source}?mode=ro", uri=True) as c:
        return str(c.execute(sql).fetchone()[0])


def _lines(site: GatewaySite) -> list[dict[str, Any]]:
    out = []
    for raw in (site.root / "gateway.jsonl").read_text(encoding="utf-8").splitlines():
        out.append(json.loads(raw))  # every line is exactly one JSON object
    return out


def _wait_for(site: GatewaySite, event: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(line.get("event") == event for line in _lines(site)):
            return
        time.sleep(0.2)
    raise AssertionError(f"no {event!r} line from {site.code} within {timeout} s")


@pytest.mark.slow
def test_logs_are_json_lines_with_exchange_fields_and_never_contain_subject_ids_or_tokens(
    tmp_path: Path,
) -> None:
    fed = build_federation(tmp_path, rows=120)
    bj, tj, hb = (fed.sites[c] for c in ("110000", "120000", "130000"))
    commuter = _one(
        bj, "SELECT person_id FROM si_contributions WHERE residence_jurisdiction='130000' LIMIT 1"
    )
    other = _one(
        bj, f"SELECT person_id FROM si_contributions WHERE person_id != '{commuter}' LIMIT 1"
    )
    core = _one(bj, "SELECT person_id FROM population_core LIMIT 1")
    hf = _one(tj, "SELECT person_id FROM hf_accounts LIMIT 1")
    name = _one(bj, f"SELECT name FROM si_contributions WHERE person_id = '{commuter}'")
    employer = _one(bj, f"SELECT employer FROM si_contributions WHERE person_id = '{commuter}'")
    secrets = [
        commuter,
        other,
        core,
        hf,
        name,
        employer,
        *(t for s in fed.sites.values() for t in s.tokens.values()),
    ]
    procs = _start(fed)
    try:
        hb_token = hb.tokens["hebei-housing-fund"]

        def call(site: GatewaySite, token: str, **req: Any) -> str:
            with ServiceClient(site.service_address, site.tls_cert, site.code, token) as c:
                try:
                    return c.get_records(**req).request_id
                except grpc.RpcError as exc:
                    return exc.code().name

        si = dict(holder_jurisdiction="110000", dataset="si_contributions")
        ok_id = call(hb, hb_token, **si, purpose="housing_fund_transfer", subject_ids=[commuter])
        assert len(ok_id) == 36
        assert (
            len(
                call(
                    hb,
                    hb_token,
                    **si,
                    purpose="housing_fund_transfer",
                    subject_ids=[other, commuter],
                )
            )
            == 36
        )
        assert (
            call(hb, hb_token, **si, purpose="marketing", subject_ids=[commuter])
            == "PERMISSION_DENIED"
        )
        assert (
            call(
                hb,
                hb_token,
                **si,
                purpose="housing_fund_transfer",
                subject_ids=[commuter],
                fields=["phone"],
            )
            == "PERMISSION_DENIED"
        )
        assert (
            call(
                hb,
                hb_token,
                holder_jurisdiction="110000",
                dataset="population_core",
                purpose="housing_fund_transfer",
                subject_ids=[core],
            )
            == "PERMISSION_DENIED"
        )
        assert (
            call(
                hb,
                hb_token,
                **si,
                purpose="housing_fund_transfer",
                subject_ids=[commuter, commuter],
            )
            == "INVALID_ARGUMENT"
        )
        assert (
            call(hb, hb_token, **si, purpose="housing_fund_transfer", subject_ids=[commuter + "-x"])
            == "INVALID_ARGUMENT"
        )
        assert (
            call(
                hb, "svc_" + commuter, **si, purpose="housing_fund_transfer", subject_ids=[commuter]
            )
            == "UNAUTHENTICATED"
        )
        assert (
            call(
                hb,
                hb_token,
                holder_jurisdiction="310000",
                dataset="si_contributions",
                purpose="housing_fund_transfer",
                subject_ids=[commuter],
            )
            == "NOT_FOUND"
        )
        bj_token = bj.tokens["beijing-housing-fund"]
        assert (
            len(
                call(
                    bj,
                    bj_token,
                    holder_jurisdiction="120000",
                    dataset="hf_accounts",
                    purpose="housing_fund_transfer",
                    subject_ids=[hf],
                )
            )
            == 36
        )
        with ServiceClient(
            tj.service_address, tj.tls_cert, tj.code, tj.tokens["tianjin-planning"]
        ) as c:
            c.query_statistics(["110000", "120000"], "si_contributions", "commuter_planning", "count",
                               epsilon=0.5, group_by=["age_band"], filters={"residence_jurisdiction": ["130000"]})  # fmt: skip
        # The running process's operations listener scrapes, with this exchange counted.
        import urllib.request

        with urllib.request.urlopen(hb.ops_url + "/metrics", timeout=10) as r:
            scraped = r.read().decode()
        assert 'gateway_requests_total{api="RecordExchange/GetRecords"' in scraped
        assert "gateway_ledger_checkpoint_age_seconds" in scraped
        # A load balancer's plain TLS probes (no member certificate) and an HTTP
        # probe on the peer port: refused at the handshake, and never a log flood.
        for _ in range(5):
            _tls_probe(bj.peer_port)
        # SIGUSR1 (checkpoint and witness now) and SIGHUP (reload) each leave a line.
        procs["110000"].send_signal(signal.SIGUSR1)
        procs["110000"].send_signal(signal.SIGHUP)
        _wait_for(bj, "sigusr1")
        _wait_for(bj, "sighup")
        # A holder that is down: the requester logs the failed exchange.
        procs["120000"].send_signal(signal.SIGTERM)
        procs["120000"].wait(timeout=20)
        assert (
            call(
                bj,
                bj_token,
                holder_jurisdiction="120000",
                dataset="hf_accounts",
                purpose="housing_fund_transfer",
                subject_ids=[hf],
            )
            == "UNAVAILABLE"
        )
    finally:
        _stop(procs)

    every = {code: _lines(site) for code, site in fed.sites.items()}
    text = "\n".join(
        (site.root / "gateway.jsonl").read_text(encoding="utf-8") for site in fed.sites.values()
    )
    for s in secrets:
        assert s not in text, "a subject id, record value or token reached the logs"

    assert "Handshake failed" not in text
    for lines in every.values():
        for line in lines:
            assert {"ts", "level", "logger", "event", "message"} <= set(line)
            assert line["ts"].endswith("Z")
    rpc = [
        line
        for line in every["130000"]
        if line["event"] == "rpc" and line.get("request_id") == ok_id
    ]
    assert len(rpc) == 1
    assert rpc[0] | {"latency_ms": 0} == rpc[0] | {
        "api": "RecordExchange/GetRecords", "port": "service", "caller": "hebei-housing-fund",
        "counterparty": "110000", "dataset": "si_contributions", "outcome": "transfer",
        "code": "OK", "latency_ms": 0,
    }  # fmt: skip
    assert rpc[0]["latency_ms"] > 0
    held = [
        line
        for line in every["110000"]
        if line["event"] == "rpc" and line.get("request_id") == ok_id
    ]
    assert (
        len(held) == 1
        and held[0]["api"] == "PeerExchange/FetchRecords"
        and held[0]["caller"] == "130000"
    )
    refused = [
        line
        for line in every["130000"]
        if line["event"] == "rpc" and line.get("code") == "PERMISSION_DENIED"
    ]
    assert refused and all(line["outcome"] == "refusal" for line in refused)
    assert any(
        line["event"] == "rpc" and line.get("code") == "UNAUTHENTICATED" for line in every["130000"]
    )
    down = [
        line
        for line in every["110000"]
        if line["event"] == "rpc" and line.get("code") == "UNAVAILABLE"
    ]
    assert down and down[0]["counterparty"] == "120000" and down[0]["outcome"] == "refusal"
    stats = [
        line
        for line in every["120000"]
        if line["event"] == "rpc" and line.get("api") == "Statistics/Query"
    ]
    assert stats and stats[0]["outcome"] == "stats_release"
    events = {line["event"] for line in every["110000"]}
    assert {"checkpoint", "witness_round", "sigusr1", "sighup", "signal"} <= events
