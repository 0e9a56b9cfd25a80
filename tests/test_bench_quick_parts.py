"""The bulk and sources benchmarks run (``--quick``) and report their ratios; figures
are never asserted, only that each part measures what it says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.dbs import SERVERS, require

ROOT = Path(__file__).resolve().parents[1]


def _quick(part: str) -> dict:  # type: ignore[type-arg]
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), part, "--quick", "--json"],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@pytest.mark.slow
def test_bulk_benchmark_quick_run_prints_throughput_and_rss_ratios() -> None:
    report = _quick("bulk")
    assert set(report["ratios"]) == {
        "throughput (gateway/relay)",
        "holder_peak_rss_mb",
        "requester_peak_rss_mb",
    }
    assert all(r["value"] > 0 for r in report["ratios"].values())
    assert report["rows"]["gateway"]["chunks"] == report["rows"]["relay"]["chunks"] > 0


@pytest.mark.slow
def test_sources_benchmark_quick_run_compares_postgresql_with_sqlite_memory() -> None:
    require(SERVERS["postgresql"])
    report = _quick("sources")
    assert list(report["ratios"]) == ["peak_rss_growth (postgresql/sqlite)"]
    assert report["rows"]["postgresql"]["rows"] == report["rows"]["sqlite"]["rows"] > 0
