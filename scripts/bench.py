#!/usr/bin/env python3
"""Benchmarks, printed as ratios against a baseline measured in the same run.

Usage: python scripts/bench.py PART [--json | --json-to FILE] [--quick] [--suite intl|gm]
       python scripts/bench.py exchange --soak [--soak-seconds S]
PART: exchange | policy | ledger | stats | bulk | sources | scale | subject | all

Each part lives in scripts/benchparts/PART.py with ``run(quick: bool) -> Report``.
A report is a table (rows of label -> figures) ending in ratio lines, each with
its target; ``--json`` prints the same figures as one JSON object instead,
``--json-to FILE`` writes that object to FILE as well as printing the tables. Timing is
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

PARTS = ("exchange", "policy", "ledger", "stats", "bulk", "sources", "scale", "subject")
SUITED = ("exchange", "ledger")  # parts measured per cipher suite


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=(*PARTS, "all"))
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    ap.add_argument(
        "--json-to",
        metavar="FILE",
        type=Path,
        help="print the tables and also write the JSON object to FILE (one run, both forms)",
    )
    ap.add_argument(
        "--quick", action="store_true", help="smaller sizes (a smoke run, not the figures)"
    )
    ap.add_argument(
        "--suite",
        choices=("intl", "gm"),
        default="intl",
        help="cipher suite for exchange and ledger; gm also measures intl for the gm/intl ratio",
    )
    ap.add_argument(
        "--soak",
        action="store_true",
        help="exchange only: 5 minutes at 80%% of peak throughput, RSS after 1 minute vs at the end",
    )
    ap.add_argument("--soak-seconds", type=float, default=300.0, help="length of the soak run")
    ns = ap.parse_args()
    if ns.json and ns.json_to:
        ap.error("--json and --json-to are alternatives")
    if ns.soak:
        if ns.part != "exchange":
            ap.error("--soak applies to the exchange part only")
        from benchparts.exchange import run_soak

        report = run_soak(ns.soak_seconds, quick=ns.quick)
        if not ns.json:
            report.print()
        _emit_json({"exchange": report}, ns)
        return 0
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
    _emit_json(reports, ns)
    return 0


def _emit_json(reports: dict[str, Report], ns: argparse.Namespace) -> None:
    """The reports as one JSON object (one part: its report; ``all``: keyed by part),
    printed with ``--json`` or written to the ``--json-to`` file."""
    if not (ns.json or ns.json_to):
        return
    obj = {p: r.to_json() for p, r in reports.items()}
    text = json.dumps(
        obj if len(obj) > 1 else next(iter(obj.values())), indent=2, ensure_ascii=False
    )
    if ns.json:
        print(text)
    else:
        ns.json_to.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
