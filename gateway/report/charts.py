"""The audit report's charts: matplotlib (Agg, no display) into PNG data URIs.

Owns: one function per chart, each returning ``Chart`` (title, alt text and
an ``data:image/png;base64,...`` URI the HTML embeds, so the file needs no
network and no side files). Labels are codes (jurisdictions, datasets,
purposes) and reasons, drawn as plain text (never mathtext: a "$" in a reason is a
dollar sign); CJK fonts are used when the system has one.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import textwrap
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from gateway.ledger.show import CST
from gateway.report.model import Breakdown, BudgetSeries

COLOURS = {
    "transfer": "#2e7d32",
    "refusal": "#c62828",
    "stats_release": "#1565c0",
    "stats_refusal": "#ef6c00",
}
LABELS = {
    "transfer": "records transferred",
    "refusal": "records refused",
    "stats_release": "statistics released",
    "stats_refusal": "statistics refused",
}
_CJK = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Source Han Sans SC",
)


def _fonts() -> None:
    have = {f.name for f in font_manager.fontManager.ttflist}
    plt.rcParams["font.family"] = ["DejaVu Sans", *(f for f in _CJK if f in have)]
    plt.rcParams["axes.spines.top"] = False
    plt.rcParams["axes.spines.right"] = False
    # Labels are ledger values (a refusal reason is a peer's text): shown as written,
    # never parsed as mathtext, where "$\frac{a}{b$" raises and would stop the report.
    plt.rcParams["text.parse_math"] = False


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    alt: str
    data_uri: str


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # Without a CJK font installed, Chinese text in a label draws as boxes;
        # that is cosmetic, not something to warn about on every chart.
        warnings.filterwarnings(
            "ignore", message="Glyph .* missing from font", category=UserWarning
        )
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _num(timestamp_ms: int) -> float:
    when = dt.datetime.fromtimestamp(timestamp_ms / 1000, CST)
    return float(mdates.date2num(when))  # type: ignore[no-untyped-call]


def _empty(ax: Axes, text: str = "nothing recorded") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#777")
    ax.set_xticks([])
    ax.set_yticks([])


def stacked_bars(key: str, title: str, b: Breakdown, horizontal: bool, limit: int = 20) -> Chart:
    _fonts()
    cats = list(b.categories[:limit])
    height = max(2.6, 0.38 * len(cats) + 1.2) if horizontal else 3.4
    fig, ax = plt.subplots(figsize=(8.6, height))
    if not cats:
        _empty(ax)
    else:
        base = [0] * len(cats)
        for outcome, colour in COLOURS.items():
            vals = [b.counts.get(outcome, {}).get(c, 0) for c in cats]
            if not any(vals):
                continue
            if horizontal:
                ax.barh(cats, vals, left=base, color=colour, label=LABELS[outcome])
            else:
                ax.bar(cats, vals, bottom=base, color=colour, label=LABELS[outcome])
            base = [x + y for x, y in zip(base, vals, strict=True)]
        counts = ax.xaxis if horizontal else ax.yaxis
        counts.set_major_locator(MaxNLocator(integer=True))
        if horizontal:
            ax.invert_yaxis()
            ax.set_xlabel("exchanges")
        else:
            ax.set_ylabel("exchanges")
            ax.tick_params(axis="x", rotation=45 if len(cats) > 6 else 0)
        ax.legend(frameon=False, fontsize=8, loc="best")
    ax.set_title(title, loc="left", fontsize=11)
    total = ", ".join(f"{c}: {b.total(c)}" for c in cats[:8])
    return Chart(key, title, f"{title}. {total}", _png(fig))


def reasons_chart(reasons: Sequence[tuple[str, int]], limit: int = 12) -> Chart:
    _fonts()
    top = list(reasons[:limit])
    title = "Refusals by reason"
    fig, ax = plt.subplots(figsize=(8.6, max(2.4, 0.62 * len(top) + 1.0)))
    if not top:
        _empty(ax, "no refusals")
    else:
        labels = [textwrap.fill(r, 44, max_lines=2, placeholder="…") for r, _ in top]
        ax.barh(labels, [n for _, n in top], color=COLOURS["refusal"])
        ax.invert_yaxis()
        ax.set_xlabel("refusals")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(axis="y", labelsize=8)
    ax.set_title(title, loc="left", fontsize=11)
    alt = "; ".join(f"{r}: {n}" for r, n in top)
    return Chart("reasons", title, f"{title}. {alt}", _png(fig))


def budget_chart(series: Sequence[BudgetSeries]) -> Chart:
    _fonts()
    title = "Privacy budget spent over time (cumulative ε, per holder, dataset and requester)"
    fig, ax = plt.subplots(figsize=(8.6, 3.6))
    if not series:
        _empty(ax, "no statistics released")
    else:
        for s in series:
            xs = [_num(t) for t, _ in s.points]
            ys = [v for _, v in s.points]
            ax.step(xs, ys, where="post", marker="o", markersize=3, label=s.label)
        ax.set_ylabel("ε spent")
        first = min(s.points[0][0] for s in series)
        last = max(s.points[-1][0] for s in series)
        fmt = "%H:%M:%S" if last - first < 3_600_000 else "%m-%d %H:%M"
        ax.xaxis.set_major_formatter(mdates.DateFormatter(fmt, tz=CST))  # type: ignore[no-untyped-call]
        ax.set_xlabel("time (CST)")
        ax.tick_params(axis="x", rotation=30, labelsize=8)
        ax.legend(frameon=False, fontsize=7, loc="upper left")
    ax.set_title(title, loc="left", fontsize=11)
    alt = "; ".join(f"{s.label}: ε {s.spent:g}" for s in series)
    return Chart("budget", title, f"{title}. {alt}", _png(fig))
