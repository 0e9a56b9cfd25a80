"""Exchange benchmark: a one-record exchange through two gateways vs a plain two-hop relay.

Both run as separate processes on loopback and are driven by the same client
loop in this process, in the same run:

- gateway path: service client --TLS+token--> Hebei gateway --mTLS, signed,
  sealed--> Beijing gateway (policy, SQLite source, transforms, ledger on both
  sides) and back;
- baseline: client --plain gRPC--> relay --plain gRPC--> relay answering a
  payload of the same size as the gateway's answer.

Reports p50/p99 latency and throughput at concurrency 1 and 32, and ratios.
With ``--suite gm`` the gateways are a gm (SM2/SM3/SM4) federation, and an
intl federation is measured in the same run for the gm/intl ratios.
"""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from benchparts.common import Report, percentile
from gateway.client import ServiceClient
from gateway.demo.run import start_gateways, stop_gateways
from gateway.demo.setup import CLUSTER, REPO_POLICIES, build_federation, free_port

HERE = Path(__file__).resolve().parent


def _bench_policies(dst: Path) -> Path:
    """The shipped policies with the Hebei agreement's daily quota raised for load."""
    shutil.copytree(REPO_POLICIES, dst)
    f = dst / "110000" / "agreements" / "si-contributions-to-hebei-housing-fund.yaml"
    f.write_text(f.read_text().replace("quota_per_day: 1000", "quota_per_day: 100000000"))
    return dst


def _drive(
    call: Callable[[], object], concurrency: int, per_worker: int
) -> tuple[list[float], float]:
    latencies: list[float] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        local = []
        try:
            for _ in range(per_worker):
                t0 = time.perf_counter()
                call()
                local.append(time.perf_counter() - t0)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        with lock:
            latencies.extend(local)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"benchmark call failed: {errors[0]!r}")
    return latencies, len(latencies) / elapsed


def _start_pair(
    tmp: Path, suite: str, quick: bool
) -> tuple[dict[str, subprocess.Popen[bytes]], Any]:
    """Hebei and Beijing gateways of ``suite``; returns their processes and a client call."""
    members = tuple(m for m in CLUSTER if m.code in ("110000", "130000"))
    fed = build_federation(
        tmp / f"fed-{suite}",
        rows=100 if quick else 500,
        policies=_bench_policies(tmp / f"policies-{suite}"),
        members=members,
        suite=suite,
    )
    procs = start_gateways(fed)
    hb = fed.sites["130000"]
    with sqlite3.connect(fed.sites["110000"].data_source) as conn:
        subject = conn.execute("SELECT person_id FROM si_contributions LIMIT 1").fetchone()[0]
    client = ServiceClient(
        hb.service_address, hb.tls_cert, "130000", hb.tokens["hebei-housing-fund"]
    )
    req = dict(
        holder_jurisdiction="110000", dataset="si_contributions",
        purpose="housing_fund_transfer", subject_ids=[subject],
    )  # fmt: skip
    return procs, (client, req)


def run(quick: bool = False, suite: str = "intl") -> Report:
    """``suite`` gm measures a gm federation and, in the same run, an intl one."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-exchange-"))
    n1, per32 = (40, 3) if quick else (600, 40)
    relays: list[subprocess.Popen[bytes]] = []
    procs: dict[str, subprocess.Popen[bytes]] = {}
    suites = ("intl", "gm") if suite == "gm" else ("intl",)
    try:
        clients: dict[str, Any] = {}
        reply_size = 0
        for s in suites:
            procs_s, (client, req) = _start_pair(tmp, s, quick)
            procs.update({f"{s}-{k}": v for k, v in procs_s.items()})
            clients[s] = (client, req)
            reply_size = max(reply_size, client.get_records(**req).ByteSize())

        # Baseline relays.
        p_far, p_near = free_port(), free_port()
        for args in (["--port", str(p_far), "--reply-bytes", str(reply_size)],
                     ["--port", str(p_near), "--upstream", f"127.0.0.1:{p_far}"]):  # fmt: skip
            relays.append(
                subprocess.Popen(
                    [sys.executable, str(HERE / "relay.py"), *args], stdout=subprocess.PIPE
                )
            )
            assert relays[-1].stdout is not None
            relays[-1].stdout.readline()
        ident = lambda b: b  # noqa: E731
        channel = grpc.insecure_channel(f"127.0.0.1:{p_near}")
        relay_call = channel.unary_unary(
            "/bench.Relay/Call", request_serializer=ident, response_deserializer=ident
        )
        request_bytes = b"q" * 120

        def baseline() -> object:
            return relay_call(request_bytes, timeout=10)

        def gateway_of(s: str) -> Callable[[], object]:
            client, req = clients[s]
            return lambda: client.get_records(**req)

        report = Report(
            "exchange: one-record exchange through two gateways vs plain two-hop gRPC relay "
            f"(loopback; suite {suite})",
            ["p50 ms", "p99 ms", "req/s"],
        )
        results: dict[tuple[str, int], tuple[float, float, float]] = {}
        paths = [("relay", baseline)] + [(f"gateway {s}", gateway_of(s)) for s in suites]
        for conc, per in ((1, n1), (32, per32)):
            for name, fn in paths:
                _drive(fn, conc, max(5, per // 10))  # warm up
                lat, thr = _drive(fn, conc, per)
                results[(name, conc)] = (percentile(lat, 50) * 1e3, percentile(lat, 99) * 1e3, thr)
                report.row(f"{name} c={conc}", *results[(name, conc)])
        for conc in (1, 32):
            g, b = results[(f"gateway {suite}", conc)], results[("relay", conc)]
            report.ratio(f"latency_p50_c{conc} (gateway/relay)", g[0] / b[0], "<= 1.5")
            report.ratio(f"latency_p99_c{conc} (gateway/relay)", g[1] / b[1], "<= 1.5")
            report.ratio(f"throughput_c{conc} (gateway/relay)", g[2] / b[2], ">= 0.6")
        if suite == "gm":
            for conc in (1, 32):
                g, i = results[("gateway gm", conc)], results[("gateway intl", conc)]
                report.ratio(f"latency_p50_c{conc} (gm/intl)", g[0] / i[0], "<= 2")
                report.ratio(f"throughput_c{conc} (gm/intl)", g[2] / i[2], ">= 0.5")
        sig = "SM2-with-SM3" if suite == "gm" else "Ed25519"
        seal = "SM2 + SM4-GCM" if suite == "gm" else "X25519 + ChaCha20-Poly1305"
        report.notes.append(
            f"answer size {reply_size} bytes; gateway path: TLS, mTLS, 4 {sig} signatures/"
            f"verifications, 2 {seal} seals/opens, policy, SQLite source, 2 durable ledger appends"
        )
        for client, _ in clients.values():
            client.close()
        channel.close()
        return report
    finally:
        for r in relays:
            r.send_signal(signal.SIGTERM)
            r.wait(timeout=10)
        stop_gateways(procs)
        shutil.rmtree(tmp, ignore_errors=True)
