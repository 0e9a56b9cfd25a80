"""kill -9 of the requester and of the holder mid-exchange, in a loop, on real `gateway serve`
processes: no acknowledged exchange is lost, both ledgers still verify, and reconcile reports
zero discrepancies while listing the releases the requester never acknowledged."""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gateway.client import ServiceClient
from gateway.demo.setup import GatewaySite, build_federation
from gateway.ledger.ledger import SqliteLedger
from gateway.ledger.reconcile import reconcile
from gateway.ledger.trustkeys import TrustedKeys
from gateway.ledger.verify import verify_store
from gateway.trust import load_bundle

BJ, HB = "110000", "130000"
ROUNDS_REQUESTER, ROUNDS_HOLDER = 2, 1


def _serve(site: GatewaySite) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(site.config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=site.root,
    )


def _wait_listening(site: GatewaySite, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", site.service_port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"gateway {site.code} did not start")


def _events(site: GatewaySite) -> list:  # type: ignore[type-arg]
    ledger = SqliteLedger.open_readonly(site.root / "data" / "ledger.sqlite")
    try:
        return [(r.index, r.event) for r in ledger.entries(0, ledger.size)]
    finally:
        ledger.close()


@pytest.mark.slow
def test_kill_9_loop_loses_no_acknowledged_exchange_and_reconciles_without_discrepancy(
    tmp_path: Path,
) -> None:
    fed = build_federation(tmp_path, rows=40)
    bj, hb = fed.sites[BJ], fed.sites[HB]
    with sqlite3.connect(f"file:{bj.data_source}?mode=ro", uri=True) as c:
        person = str(
            c.execute(
                "SELECT person_id FROM si_contributions WHERE residence_jurisdiction='130000' LIMIT 1"
            ).fetchone()[0]
        )
    procs = {BJ: _serve(bj), HB: _serve(hb)}
    _wait_listening(bj)
    _wait_listening(hb)
    acknowledged: list[str] = []
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            try:
                with ServiceClient(hb.service_address, hb.tls_cert, HB,
                                   hb.tokens["hebei-housing-fund"]) as c:  # fmt: skip
                    while not stop.is_set():
                        resp = c.get_records(
                            holder_jurisdiction=BJ,
                            dataset="si_contributions",
                            purpose="housing_fund_transfer",
                            subject_ids=[person],
                        )
                        acknowledged.append(resp.request_id)
            except Exception:  # the gateway was killed: reconnect
                time.sleep(0.05)

    workers = [threading.Thread(target=work, daemon=True) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        for victim in [HB] * ROUNDS_REQUESTER + [BJ] * ROUNDS_HOLDER:
            time.sleep(1.0)
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait()
            procs[victim] = _serve(fed.sites[victim])
            _wait_listening(fed.sites[victim])
        time.sleep(1.0)
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=30)
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            p.wait(timeout=30)
    assert acknowledged, "no exchange succeeded"
    held, asked = _events(bj), _events(hb)
    for rid in acknowledged:  # none lost: both sides recorded every acknowledged exchange
        assert any(e.request_id == rid and e.kind == "transfer" for _, e in held)
        assert any(e.request_id == rid and e.kind == "transfer" for _, e in asked)
    report = reconcile(held, asked, BJ, HB)
    assert report.ok and report.discrepancies == 0, report
    assert report.matched >= len(acknowledged)
    for u in report.unacknowledged:
        assert u.holder == BJ and ("requester lost" in u.reason or "connection" in u.reason)
    keys = TrustedKeys.from_bundle(load_bundle(fed.bundle))
    for site in (bj, hb):
        ledger = SqliteLedger.open_readonly(site.root / "data" / "ledger.sqlite")
        try:
            r = verify_store(ledger.store, ledger.origin, keys, check_signatures=True, workers=1)
        finally:
            ledger.close()
        assert r.ok, r.problem
