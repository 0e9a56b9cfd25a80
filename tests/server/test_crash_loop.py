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


def _verifies_offline(site: GatewaySite, bundle: Path) -> None:
    """The site's ledger verifies against the trust bundle, exchange signatures included."""
    keys = TrustedKeys.from_bundle(load_bundle(bundle))
    ledger = SqliteLedger.open_readonly(site.root / "data" / "ledger.sqlite")
    try:
        r = verify_store(ledger.store, ledger.origin, keys, check_signatures=True, workers=1)
    finally:
        ledger.close()
    assert r.ok, r.problem


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
    for site in (bj, hb):
        _verifies_offline(site, fed.bundle)


TJ = "120000"
BULK_ROWS = 100_000


def _bulk_site_setup(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Beijing and Tianjin, the Tianjin bulk agreement raised to BULK_ROWS, Beijing's
    register grown to BULK_ROWS rows (unique ID numbers), chunks of 50 rows."""
    import shutil

    from gateway.demo.setup import CLUSTER, REPO_POLICIES

    policies = tmp_path / "policies"
    shutil.copytree(REPO_POLICIES, policies)
    agreement = policies / BJ / "agreements/si-contributions-to-tianjin-planning.yaml"
    agreement.write_text(
        agreement.read_text(encoding="utf-8")
        .replace("max_records_per_request: 100", f"max_records_per_request: {BULK_ROWS}")
        .replace("quota_per_day: 500", f"quota_per_day: {BULK_ROWS * 2}"),
        encoding="utf-8",
    )
    members = tuple(m for m in CLUSTER if m.code in (BJ, TJ))
    fed = build_federation(tmp_path / "fed", rows=300, policies=policies, members=members)
    bj = fed.sites[BJ]
    with sqlite3.connect(bj.data_source) as conn:
        cols = [r[1] for r in conn.execute('PRAGMA table_info("si_contributions")')]
        seed = conn.execute(f"SELECT {', '.join(cols)} FROM si_contributions").fetchall()
        conn.execute("DELETE FROM si_contributions")
        pid = cols.index("person_id")
        conn.executemany(
            f"INSERT INTO si_contributions ({', '.join(cols)}) "
            f"VALUES ({', '.join('?' * len(cols))})",
            (
                tuple(
                    f"{str(v)[:6]}19{i:09d}X" if j == pid else v
                    for j, v in enumerate(seed[i % len(seed)])
                )
                for i in range(BULK_ROWS)
            ),
        )
    with bj.config.open("a", encoding="utf-8") as f:
        f.write("\n[limits]\nstream_chunk_rows = 50\n")
    return fed


@pytest.mark.slow
def test_holder_killed_mid_stream_has_ledgered_the_transfer_before_its_first_chunk_left(
    tmp_path: Path,
) -> None:
    """kill -9 of the holding gateway while it streams: its ledger still verifies and
    holds the transfer's started entry (request, decision, signatures), with no
    closing entry; reconcile lists the transfer as interrupted, not a discrepancy."""
    import grpc

    fed = _bulk_site_setup(tmp_path)
    bj, tj = fed.sites[BJ], fed.sites[TJ]
    procs = {BJ: _serve(bj), TJ: _serve(tj)}
    try:
        _wait_listening(bj)
        _wait_listening(tj)
        got: list[str] = []
        with ServiceClient(tj.service_address, tj.tls_cert, TJ,
                           tj.tokens["tianjin-planning"]) as c:  # fmt: skip
            it = c.stream_records(BJ, "si_contributions", "commuter_planning", timeout=60)
            rid = next(it).started.request_id
            for m in it:
                got.append(m.WhichOneof("kind"))
                if len(got) == 2:
                    break
            procs[BJ].send_signal(signal.SIGKILL)
            procs[BJ].wait()
            with pytest.raises(grpc.RpcError) as err:
                for m in it:
                    assert not m.HasField("completed")
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert got == ["chunk", "chunk"]
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            p.wait(timeout=30)
    held, asked = _events(bj), _events(tj)
    mine = [e for _, e in held if e.request_id == rid]
    assert [dict(e.details).get("stream_phase") for e in mine] == ["started"]
    started = mine[0]
    assert (started.kind, started.decision, started.record_count) == ("transfer", "allow", 0)
    assert started.requester_signature and started.holder_signature and started.agreement_id
    _verifies_offline(bj, fed.bundle)
    [requester] = [e for _, e in asked if e.request_id == rid]
    assert ("complete", "false") in requester.details and requester.record_count >= 100
    report = reconcile(held, asked, BJ, TJ)
    assert report.ok, report
    [cut] = report.interrupted
    assert (cut.request_id, cut.rows_sent) == (rid, None)
    assert "no closing entry" in cut.reason
