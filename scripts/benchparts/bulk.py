"""Bulk benchmark: a streamed bulk transfer of pseudonymised rows through two gateways
vs a plain gRPC server-streaming relay of the same bytes, in the same run.

- gateway path: service client --TLS+token--> Tianjin gateway --mTLS, signed start
  and end, every chunk sealed and hash-chained--> Beijing gateway (policy, SQLite
  source read through a cursor, pseudonymisation over each batch, quota charged
  per chunk, the holder's started and closing entries and the requester's
  entry), streamed back chunk by chunk as columns (the client asks for
  ``columnar``); the same transfer with one Record per row is reported beside it;
- baseline: client --plain gRPC--> relay --plain gRPC--> relay streaming as many
  messages of the same size as the gateway's chunks.

Reports rows/s and MB/s of each, the throughput ratio, and the peak resident set
(VmHWM) of each gateway process against its resident set before the transfer.
"""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

from benchparts.common import Report
from gateway.client import ServiceClient, chunk_row_count
from gateway.demo.run import start_gateways, stop_gateways
from gateway.demo.setup import CLUSTER, REPO_POLICIES, build_federation, free_port

HERE = Path(__file__).resolve().parent
AGREEMENT = "agreements/si-contributions-to-tianjin-planning.yaml"


def _policies(dst: Path, rows: int) -> Path:
    """The shipped policies with the Tianjin bulk agreement's caps raised to the run's size."""
    shutil.copytree(REPO_POLICIES, dst)
    f = dst / "110000" / AGREEMENT
    f.write_text(
        f.read_text(encoding="utf-8")
        .replace("max_records_per_request: 100", f"max_records_per_request: {rows}")
        .replace("quota_per_day: 500", f"quota_per_day: {rows * 4}"),
        encoding="utf-8",
    )
    return dst


def _fill(path: Path, rows: int) -> None:
    """Replace the seeded register with ``rows`` rows, reusing the Faker-made ones
    with unique 18-character ID numbers (seeding a million rows with Faker is slow)."""
    with sqlite3.connect(path) as conn:
        cols = [r[1] for r in conn.execute('PRAGMA table_info("si_contributions")')]
        seed = conn.execute(f"SELECT {', '.join(cols)} FROM si_contributions").fetchall()
        conn.execute("DELETE FROM si_contributions")
        pid = cols.index("person_id")
        conn.executemany(
            f"INSERT INTO si_contributions ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            (
                tuple(
                    f"{str(v)[:6]}19{i:09d}X" if j == pid else v
                    for j, v in enumerate(seed[i % len(seed)])
                )
                for i in range(rows)
            ),
        )
        conn.commit()


def _rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _transfer(client: ServiceClient, rows: int, columnar: bool) -> tuple[float, list[int]]:
    """One whole transfer; returns (seconds, size of each chunk message received)."""
    sizes: list[int] = []
    got = 0
    completed = None
    t0 = time.perf_counter()
    for m in client.stream_records(
        "110000", "si_contributions", "commuter_planning", columnar=columnar
    ):
        if m.HasField("chunk"):
            got += chunk_row_count(m.chunk)
            sizes.append(m.ByteSize())
        elif m.HasField("completed"):
            completed = m.completed
    seconds = time.perf_counter() - t0
    if completed is None or completed.row_count != rows or got != rows:
        raise RuntimeError(f"bulk transfer incomplete: {got} of {rows} rows")
    return seconds, sizes


def _interrupt_and_resume(client: ServiceClient, rows: int) -> tuple[float, int]:
    """Cancel a second transfer halfway, resume it from the last cursor; check that
    the rows add up and both parts end verified. Returns (seconds, rows)."""
    args = ("110000", "si_contributions", "commuter_planning")
    t0 = time.perf_counter()
    got, cursor = 0, ""
    it = client.stream_records(*args, columnar=True)
    for m in it:
        if m.HasField("chunk"):
            got += chunk_row_count(m.chunk)
            cursor = m.chunk.cursor
            if got >= rows // 2:
                break
    it.close()  # type: ignore[attr-defined]
    done = None
    for m in client.stream_records(*args, cursor=cursor, columnar=True):
        if m.HasField("chunk"):
            got += chunk_row_count(m.chunk)
        elif m.HasField("completed"):
            done = m.completed
    if done is None or got != rows:
        raise RuntimeError(f"resumed transfer incomplete: {got} of {rows} rows")
    return time.perf_counter() - t0, got


def run(quick: bool = False) -> Report:
    rows = 20_000 if quick else 1_000_000
    tmp = Path(tempfile.mkdtemp(prefix="bench-bulk-"))
    relays: list[subprocess.Popen[bytes]] = []
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        members = tuple(m for m in CLUSTER if m.code in ("110000", "120000"))
        fed = build_federation(
            tmp / "fed", rows=300, policies=_policies(tmp / "policies", rows), members=members
        )
        _fill(fed.sites["110000"].data_source, rows)
        procs = start_gateways(fed)
        before = {code: _rss_kb(p.pid, "VmRSS") for code, p in procs.items()}
        tj = fed.sites["120000"]
        client = ServiceClient(
            tj.service_address, tj.tls_cert, "120000", tj.tokens["tianjin-planning"]
        )
        gw_seconds, sizes = _transfer(client, rows, columnar=True)
        peak = {code: _rss_kb(p.pid, "VmHWM") for code, p in procs.items()}
        rec_seconds, rec_sizes = _transfer(client, rows, columnar=False)
        resumed = _interrupt_and_resume(client, rows)
        client.close()
        total_bytes = sum(sizes)
        chunk_bytes = total_bytes // len(sizes)

        p_far, p_near = free_port(), free_port()
        for args in (
            ["--port", str(p_far)],
            ["--port", str(p_near), "--upstream", f"127.0.0.1:{p_far}"],
        ):
            relays.append(
                subprocess.Popen(
                    [sys.executable, str(HERE / "relay.py"), *args], stdout=subprocess.PIPE
                )
            )
            assert relays[-1].stdout is not None
            relays[-1].stdout.readline()
        ident = lambda b: b  # noqa: E731
        channel = grpc.insecure_channel(
            f"127.0.0.1:{p_near}", options=[("grpc.max_receive_message_length", 64 << 20)]
        )
        stream = channel.unary_stream(
            "/bench.Relay/Stream", request_serializer=ident, response_deserializer=ident
        )
        t0 = time.perf_counter()
        relayed = sum(len(b) for b in stream(f"{len(sizes)},{chunk_bytes}".encode(), timeout=3600))
        relay_seconds = time.perf_counter() - t0
        channel.close()

        report = Report(
            f"bulk: {rows:,} pseudonymised rows streamed through two gateways vs a plain "
            "gRPC server-streaming relay of the same bytes (loopback)",
            ["seconds", "rows/s", "MB/s", "chunks"],
        )
        report.row(
            "relay", relay_seconds, rows / relay_seconds, relayed / relay_seconds / 1e6, len(sizes)
        )
        report.row(
            "gateway", gw_seconds, rows / gw_seconds, total_bytes / gw_seconds / 1e6, len(sizes)
        )
        report.row(
            "gateway, one Record per row to the client",
            rec_seconds, rows / rec_seconds, sum(rec_sizes) / rec_seconds / 1e6, len(rec_sizes),
        )  # fmt: skip
        for code, name in (("110000", "holder"), ("120000", "requester")):
            report.row(
                f"{name} {code} RSS MB (before → peak)",
                f"{before[code] / 1024:.0f} → {peak[code] / 1024:.0f}", "", "", "",
            )  # fmt: skip
        report.row(
            "interrupted at half, resumed from the cursor",
            resumed[0], "", "", f"{resumed[1]:,} rows",
        )  # fmt: skip
        report.ratio("throughput (gateway/relay)", relay_seconds / gw_seconds, ">= 0.5")
        report.ratio("holder_peak_rss_mb", peak["110000"] / 1024, "<= 200")
        report.ratio("requester_peak_rss_mb", peak["120000"] / 1024, "<= 200")
        report.notes.append(
            f"{total_bytes / 1e6:.1f} MB in {len(sizes)} chunks of ~{chunk_bytes:,} bytes (columnar: "
            "the service system asks for columns); fields: pseudonymised person_id (keyed HMAC), "
            "age_band, district_code, residence_jurisdiction"
        )
        report.notes.append(
            f"one Record per row instead: {sum(rec_sizes) / 1e6:.1f} MB; the requesting gateway "
            "turns columns into records"
        )
        return report
    finally:
        for r in relays:
            r.send_signal(signal.SIGTERM)
            r.wait(timeout=10)
        stop_gateways(procs)
        shutil.rmtree(tmp, ignore_errors=True)
