"""Shared report format and timing helpers for the benchmark parts."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Ratio:
    name: str
    value: float
    target: str  # e.g. "<= 1.5", ">= 0.6"

    @property
    def met(self) -> bool:
        op, bound = self.target.split()
        b = float(bound)
        return self.value <= b if op == "<=" else self.value >= b


@dataclass
class Report:
    title: str
    columns: list[str]
    rows: list[tuple[str, list[Any]]] = field(default_factory=list)
    ratios: list[Ratio] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self, label: str, *values: Any) -> None:
        self.rows.append((label, list(values)))

    def ratio(self, name: str, value: float, target: str) -> None:
        self.ratios.append(Ratio(name, value, target))

    def print(self) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=self.title, title_justify="left")
        table.add_column("")
        for c in self.columns:
            table.add_column(c, justify="right")
        for label, values in self.rows:
            table.add_row(label, *[_fmt(v) for v in values])
        console = Console(width=140)
        console.print(table)
        for n in self.notes:
            console.print(f"  note: {n}")
        for r in self.ratios:
            status = "met" if r.met else "NOT met"
            print(f"ratio {r.name}: {r.value:.3f} (target {r.target}: {status})")
        print()

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "rows": {
                label: dict(zip(self.columns, values, strict=False)) for label, values in self.rows
            },
            "ratios": {
                r.name: {"value": r.value, "target": r.target, "met": r.met} for r in self.ratios
            },
            "notes": self.notes,
        }


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def percentile(samples: list[float], p: float) -> float:
    s = sorted(samples)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def time_calls(fn: Callable[[], object], n: int, warmup: int = 10) -> list[float]:
    """Run fn n times after warmup; return per-call seconds."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def median(samples: list[float]) -> float:
    return statistics.median(samples)
