"""The differential-privacy engine: a validated query -> an OpenDP measurement -> a release.

Owns: checking a query against the catalogue (declared domains and bounds) and
the agreement terms (``plan_query``); building the OpenDP Polars measurement
and calibrating its noise to exactly the requested epsilon (``calibrate``,
data independent: bounds, group keys and row bounds come from the catalogue
and the agreement, never from data); refusing data with more rows than the
agreement's ``max_rows`` (``check_rows``: OpenDP assumes the bound and does
not check it); running it once over the data (``execute``); reporting
mechanism, scale and confidence intervals.

Does not own: who may ask (``gateway.stats.agreements``), budgets
(``gateway.stats.budget``), ledgers or transport (``gateway.stats.holder``).

OpenDP features: only ``contrib`` is enabled (the Polars integration and
``make_private_lazyframe`` live there; they are not yet formally vetted by the
OpenDP project). ``honest-but-curious`` (would allow re-evaluating a released
OnceFrame or trusting caller-supplied functions) and ``idealized-numerics``
(would ignore floating-point error) are never enabled, and ``execute`` refuses
to run if anything in the process enabled them. Noise comes from OpenDP's own
CSPRNG; it is deliberately not injectable.

How a query maps onto OpenDP (pure differential privacy, delta = 0):

* Rows are first mapped row by row, outside the measured plan, into a
  "prepared" frame: group/filter columns become Polars Enums over their
  declared domains (values outside the domain become null and fall out of
  every group), numeric histograms become Enum bin labels, measures are cast
  to Int64/Float64. A row-by-row map keeps the neighbouring relation
  (one person's rows map to one person's rows), so privacy is unaffected.
* Privacy unit: with ``truncate_by_identifier`` the measured plan keeps at
  most ``privacy_unit.max_rows`` rows per person identifier and the input
  metric is OpenDP's symmetric identifier distance (d_in = 1 person);
  otherwise the catalogue's ``max_rows`` is trusted (symmetric distance,
  d_in = max_rows).
* Filters are ``col == v1 | col == v2 ...`` inside the plan.
* Group keys are the cross product of the declared domains, joined with
  ``with_keys`` semantics: every key gets a cell, including empty ones, so
  nothing about which keys occur is revealed (no threshold, no delta).
* count/histogram: ``dp.len``; sum: ``dp.sum`` on rows where the measure is
  present; mean: noisy sum and noisy count of those rows, released separately
  (so jurisdictions can combine) and divided; quantile/median:
  ``dp.quantile`` over public candidates (exponential mechanism).
* Calibration: the measurement is built at global scale 1, its privacy map
  gives epsilon(1); Laplace and exponential mechanisms scale as 1/scale, so
  scale = epsilon(1)/epsilon, then nudged up until OpenDP's own map confirms
  the loss is <= epsilon (no binary search: ~3 measurement builds). The
  target is ``budget.eps_loss_bound(epsilon)``: at most the requested epsilon
  and at most the integer units the budget charges for it (for 0.1, the
  float just below 0.1), so a charge is never below the loss.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
from opendp.accuracy import discrete_laplacian_scale_to_accuracy, laplacian_scale_to_accuracy
from opendp.extras.polars import DPExpr, Margin, dp_len
from opendp.mod import GLOBAL_FEATURES, OpenDPException

from gateway.catalogue import Column, Dataset
from gateway.errors import (
    ConfigurationError,
    EnvironmentFailure,
    InvalidArgument,
    PolicyDenied,
    clip,
)
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.stats import _dp as dp  # not opendp.prelude: see gateway.stats._dp
from gateway.stats.agreements import DatasetTerms
from gateway.stats.budget import eps_loss_bound
from gateway.stats.model import (
    DEFAULT_CANDIDATES,
    Cell,
    NoiseComponent,
    Release,
    Statistic,
    StatsQuery,
)

FORBIDDEN_FEATURES = frozenset({"honest-but-curious", "idealized-numerics"})
dp.enable_features("contrib")

# Output/helper column names: catalogue names match ^[a-z]..., these cannot collide.
_PERSON = "__person"
_ROW = "__row"
_VALUE = "__value"
_SUM = "__sum"
_COUNT = "__count"

MECHANISMS = {
    "Integer Laplace": "integer_laplace",
    "Float Laplace": "float_laplace",
    "ExponentialMin": "exponential_min",
    "ExponentialMax": "exponential_max",
}


@dataclass(frozen=True)
class Plan:
    """A query checked against catalogue and agreement terms; data independent."""

    query: StatsQuery
    dataset: Dataset
    terms: DatasetTerms
    jurisdiction: str
    key_columns: tuple[str, ...]  # group_by (+ histogram column)
    key_domains: tuple[tuple[str, ...], ...]
    filter_domains: tuple[tuple[str, tuple[str, ...]], ...]  # filter column -> its domain
    measure: Column | None  # sum/mean/quantile/median/numeric histogram column
    bounds: tuple[float, float] | None
    candidates: tuple[float, ...]
    bin_labels: tuple[str, ...]

    @property
    def cell_count(self) -> int:
        return math.prod(len(d) for d in self.key_domains)


def _fmt(x: float) -> str:
    """Shortest round-trip decimal; integral values without a fraction."""
    return str(int(x)) if x.is_integer() and abs(x) < 2**53 else repr(x)


def bin_labels(edges: Sequence[float]) -> tuple[str, ...]:
    n = len(edges) - 1
    return tuple(
        f"[{_fmt(edges[i])},{_fmt(edges[i + 1])}{']' if i == n - 1 else ')'}" for i in range(n)
    )


def _key_column(ds: Dataset, name: str, what: str) -> Column:
    if name not in ds.column_names:
        raise InvalidArgument(f"{what}: dataset {ds.code} has no column {clip(repr(name))}")
    col = ds.column(name)
    if col.public_keys is None:
        raise InvalidArgument(
            f"{what}: column {clip(repr(name))} has no declared public domain; it cannot be "
            "grouped on or filtered by"
        )
    return col


def _measure_column(ds: Dataset, terms: DatasetTerms, name: str, what: str) -> Column:
    if name not in ds.column_names:
        raise InvalidArgument(f"{what}: dataset {ds.code} has no column {clip(repr(name))}")
    col = ds.column(name)
    if col.bounds is None:
        raise InvalidArgument(f"{what}: column {clip(repr(name))} has no declared bounds")
    if name not in terms.measures:
        raise PolicyDenied(
            f"{what}: the statistics agreement does not allow measuring {clip(repr(name))}"
        )
    return col


def _within(what: str, values: Sequence[float], bounds: tuple[float, float]) -> None:
    lo, hi = bounds
    bad = [v for v in values if not lo <= v <= hi]
    if bad:
        raise InvalidArgument.expected(what, f"values within the declared bounds [{lo}, {hi}]", bad)


def plan_query(
    query: StatsQuery,
    dataset: Dataset,
    terms: DatasetTerms,
    jurisdiction: str,
    limits: Limits = DEFAULT_LIMITS,
) -> Plan:
    """Check ``query`` against the catalogue and the agreement; refuse by default.

    InvalidArgument: undeclared column/key/filter/bounds, values outside a
    declared domain, too many cells. PolicyDenied: the agreement does not allow
    the statistic, group key, filter, measure, or epsilon.
    """
    if query.dataset != dataset.code or terms.dataset != dataset.code:
        raise InvalidArgument.expected("dataset", dataset.code, query.dataset)
    s = query.statistic
    if not terms.allows_statistic(s):
        raise PolicyDenied(f"the statistics agreement does not allow {s.value} on {dataset.code}")
    if query.epsilon > terms.per_query_cap:
        raise PolicyDenied(
            f"epsilon {query.epsilon} exceeds the agreement's per-query cap {terms.per_query_cap}"
        )
    if not any(math.isclose(query.confidence, c, abs_tol=1e-12) for c in terms.confidence_levels):
        raise InvalidArgument.expected(
            "confidence", f"one of {list(terms.confidence_levels)}", query.confidence
        )
    if dataset.privacy_unit is None:
        raise PolicyDenied(f"dataset {dataset.code} declares no privacy unit")

    keys: list[str] = []
    domains: list[tuple[str, ...]] = []
    for g in query.group_by:
        col = _key_column(dataset, g, "group_by")
        if g not in terms.group_by:
            raise PolicyDenied(
                f"group_by: the statistics agreement does not allow grouping on {clip(repr(g))}"
            )
        keys.append(g)
        domains.append(tuple(col.public_keys or ()))

    filters: list[tuple[str, tuple[str, ...]]] = []
    for f in query.filters:
        col = _key_column(dataset, f.column, "filter")
        if f.column not in terms.filters:
            raise PolicyDenied(
                f"filter: the statistics agreement does not allow filtering on {clip(repr(f.column))}"
            )
        domain = tuple(col.public_keys or ())
        outside = [v for v in f.values if v not in domain]
        if outside:
            raise InvalidArgument.expected(
                f"filter {f.column} values", "values of the declared domain", outside
            )
        filters.append((f.column, domain))

    measure: Column | None = None
    bounds: tuple[float, float] | None = None
    candidates: tuple[float, ...] = ()
    labels: tuple[str, ...] = ()
    if s.needs_bounds:
        measure = _measure_column(dataset, terms, query.column, "column")
        bounds = measure.bounds
        assert bounds is not None
        if measure.type == "integer":
            lo, hi = math.ceil(bounds[0]), math.floor(bounds[1])
            if lo >= hi:
                raise InvalidArgument(f"column {measure.name}: bounds contain too few integers")
            bounds = (float(lo), float(hi))
        if s in (Statistic.QUANTILE, Statistic.MEDIAN):
            if query.candidates:
                _within("candidates", query.candidates, bounds)
                candidates = query.candidates
            else:
                lo_f, hi_f = bounds
                step = (hi_f - lo_f) / (DEFAULT_CANDIDATES - 1)
                candidates = (*tuple(lo_f + i * step for i in range(DEFAULT_CANDIDATES - 1)), hi_f)
    elif s is Statistic.HISTOGRAM:
        if query.column not in dataset.column_names:
            raise InvalidArgument(
                f"column: dataset {dataset.code} has no column {clip(repr(query.column))}"
            )
        col = dataset.column(query.column)
        if col.public_keys is not None and not query.bin_edges:
            if query.column not in terms.group_by:
                raise PolicyDenied(
                    "histogram: the statistics agreement does not allow grouping on "
                    f"{clip(repr(query.column))}"
                )
            keys.append(query.column)
            domains.append(tuple(col.public_keys))
        else:
            if not query.bin_edges:
                raise InvalidArgument.expected(
                    "bin_edges", "at least 2 edges for a histogram of a numeric column", []
                )
            measure = _measure_column(dataset, terms, query.column, "histogram column")
            assert measure.bounds is not None
            _within("bin_edges", query.bin_edges, measure.bounds)
            bounds = measure.bounds
            labels = bin_labels(query.bin_edges)
            keys.append(query.column)
            domains.append(labels)

    if measure is not None and any(f.column == measure.name for f in query.filters):
        # The prepared frame holds one column per name: filtering would turn the
        # measured values into filter keys (a failed or empty release, after the
        # budget is spent), so refuse while nothing is spent.
        raise InvalidArgument(
            f"column {measure.name} is measured and cannot also be a filter of the same query"
        )
    plan = Plan(
        query=query,
        dataset=dataset,
        terms=terms,
        jurisdiction=jurisdiction,
        key_columns=tuple(keys),
        key_domains=tuple(domains),
        filter_domains=tuple(filters),
        measure=measure,
        bounds=bounds,
        candidates=candidates,
        bin_labels=labels,
    )
    if plan.cell_count > limits.max_stats_group_keys:
        raise InvalidArgument.expected(
            "group keys", f"at most {limits.max_stats_group_keys} cells", plan.cell_count
        )
    return plan


# ---------------------------------------------------------------------------
# Prepared frame (row-by-row, outside the measured plan)
# ---------------------------------------------------------------------------


def source_columns(plan: Plan) -> tuple[str, ...]:
    """Columns the engine reads from the data source."""
    cols = [*plan.key_columns, *(c for c, _ in plan.filter_domains)]
    if plan.measure is not None:
        cols.append(plan.measure.name)
    if plan.terms.truncate_by_identifier:
        assert plan.dataset.privacy_unit is not None
        cols.append(plan.dataset.privacy_unit.column)
    if not cols:  # an ungrouped, unfiltered count still needs the rows
        cols.append(plan.dataset.subject_column)
    return tuple(dict.fromkeys(cols))


def _enum_expr(name: str, domain: tuple[str, ...]) -> pl.Expr:
    text = pl.col(name).cast(pl.String)
    return (
        pl.when(text.is_in(list(domain)))
        .then(text)
        .otherwise(None)
        .cast(pl.Enum(list(domain)))
        .alias(name)
    )


def _histogram_expr(name: str, edges: tuple[float, ...], labels: tuple[str, ...]) -> pl.Expr:
    x = pl.col(name).cast(pl.Float64, strict=False)
    below, above = "__below", "__above"
    binned = x.cut(list(edges), labels=[below, *labels, above], left_closed=True).cast(pl.String)
    label = pl.when(x == edges[-1]).then(pl.lit(labels[-1])).otherwise(binned)  # last bin is closed
    return (
        pl.when(label.is_in(list(labels)))
        .then(label)
        .otherwise(None)
        .cast(pl.Enum(list(labels)))
        .alias(name)
    )


def prepare_frame(plan: Plan, frame: pl.LazyFrame) -> pl.LazyFrame:
    """Map source rows, one by one, into the frame the measurement reads."""
    exprs: list[pl.Expr] = []
    done: set[str] = set()
    domains = dict(zip(plan.key_columns, plan.key_domains, strict=True))
    domains.update(dict(plan.filter_domains))
    for name, domain in domains.items():
        if plan.bin_labels and plan.measure is not None and name == plan.measure.name:
            exprs.append(_histogram_expr(name, plan.query.bin_edges, plan.bin_labels))
        else:
            exprs.append(_enum_expr(name, domain))
        done.add(name)
    m = plan.measure
    if m is not None and m.name not in done:
        dtype = pl.Int64 if m.type == "integer" else pl.Float64
        exprs.append(pl.col(m.name).cast(dtype, strict=False).alias(m.name))
    if plan.terms.truncate_by_identifier:
        assert plan.dataset.privacy_unit is not None
        exprs.append(pl.col(plan.dataset.privacy_unit.column).cast(pl.String).alias(_PERSON))
    if not exprs:
        # A frame with no columns has no rows: keep one constant column so an
        # ungrouped, unfiltered count still counts rows.
        exprs.append(pl.col(plan.dataset.subject_column).is_null().cast(pl.Int64).alias(_ROW))
    return frame.select(exprs)


def _schema(plan: Plan) -> dict[str, pl.DataType]:
    schema: dict[str, pl.DataType] = {}
    domains = dict(zip(plan.key_columns, plan.key_domains, strict=True))
    domains.update(dict(plan.filter_domains))
    for name, domain in domains.items():
        schema[name] = pl.Enum(list(domain))
    m = plan.measure
    if m is not None and m.name not in schema:
        schema[m.name] = pl.Int64() if m.type == "integer" else pl.Float64()
    if plan.terms.truncate_by_identifier:
        schema[_PERSON] = pl.String()
    if not schema:
        schema[_ROW] = pl.Int64()
    return schema


def _series_domain(name: str, dtype: pl.DataType) -> Any:
    if isinstance(dtype, pl.Enum):
        inner = dp.enum_domain(pl.Series(dtype.categories.to_list()))
    elif dtype == pl.Int64:
        inner = dp.atom_domain(T="i64")
    elif dtype == pl.Float64:
        inner = dp.atom_domain(T="f64")
    else:
        inner = dp.atom_domain(T="String")
    return dp.series_domain(name, dp.option_domain(inner))


# ---------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibrated:
    plan: Plan
    measurement: Any  # opendp Measurement (LazyFrame -> OnceFrame)
    global_scale: float
    epsilon: float  # the requested epsilon, what is charged (OpenDP's map <= its units)
    components: tuple[NoiseComponent, ...]
    value_columns: tuple[str, ...]  # output column of each component

    @property
    def delta(self) -> float:
        return 0.0


def _dp(expr: pl.Expr) -> Any:
    """OpenDP's ``.dp`` expression namespace (untyped upstream)."""
    return DPExpr(expr)  # type: ignore[no-untyped-call]


def _aggregations(plan: Plan) -> list[tuple[str, pl.Expr]]:
    s = plan.query.statistic
    if s in (Statistic.COUNT, Statistic.HISTOGRAM):
        return [("value", dp_len(signed=True).alias(_VALUE))]
    m = plan.measure
    assert m is not None and plan.bounds is not None
    lo, hi = plan.bounds
    b: tuple[Any, Any] = (int(lo), int(hi)) if m.type == "integer" else (lo, hi)
    if s is Statistic.SUM:
        return [("value", _dp(pl.col(m.name)).sum(b).alias(_VALUE))]
    if s is Statistic.MEAN:
        return [
            ("sum", _dp(pl.col(m.name)).sum(b).alias(_SUM)),
            ("count", dp_len(signed=True).alias(_COUNT)),
        ]
    q = plan.query.median_or_quantile
    x = pl.col(m.name).cast(pl.Float64)
    return [("value", _dp(x).quantile(q, list(plan.candidates)).alias(_VALUE))]


def _lazy_plan(plan: Plan) -> pl.LazyFrame:
    lf = pl.LazyFrame(schema=_schema(plan))
    pu = plan.dataset.privacy_unit
    assert pu is not None
    if plan.terms.truncate_by_identifier:
        lf = lf.filter(pl.int_range(pl.len()).over(_PERSON) < pu.max_rows)
    for name, _ in plan.filter_domains:
        values = next(f.values for f in plan.query.filters if f.column == name)
        pred = pl.col(name) == values[0]
        for v in values[1:]:
            pred = pred | (pl.col(name) == v)
        lf = lf.filter(pred)
    if plan.measure is not None and not plan.bin_labels:
        lf = lf.filter(pl.col(plan.measure.name).is_not_null())
    aggs = [e for _, e in _aggregations(plan)]
    if not plan.key_columns:
        return lf.select(*aggs)
    keys = _keys_frame(plan)
    return keys.lazy().join(
        lf.group_by(*plan.key_columns).agg(*aggs),
        on=list(plan.key_columns),
        how="left",
        nulls_equal=True,
    )


def _keys_frame(plan: Plan) -> pl.DataFrame:
    frames = [
        pl.DataFrame({name: pl.Series(name, list(domain), dtype=pl.Enum(list(domain)))})
        for name, domain in zip(plan.key_columns, plan.key_domains, strict=True)
    ]
    out = frames[0]
    for f in frames[1:]:
        out = out.join(f, how="cross")
    return out


def _input(plan: Plan) -> tuple[Any, Any, int]:
    domain = dp.lazyframe_domain([_series_domain(n, t) for n, t in _schema(plan).items()])
    domain = dp.with_margin(domain, Margin(by=[], max_length=plan.terms.max_rows))
    pu = plan.dataset.privacy_unit
    assert pu is not None
    if plan.terms.truncate_by_identifier:
        return domain, dp.symmetric_id_distance(pl.col(_PERSON)), 1
    return domain, dp.symmetric_distance(), pu.max_rows


# OpenDP's Python bindings are not safe to enter from many threads at once (seen
# here: ctypes ``ArgumentError: 'AnyObjectPtr' object is not callable`` under 100
# concurrent queries). Every call into OpenDP goes through this lock; budgets are
# reserved before it, so serialising releases never risks overspending.
_OPENDP = threading.RLock()


def accuracy(mechanism: str, scale: float, alpha: float) -> float | None:
    """Half-width a such that |noise| <= a with probability >= 1 - alpha (None if unknown)."""
    with _OPENDP:
        if mechanism == "integer_laplace":
            return float(discrete_laplacian_scale_to_accuracy(scale, alpha))
        if mechanism == "float_laplace":
            return float(laplacian_scale_to_accuracy(scale, alpha))
    return None


def calibrate(plan: Plan) -> Calibrated:
    """Build the measurement spending exactly ``plan.query.epsilon`` (data independent)."""
    with _OPENDP:
        return _calibrate(plan)


def _calibrate(plan: Plan) -> Calibrated:
    domain, metric, d_in = _input(plan)
    eps = plan.query.epsilon
    # At most what the budget charges for ``eps`` (integer units), not only at
    # most ``eps``: the charge is then never below OpenDP's privacy loss.
    target = eps_loss_bound(eps)

    def make(scale: float) -> Any:
        return dp.m.make_private_lazyframe(
            domain, metric, dp.max_divergence(), _lazy_plan(plan), global_scale=scale
        )

    try:
        eps_at_1 = float(make(1.0).map(d_in))
        if not eps_at_1 > 0 or not math.isfinite(eps_at_1):
            raise EnvironmentFailure(f"OpenDP reported privacy loss {eps_at_1} at scale 1")
        scale = eps_at_1 / target
        m = make(scale)
        for i in range(40):
            if float(m.map(d_in)) <= target:
                break
            scale *= 1 + 2.0**-40 * 2**i
            m = make(scale)
        else:  # pragma: no cover - the privacy map is monotone in the scale
            raise EnvironmentFailure("could not calibrate the noise scale")
        summary = dp.summarize_polars_measurement(m)
    except OpenDPException as exc:
        raise InvalidArgument(f"OpenDP refused the query: {exc.message or exc}") from exc
    names = [n for n, _ in _aggregations(plan)]
    cols = [e.meta.output_name() for _, e in _aggregations(plan)]
    alpha = 1 - plan.query.confidence
    comps: list[NoiseComponent] = []
    by_col = {row["column"]: row for row in summary.iter_rows(named=True)}
    for name, col in zip(names, cols, strict=True):
        row = by_col.get(col)
        if row is None:
            raise EnvironmentFailure(f"OpenDP summary lacks component {name}")
        mech = MECHANISMS.get(
            row["distribution"], str(row["distribution"]).lower().replace(" ", "_")
        )
        sc = float(row["scale"])
        comps.append(NoiseComponent(name, mech, sc, accuracy(mech, sc, alpha)))
    return Calibrated(plan, m, scale, eps, tuple(comps), tuple(cols))


# ---------------------------------------------------------------------------
# Release
# ---------------------------------------------------------------------------


def _check_features() -> None:
    bad = FORBIDDEN_FEATURES & GLOBAL_FEATURES
    if bad:
        raise EnvironmentFailure(f"refusing to release: OpenDP features {sorted(bad)} are enabled")


def mean_cell(
    s: float, n: float, bounds: tuple[float, float], a_s: float | None, a_n: float | None
) -> tuple[float, tuple[float, float] | None]:
    """Mean estimate and interval from a noisy sum and count.

    ``a_s``/``a_n`` are half-widths that each hold with probability >= 1 - alpha/2,
    so the true (sum, count) lies in the box with probability >= 1 - alpha
    (union bound); the interval is the range of sum/count over that box,
    intersected with the bounds (a mean of clamped values lies within them).
    """
    lo, hi = bounds
    value = min(hi, max(lo, s / n)) if n >= 1 else (lo + hi) / 2
    if a_s is None or a_n is None:
        return value, None
    n_lo, n_hi = n - a_n, n + a_n
    if n_lo < 1:
        return value, (lo, hi)
    ratios = [x / y for x in (s - a_s, s + a_s) for y in (max(1.0, n_lo), n_hi)]
    return value, (max(lo, min(ratios)), min(hi, max(ratios)))


def build_cells(
    plan: Plan,
    components: tuple[NoiseComponent, ...],
    rows: dict[tuple[str, ...], tuple[float, ...]],
) -> tuple[Cell, ...]:
    """Cells in key-domain order from noisy component values per key."""
    s = plan.query.statistic
    alpha = 1 - plan.query.confidence
    cells: list[Cell] = []
    keys = list(itertools.product(*plan.key_domains)) if plan.key_columns else [()]
    for key in keys:
        vals = rows.get(tuple(key))
        if vals is None:
            raise EnvironmentFailure("OpenDP release lacks a declared group key")
        if s is Statistic.MEAN:
            assert plan.bounds is not None
            sc, cc = components
            value, interval = mean_cell(
                vals[0],
                vals[1],
                plan.bounds,
                accuracy(sc.mechanism, sc.scale, alpha / 2),
                accuracy(cc.mechanism, cc.scale, alpha / 2),
            )
        else:
            value = vals[0]
            a = components[0].accuracy
            interval = None if a is None else (value - a, value + a)
        cells.append(Cell(tuple(key), value, interval, vals))
    return tuple(cells)


def check_rows(plan: Plan, rows: int) -> None:
    """Refuse input of ``rows`` rows if it exceeds the agreement's ``max_rows``.

    OpenDP's bounds on floating-point and overflow error (and so its privacy
    map) assume at most ``max_rows`` rows; it does not check them. The message
    does not give ``rows``: the size of the data is itself a statistic.
    """
    if rows > plan.terms.max_rows:
        raise ConfigurationError(
            f"dataset {plan.dataset.code}: the holder's data exceed the max_rows its "
            "statistics agreement declares, so no differentially private release can be "
            "made; the holder's operator must raise max_rows for this dataset"
        )


def execute(cal: Calibrated, frame: pl.LazyFrame) -> Release:
    """Run the measurement once over ``frame`` (the source's rows) and build the release.

    ConfigurationError if ``frame`` holds more rows than the agreement's
    ``max_rows`` (``check_rows``; the holder checks this before reserving budget)."""
    _check_features()
    plan = cal.plan
    check_rows(plan, frame.select(pl.len()).collect().item())
    prepared = prepare_frame(plan, frame)
    try:
        with _OPENDP:
            df = cal.measurement(prepared).collect()
    except OpenDPException as exc:
        raise EnvironmentFailure(f"OpenDP failed to release: {exc.message or exc}") from exc
    rows: dict[tuple[str, ...], tuple[float, ...]] = {}
    for r in df.iter_rows(named=True):
        key = tuple(str(r[k]) for k in plan.key_columns)
        vals = tuple(r[c] for c in cal.value_columns)
        if any(v is None for v in vals):
            raise EnvironmentFailure("OpenDP release contains a null value")
        rows[key] = tuple(float(v) for v in vals)
    return make_release(cal, build_cells(plan, cal.components, rows))


def make_release(cal: Calibrated, cells: tuple[Cell, ...]) -> Release:
    plan = cal.plan
    method = {
        Statistic.MEAN: "noisy sum over noisy count; union bound over both intervals at alpha/2",
        Statistic.QUANTILE: "exponential mechanism over public candidates; no interval",
        Statistic.MEDIAN: "exponential mechanism over public candidates; no interval",
    }.get(plan.query.statistic, "noise distribution quantile (OpenDP accuracy)")
    return Release(
        jurisdictions=(plan.jurisdiction,),
        dataset=plan.dataset.code,
        statistic=plan.query.statistic,
        column=plan.query.column,
        group_by=plan.key_columns,
        epsilon=cal.epsilon,
        delta=cal.delta,
        confidence=plan.query.confidence,
        components=cal.components,
        cells=cells,
        query_digest=plan.query.digest,
        interval_method=method,
        bounds=plan.bounds,
    )


def dry_run_release(cal: Calibrated) -> Release:
    """The release's shape and accuracy without any values (nothing is computed)."""
    return make_release(cal, ())
