"""`scripts/bench.py scale --quick --json` runs end to end and reports its ratios.

Figures are never asserted (timing in tests is noise); only that every part
ran and every ratio is present with its target.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.pgtest import postgres_dsn

ROOT = Path(__file__).resolve().parents[2]


def test_scale_benchmark_quick_reports_every_ratio() -> None:
    dsn = postgres_dsn()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "scale", "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=280,
        env={**os.environ, "GATEWAY_BENCH_POSTGRES_DSN": dsn},
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    rows = report["rows"]
    for label in (
        "durable appends, SQLite single",
        "durable appends, PostgreSQL concurrent (32 callers)",
        "durable appends, PostgreSQL 2 replicas (32 callers)",
        "exchanges c=32, holder 1 replica, SQLite",
        "exchanges c=32, holder 1 replica, PostgreSQL",
        "exchanges c=32, holder 2 replicas, PostgreSQL",
    ):
        assert rows[label]["value"] > 0, label
    ratios = report["ratios"]
    assert ratios["appends concurrent PostgreSQL / SQLite"]["target"] == ">= 0.5"
    assert ratios["exchanges c=32: 2 replicas PostgreSQL / 1 SQLite"]["target"] == ">= 0.8"
