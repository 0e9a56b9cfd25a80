"""The bulk benchmark runs (``--quick``) and reports its ratios; figures are not asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bulk_benchmark_quick_run_prints_throughput_and_rss_ratios() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "bulk", "--quick", "--json"],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    report = json.loads(out.stdout)
    assert set(report["ratios"]) == {
        "throughput (gateway/relay)",
        "holder_peak_rss_mb",
        "requester_peak_rss_mb",
    }
    assert all(r["value"] > 0 for r in report["ratios"].values())
    assert report["rows"]["gateway"]["chunks"] == report["rows"]["relay"]["chunks"] > 0
