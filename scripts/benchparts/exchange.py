"""Exchange benchmark: a one-record exchange through two gateways vs two two-hop relays.

All run as separate processes on loopback and are driven by the same client
loop in this process, in the same run:

- gateway path: service client --TLS+token--> Hebei gateway --mTLS, signed,
  sealed--> Beijing gateway (policy, SQLite source, transforms, ledger on both
  sides) and back;
- ``relay``: client --plain gRPC--> relay --plain gRPC--> relay answering a
  payload of the same size as the gateway's answer;
- ``mtls-relay``: what a user would otherwise deploy: client --TLS + bearer
  token (call metadata, checked by SHA-256 in constant time)--> relay
  --mutual TLS (the two gateways' own certificates)--> relay, same payload.

With ``--suite gm`` the gateways are a gm (SM2/SM3/SM4) federation, and an
intl federation is measured in the same run for the gm/intl ratios.

Reports p50/p99 latency and throughput at concurrency 1 and 32; CPU-ms per
exchange for each process (this client process, the near hop, the far hop:
their own user + system CPU time from /proc) and context switches per
exchange of each server process; ratios against both relays.

``--soak`` (``run_soak``): peak throughput at concurrency 32, then a paced run
at 80% of it for 5 minutes, sampling both gateways' RSS; the ratio lines
compare RSS at the end with RSS after the first minute.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from benchparts import procstat
from benchparts.common import Report, percentile
from gateway import crypto
from gateway.client import ServiceClient
from gateway.demo.run import start_gateways, stop_gateways
from gateway.demo.setup import CLUSTER, REPO_POLICIES, build_federation, free_port

HERE = Path(__file__).resolve().parent
SYSTEMS = ("relay", "mtls-relay", "mtls-relay-aio", "gateway")


def _bench_policies(dst: Path) -> Path:
    """The shipped policies with the Hebei agreement's daily quota raised for load."""
    shutil.copytree(REPO_POLICIES, dst)
    f = dst / "110000" / "agreements" / "si-contributions-to-hebei-housing-fund.yaml"
    f.write_text(f.read_text().replace("quota_per_day: 1000", "quota_per_day: 100000000"))
    return dst


def _drive(
    call: Callable[[], object],
    concurrency: int,
    per_worker: int,
    pace: Callable[[], None] | None = None,
) -> tuple[list[float], float]:
    latencies: list[float] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        local = []
        try:
            for _ in range(per_worker):
                if pace is not None:
                    pace()
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


@dataclass(frozen=True)
class System:
    name: str
    call: Callable[[], object]
    near: int  # pid of the hop the client calls
    far: int  # pid of the hop that answers


@dataclass(frozen=True)
class Measured:
    p50_ms: float
    p99_ms: float
    rate: float
    cpu_ms: dict[str, float]  # client / near / far, per exchange
    switches: dict[str, float]  # near / far, per exchange

    @property
    def cpu_total_ms(self) -> float:
        return sum(self.cpu_ms.values())


def _measure(system: System, concurrency: int, per_worker: int) -> Measured:
    _drive(system.call, concurrency, max(5, per_worker // 10))  # warm up
    pids = {"client": os.getpid(), "near": system.near, "far": system.far}
    before = {k: procstat.sample(p) for k, p in pids.items()}
    lat, rate = _drive(system.call, concurrency, per_worker)
    delta = {k: procstat.sample(p) - before[k] for k, p in pids.items()}
    n = len(lat)
    return Measured(
        percentile(lat, 50) * 1e3,
        percentile(lat, 99) * 1e3,
        rate,
        {k: d.cpu_s * 1e3 / n for k, d in delta.items()},
        {k: delta[k].switches / n for k in ("near", "far")},
    )


def _relay(args: list[str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, str(HERE / "relay.py"), *args], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.readline()
    return proc


def _pair(
    tmp: Path, suite: str, quick: bool, procs: dict[str, subprocess.Popen[bytes]]
) -> tuple[Any, ServiceClient, Callable[[], object]]:
    """Hebei and Beijing gateways of ``suite`` (their processes go into ``procs``)."""
    members = tuple(m for m in CLUSTER if m.code in ("110000", "130000"))
    fed = build_federation(
        tmp / f"fed-{suite}",
        rows=100 if quick else 500,
        policies=_bench_policies(tmp / f"policies-{suite}"),
        members=members,
        suite=suite,
    )
    started = start_gateways(fed)
    procs.update({f"{suite}-{k}": v for k, v in started.items()})
    hb, bj = fed.sites["130000"], fed.sites["110000"]
    with sqlite3.connect(bj.data_source) as conn:
        subject = conn.execute("SELECT person_id FROM si_contributions LIMIT 1").fetchone()[0]
    client = ServiceClient(
        hb.service_address, hb.tls_cert, "130000", hb.tokens["hebei-housing-fund"]
    )
    req = dict(
        holder_jurisdiction="110000", dataset="si_contributions",
        purpose="housing_fund_transfer", subject_ids=[subject],
    )  # fmt: skip
    return fed, client, lambda: client.get_records(**req)


@contextlib.contextmanager
def _rig(
    quick: bool, relays: bool = True, suite: str = "intl"
) -> Iterator[tuple[dict[str, System], int]]:
    """Both gateways (of ``suite``; gm adds an intl pair, ``gateway intl``) and (with
    ``relays``) the relay pairs; yields the systems and the answer size."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-exchange-"))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    spawned: list[subprocess.Popen[bytes]] = []
    closers: list[Callable[[], object]] = []
    try:
        fed, client, gateway = _pair(tmp, suite, quick, procs)
        closers.append(client.close)
        hb, bj = fed.sites["130000"], fed.sites["110000"]
        token = hb.tokens["hebei-housing-fund"]
        reply_size = int(gateway().ByteSize())  # type: ignore[attr-defined]
        systems = {
            "gateway": System(
                "gateway", gateway, procs[f"{suite}-130000"].pid, procs[f"{suite}-110000"].pid
            )
        }
        if suite != "intl":
            _, intl_client, intl_gateway = _pair(tmp, "intl", quick, procs)
            closers.append(intl_client.close)
            systems["gateway intl"] = System(
                "gateway intl", intl_gateway, procs["intl-130000"].pid, procs["intl-110000"].pid
            )
        if relays:
            ident = lambda b: b  # noqa: E731
            request_bytes = b"q" * 120
            # Plain relay pair.
            p_far, p_near = free_port(), free_port()
            spawned.append(_relay(["--port", str(p_far), "--reply-bytes", str(reply_size)]))
            spawned.append(_relay(["--port", str(p_near), "--upstream", f"127.0.0.1:{p_far}"]))
            plain = grpc.insecure_channel(f"127.0.0.1:{p_near}")
            closers.append(plain.close)
            plain_call = plain.unary_unary(
                "/bench.Relay/Call", request_serializer=ident, response_deserializer=ident
            )
            systems["relay"] = System(
                "relay",
                lambda: plain_call(request_bytes, timeout=10),
                spawned[-1].pid,
                spawned[-2].pid,
            )
            # TLS + token, then mutual TLS, with the gateways' own certificates;
            # once on thread-pool servers (as the gateway), once on grpc.aio.
            hb_key, bj_key = hb.root / "keys" / "tls.key", bj.root / "keys" / "tls.key"
            auth = (("authorization", f"Bearer {token}"),)
            for name, extra in (("mtls-relay", []), ("mtls-relay-aio", ["--aio"])):
                m_far, m_near = free_port(), free_port()
                far = _relay(
                    [*extra, "--port", str(m_far), "--reply-bytes", str(reply_size),
                     "--tls-key", str(bj_key), "--tls-cert", str(bj.tls_cert),
                     "--client-ca", str(hb.tls_cert)]
                )  # fmt: skip
                near = _relay(
                    [*extra, "--port", str(m_near), "--upstream", f"127.0.0.1:{m_far}",
                     "--tls-key", str(hb_key), "--tls-cert", str(hb.tls_cert),
                     "--token-sha256", crypto.sha256_hex(token.encode()),
                     "--upstream-ca", str(bj.tls_cert), "--upstream-key", str(hb_key),
                     "--upstream-cert", str(hb.tls_cert), "--upstream-name", "gw-110000"]
                )  # fmt: skip
                spawned += [far, near]
                tls = grpc.secure_channel(
                    f"127.0.0.1:{m_near}",
                    grpc.ssl_channel_credentials(root_certificates=hb.tls_cert.read_bytes()),
                    options=[("grpc.ssl_target_name_override", "gw-130000")],
                )
                closers.append(tls.close)
                tls_call = tls.unary_unary(
                    "/bench.Relay/Call", request_serializer=ident, response_deserializer=ident
                )
                systems[name] = System(
                    name,
                    lambda c=tls_call: c(request_bytes, timeout=10, metadata=auth),  # type: ignore[misc]
                    near.pid,
                    far.pid,
                )
        yield systems, reply_size
    finally:
        for close in closers:
            close()
        for r in spawned:
            r.send_signal(signal.SIGTERM)
            r.wait(timeout=10)
        stop_gateways(procs)
        shutil.rmtree(tmp, ignore_errors=True)


def run(quick: bool = False, suite: str = "intl") -> Report:
    """``suite`` gm measures a gm federation and, in the same run, an intl one."""
    n1, per32 = (40, 3) if quick else (1000, 60)
    names = (*SYSTEMS, "gateway intl") if suite != "intl" else SYSTEMS
    with _rig(quick, suite=suite) as (systems, reply_size):
        report = Report(
            "exchange: one-record exchange through two gateways vs a plain and an mTLS "
            f"two-hop gRPC relay (loopback; suite {suite}); CPU ms and context switches per exchange",
            ["p50 ms", "p99 ms", "req/s", "CPU client", "CPU near", "CPU far", "CPU total",
             "ctx sw near", "ctx sw far"],
        )  # fmt: skip
        results: dict[tuple[str, int], Measured] = {}
        for conc, per in ((1, n1), (32, per32)):
            for name in names:
                m = results[(name, conc)] = _measure(systems[name], conc, per)
                report.row(
                    f"{name} c={conc}",
                    m.p50_ms,
                    m.p99_ms,
                    m.rate,
                    m.cpu_ms["client"],
                    m.cpu_ms["near"],
                    m.cpu_ms["far"],
                    m.cpu_total_ms,
                    m.switches["near"],
                    m.switches["far"],
                )
    for conc in (1, 32):
        g, b = results[("gateway", conc)], results[("relay", conc)]
        report.ratio(f"latency_p50_c{conc} (gateway/relay)", g.p50_ms / b.p50_ms, "<= 1.5")
        report.ratio(f"latency_p99_c{conc} (gateway/relay)", g.p99_ms / b.p99_ms, "<= 1.5")
        report.ratio(f"throughput_c{conc} (gateway/relay)", g.rate / b.rate, ">= 0.6")
    g1, t1 = results[("gateway", 1)], results[("mtls-relay", 1)]
    g32, t32 = results[("gateway", 32)], results[("mtls-relay", 32)]
    report.ratio("latency_p50_c1 (gateway/mtls-relay)", g1.p50_ms / t1.p50_ms, "<= 2.0")
    report.ratio("throughput_c32 (gateway/mtls-relay)", g32.rate / t32.rate, ">= 0.6")
    report.ratio(
        "cpu_per_exchange_c32 (gateway/mtls-relay)", g32.cpu_total_ms / t32.cpu_total_ms, "<= 1.7"
    )
    report.ratio("cpu_ms_per_exchange_c32 (gateway, all processes)", g32.cpu_total_ms, "<= 3.2")
    if suite != "intl":
        for conc in (1, 32):
            g, i = results[("gateway", conc)], results[("gateway intl", conc)]
            report.ratio(f"latency_p50_c{conc} (gm/intl)", g.p50_ms / i.p50_ms, "<= 2")
            report.ratio(f"throughput_c{conc} (gm/intl)", g.rate / i.rate, ">= 0.5")
    sig = "SM2-with-SM3" if suite == "gm" else "Ed25519"
    seal = "SM2 + SM4-GCM" if suite == "gm" else "X25519 + ChaCha20-Poly1305"
    report.notes.append(
        f"answer size {reply_size} bytes; gateway path: TLS + token, mTLS, 4 {sig} "
        f"signatures/verifications, 2 {seal} seals/opens, policy, SQLite source, "
        "2 durable ledger appends"
    )
    report.notes.append(
        "CPU columns: ms of user+system CPU per exchange of this client process, the near hop "
        "(requesting gateway / first relay) and the far hop (holder / last relay); ctx sw: "
        "voluntary + involuntary context switches per exchange, summed over the process's threads"
    )
    report.notes.append(
        f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    return report


def run_soak(seconds: float = 300.0, quick: bool = False) -> Report:
    """Peak throughput at c=32, then ``seconds`` at 80% of it; RSS after 1 minute vs at the end."""
    with _rig(quick, relays=False) as (systems, _):
        gw = systems["gateway"]
        peak = _measure(gw, 32, 10 if quick else 40).rate
        rate = 0.8 * peak
        first = min(60.0, seconds / 5)
        lock = threading.Lock()
        slot = [0]
        t0 = time.monotonic()
        end = t0 + seconds

        def pace() -> None:
            with lock:
                i = slot[0]
                slot[0] += 1
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)

        samples: list[tuple[float, int, int]] = []
        stop = threading.Event()

        def sampler() -> None:
            while not stop.wait(min(5.0, first / 4)):
                samples.append(
                    (time.monotonic() - t0, procstat.rss_bytes(gw.near), procstat.rss_bytes(gw.far))
                )

        s = threading.Thread(target=sampler, daemon=True)
        s.start()
        per_worker = int(rate * seconds / 32) + 1
        lat: list[float] = []

        def bounded() -> object:
            if time.monotonic() > end:
                return None
            return gw.call()

        lat, achieved = _drive(bounded, 32, per_worker, pace)
        stop.set()
        s.join()
        samples.append(
            (time.monotonic() - t0, procstat.rss_bytes(gw.near), procstat.rss_bytes(gw.far))
        )
    at_first = next(x for x in samples if x[0] >= first)
    last = samples[-1]
    report = Report(
        f"exchange soak: {seconds:.0f} s at 80% of peak throughput (peak {peak:,.0f} req/s, "
        f"paced {rate:,.0f} req/s); gateway RSS after {first:.0f} s vs at the end",
        ["RSS MiB at first", "RSS MiB at end", "growth %"],
    )
    for label, i in (("requester (Hebei)", 1), ("holder (Beijing)", 2)):
        a, b = at_first[i] / 2**20, last[i] / 2**20
        report.row(label, a, b, (b / a - 1) * 100)
    report.row("exchanges", len(lat), achieved, percentile(lat, 50) * 1e3)
    report.notes.append("exchanges row: count, achieved req/s, p50 ms")
    report.notes.append(
        f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    report.ratio("rss_end/rss_first (requester)", last[1] / at_first[1], "<= 1.1")
    report.ratio("rss_end/rss_first (holder)", last[2] / at_first[2], "<= 1.1")
    return report
