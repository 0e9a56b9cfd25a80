#!/usr/bin/env python3
"""Benchmarks, printed as ratios against a baseline measured in the same run.

Usage: python scripts/bench.py PART [--json] [--quick] [--suite intl|gm]
PART: exchange | policy | ledger | stats | bulk | sources | all

Each part lives in scripts/benchparts/PART.py with ``run(quick: bool) -> Report``.
A report is a table (rows of label -> figures) ending in ratio lines, each with
its target; ``--json`` prints the same figures as one JSON object. Timing is
never asserted in tests: targets are shown here as met / NOT met.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchparts.common import Report

PARTS = ("exchange", "policy", "ledger", "stats", "bulk", "sources")
SUITED = ("exchange", "ledger")  # parts measured per cipher suite


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=(*PARTS, "all"))
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    ap.add_argument(
        "--quick", action="store_true", help="smaller sizes (a smoke run, not the figures)"
    )
    ap.add_argument(
        "--suite",
        choices=("intl", "gm"),
        default="intl",
        help="cipher suite for exchange and ledger; gm also measures intl for the gm/intl ratio",
    )
    ns = ap.parse_args()
    parts = PARTS if ns.part == "all" else (ns.part,)
    reports: dict[str, Report] = {}
    for part in parts:
        mod = importlib.import_module(f"benchparts.{part}")
        if part in SUITED:
            reports[part] = mod.run(quick=ns.quick, suite=ns.suite)
        else:
            reports[part] = mod.run(quick=ns.quick)
        if not ns.json:
            reports[part].print()
    if ns.json:
        obj = {p: r.to_json() for p, r in reports.items()}
        print(
            json.dumps(
                obj if len(obj) > 1 else next(iter(obj.values())), indent=2, ensure_ascii=False
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
