"""Benchmarks cannot rot: every ``scripts/bench.py`` part runs in ``--quick`` mode.

Each part is run as a user would run it (a subprocess of ``scripts/bench.py``),
once, printing its table and writing the same figures as JSON (``--json-to``);
``--json`` alone (only the JSON object on standard output) is checked on the
cheap policy part and by the gm-suite runs. The test checks the shape of
the output, never the figures: timing is not asserted (the ratios are reported
as met / NOT met by the benchmark itself). Select these alone with ``-m bench``,
or leave them out with ``-m "not bench"``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "scripts" / "bench.py"
RATIO_LINE = re.compile(
    r"^ratio (?P<name>.+): (?P<value>-?[0-9.]+|nan|inf) \(target (?P<target>[<>]= \S+): (met|NOT met)\)$"
)

sys.path.insert(0, str(ROOT / "scripts"))
from bench import PARTS  # noqa: E402

# One worker runs them all (``--dist loadgroup``): a part's module-scoped run is
# shared by its tests, and two benchmarks never compete for the cores.
pytestmark = [pytest.mark.bench, pytest.mark.xdist_group("bench")]


def _run(*args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, str(BENCH), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, (
        f"scripts/bench.py {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    )
    return proc.stdout


_RUNS: dict[str, tuple[str, str, dict[str, Any]]] = {}


@pytest.fixture(scope="module", params=PARTS)
def part(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, str, dict[str, Any]]:
    """One ``--quick`` run of the part, shared by its tests (kept here, not only in
    the fixture, because a worker may interleave the tests of several parts)."""
    name = str(request.param)
    if name in _RUNS:
        return _RUNS[name]
    env = None
    if name in ("scale", "sources"):  # need PostgreSQL: skipped (CI=true: failed) without one
        import os

        from tests.pgtest import postgres_dsn

        dsn = postgres_dsn()
        env = {**os.environ, "GATEWAY_BENCH_POSTGRES_DSN": dsn} if name == "scale" else None
    out = tmp_path_factory.mktemp(f"bench-{name}") / "report.json"
    table = _run(name, "--quick", "--json-to", str(out), env=env)
    _RUNS[name] = (name, table, json.loads(out.read_text(encoding="utf-8")))
    return _RUNS[name]


def test_every_part_prints_its_table_and_ratio_lines(
    part: tuple[str, str, dict[str, Any]],
) -> None:
    name, table, obj = part
    lines = table.rstrip("\n").splitlines()
    assert any(line.startswith("┏") for line in lines), f"{name}: no table printed"
    assert any(line.startswith("└") for line in lines), f"{name}: table not closed"
    for label in obj["rows"]:
        assert label in table, f"{name}: row {label!r} missing from the table"
    ratio_lines = [m for m in map(RATIO_LINE.fullmatch, lines) if m]
    assert ratio_lines, f"{name}: no ratio lines"
    # The table ends in its ratio lines, the same ones --json reports.
    assert RATIO_LINE.fullmatch(lines[-1]), f"{name}: output does not end in a ratio line"
    assert [m["name"] for m in ratio_lines] == list(obj["ratios"])


def test_every_part_prints_one_json_object_with_its_ratios(
    part: tuple[str, str, dict[str, Any]],
) -> None:
    name, _, obj = part
    assert isinstance(obj, dict)
    assert obj["title"] and obj["rows"], f"{name}: empty report"
    assert obj["ratios"], f"{name}: no ratios in --json output"
    for ratio, fig in obj["ratios"].items():
        assert isinstance(fig["value"], float | int), (name, ratio)
        assert re.fullmatch(r"[<>]= \S+", fig["target"]), (name, ratio)
        assert isinstance(fig["met"], bool), (name, ratio)


def test_json_flag_prints_the_json_object_and_nothing_else() -> None:
    stdout = _run("policy", "--quick", "--json")
    obj = json.loads(stdout)  # fails on anything printed besides the object
    assert obj["title"] and obj["rows"] and obj["ratios"]
    assert "┏" not in stdout


def test_json_and_json_to_together_are_refused(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "policy", "--json", "--json-to", str(tmp_path / "r.json")],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "alternatives" in proc.stderr
    assert not (tmp_path / "r.json").exists()


def test_unknown_part_is_refused_with_usage() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "nonsense"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr


def test_soak_is_refused_for_parts_other_than_exchange() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "ledger", "--soak"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "--soak applies to the exchange part only" in proc.stderr


@pytest.mark.parametrize("name", ["exchange", "ledger"])
def test_gm_suite_parts_report_the_gm_over_intl_ratios_in_the_same_run(name: str) -> None:
    obj = json.loads(_run(name, "--quick", "--json", "--suite", "gm"))
    assert "suite gm" in obj["title"]
    assert any(r.endswith("(gm/intl)") for r in obj["ratios"]), f"{name}: no gm/intl ratio"
    assert any(r.endswith("(gm/intl)") is False for r in obj["ratios"])  # and the usual ones
