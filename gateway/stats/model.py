"""Domain values of the statistics path: queries, releases, parts, budgets.

Owns: the frozen, validated ``StatsQuery`` (structural checks only: kinds,
ranges, sizes, identifier shapes), its canonical bytes and digest, and the
release/part values the engine, holder and coordinator exchange. Does not own:
whether a query is allowed (``gateway.stats.agreements``), computing releases
(``gateway.stats.engine``) or protobuf conversion (``gateway.stats.convert``).

Canonical bytes of a query (what ``query_digest`` hashes) are the UTF-8 JSON
of ``StatsQuery.canonical_dict()`` with sorted keys, no whitespace, numbers as
shortest round-trip decimals, prefixed by ``"jgw-stats-query-v1\\n"``. Filters
are sorted by column and their values sorted, so that equivalent queries get
one digest; group-by order is kept because it orders the result.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from enum import StrEnum

from gateway import identifiers
from gateway.crypto import sha256_hex
from gateway.errors import InvalidArgument
from gateway.limits import DEFAULT_LIMITS, Limits

DEFAULT_CANDIDATES = 101
CANONICAL_PREFIX = b"jgw-stats-query-v1\n"


class Statistic(StrEnum):
    COUNT = "count"
    SUM = "sum"
    MEAN = "mean"
    QUANTILE = "quantile"
    MEDIAN = "median"
    HISTOGRAM = "histogram"

    @property
    def needs_bounds(self) -> bool:
        return self in (Statistic.SUM, Statistic.MEAN, Statistic.QUANTILE, Statistic.MEDIAN)

    @property
    def combinable(self) -> bool:
        """Whether releases of several jurisdictions combine into one answer."""
        return self not in (Statistic.QUANTILE, Statistic.MEDIAN)


def _finite(what: str, value: float) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise InvalidArgument.expected(what, "a finite number", value)
    return float(value)


def _increasing(what: str, values: tuple[float, ...]) -> None:
    for i, v in enumerate(values):
        _finite(f"{what}[{i}]", v)
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise InvalidArgument.expected(what, "strictly increasing numbers", list(values))


@dataclass(frozen=True)
class StatsFilter:
    column: str
    values: tuple[str, ...]
    limits: Limits = field(default=DEFAULT_LIMITS, compare=False, repr=False)

    def __post_init__(self) -> None:
        identifiers.code(self.column, "filter column")
        if not self.values:
            raise InvalidArgument.expected(f"filter {self.column} values", "at least one", [])
        if len(self.values) > self.limits.max_stats_filter_values:
            raise InvalidArgument.expected(
                f"filter {self.column} values",
                f"at most {self.limits.max_stats_filter_values}",
                len(self.values),
            )
        if len(set(self.values)) != len(self.values):
            raise InvalidArgument(f"filter {self.column}: values repeat")
        for v in self.values:
            if not isinstance(v, str) or len(v) > self.limits.max_value_len:
                raise InvalidArgument.expected(f"filter {self.column} value", "short text", v)


@dataclass(frozen=True)
class StatsQuery:
    """One statistics question. Structural validation only (see module doc)."""

    dataset: str
    purpose: str
    statistic: Statistic
    epsilon: float
    confidence: float
    column: str = ""
    group_by: tuple[str, ...] = ()
    filters: tuple[StatsFilter, ...] = ()
    quantile: float = 0.0
    candidates: tuple[float, ...] = ()
    bin_edges: tuple[float, ...] = ()
    limits: Limits = field(default=DEFAULT_LIMITS, compare=False, repr=False)

    def __post_init__(self) -> None:
        identifiers.code(self.dataset, "dataset")
        identifiers.purpose(self.purpose)
        if not isinstance(self.statistic, Statistic):
            raise InvalidArgument.expected("statistic", "a statistic kind", self.statistic)
        eps = _finite("epsilon", self.epsilon)
        if not eps > 0:
            raise InvalidArgument.expected("epsilon", "a number > 0", self.epsilon)
        conf = _finite("confidence", self.confidence)
        if not 0 < conf < 1:
            raise InvalidArgument.expected("confidence", "a level in (0, 1), e.g. 0.95", conf)
        for g in self.group_by:
            identifiers.code(g, "group_by column")
        if len(set(self.group_by)) != len(self.group_by):
            raise InvalidArgument.expected("group_by", "distinct columns", list(self.group_by))
        cols = [f.column for f in self.filters]
        if len(set(cols)) != len(cols):
            raise InvalidArgument.expected("filters", "one filter per column", cols)
        s = self.statistic
        if s is Statistic.COUNT:
            if self.column:
                raise InvalidArgument.expected("column", "empty for a count", self.column)
        else:
            identifiers.code(self.column, "column")
            if self.column in self.group_by:
                raise InvalidArgument(f"column {self.column} is also a group_by column")
        if s is Statistic.QUANTILE:
            q = _finite("quantile", self.quantile)
            if not 0 < q < 1:
                raise InvalidArgument.expected("quantile", "a number in (0, 1)", q)
        elif self.quantile != 0:
            raise InvalidArgument.expected(
                "quantile", "0 unless statistic is quantile", self.quantile
            )
        if self.candidates:
            if s not in (Statistic.QUANTILE, Statistic.MEDIAN):
                raise InvalidArgument("candidates are only for quantile and median")
            if len(self.candidates) > self.limits.max_stats_candidates:
                raise InvalidArgument.expected(
                    "candidates",
                    f"at most {self.limits.max_stats_candidates}",
                    len(self.candidates),
                )
            _increasing("candidates", self.candidates)
        if self.bin_edges:
            if s is not Statistic.HISTOGRAM:
                raise InvalidArgument("bin_edges are only for histograms")
            if not 2 <= len(self.bin_edges) <= self.limits.max_stats_bin_edges:
                raise InvalidArgument.expected(
                    "bin_edges",
                    f"between 2 and {self.limits.max_stats_bin_edges} edges",
                    len(self.bin_edges),
                )
            _increasing("bin_edges", self.bin_edges)

    @property
    def median_or_quantile(self) -> float:
        return 0.5 if self.statistic is Statistic.MEDIAN else self.quantile

    def canonical_dict(self) -> dict[str, object]:
        return {
            "dataset": self.dataset,
            "purpose": self.purpose,
            "statistic": self.statistic.value,
            "column": self.column,
            "group_by": list(self.group_by),
            "filters": [
                {"column": f.column, "values": sorted(f.values)}
                for f in sorted(self.filters, key=lambda f: f.column)
            ],
            "epsilon": self.epsilon,
            "confidence": self.confidence,
            "quantile": self.quantile,
            "candidates": list(self.candidates),
            "bin_edges": list(self.bin_edges),
        }

    def canonical_bytes(self) -> bytes:
        text = json.dumps(
            self.canonical_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        return CANONICAL_PREFIX + text.encode("utf-8")

    @property
    def digest(self) -> str:
        """Hex SHA-256 over the canonical bytes."""
        return sha256_hex(self.canonical_bytes())


@dataclass(frozen=True)
class NoiseComponent:
    name: str  # "value", or "sum"/"count" for means
    mechanism: str  # e.g. "integer_laplace"
    scale: float
    accuracy: float | None  # half-width at the release's confidence; None if unavailable


@dataclass(frozen=True)
class Cell:
    key: tuple[str, ...]
    value: float
    interval: tuple[float, float] | None
    components: tuple[float, ...]  # noisy component values, ordered as Release.components


@dataclass(frozen=True)
class Release:
    """A differentially private release (one holder's, or a combination)."""

    jurisdictions: tuple[str, ...]
    dataset: str
    statistic: Statistic
    column: str
    group_by: tuple[str, ...]  # key columns of each cell
    epsilon: float
    delta: float
    confidence: float
    components: tuple[NoiseComponent, ...]
    cells: tuple[Cell, ...]
    query_digest: str
    interval_method: str = ""
    bounds: tuple[float, float] | None = None  # declared bounds of the measured column


@dataclass(frozen=True)
class Remaining:
    jurisdiction: str
    requester_epsilon: float
    dataset_epsilon: float


@dataclass(frozen=True)
class HolderAnswer:
    """What a holder returns for one (possibly dry-run) request."""

    release: Release
    remaining: Remaining
    agreement_id: str
    agreement_digest: str
    dry_run: bool
    receipt_index: int | None = None
    receipt_hash: str = ""
    policy_set_digest: str = ""
    legal_basis: str = ""
    approval_id: str = ""


@dataclass(frozen=True)
class Missing:
    jurisdiction: str
    code: str  # gRPC status code name
    reason: str


@dataclass(frozen=True)
class LocalReceipt:
    jurisdiction: str
    index: int
    entry_hash: str


@dataclass(frozen=True)
class FederatedAnswer:
    request_id: str
    parts: tuple[Release, ...]
    combined: Release | None
    missing: tuple[Missing, ...]
    remaining: tuple[Remaining, ...]
    receipts: tuple[LocalReceipt, ...] = ()
    dry_run: bool = False

    @property
    def complete(self) -> bool:
        return not self.missing


@dataclass(frozen=True)
class FederatedQuery:
    jurisdictions: tuple[str, ...]
    query: StatsQuery
    client_reference: str = ""
    limits: Limits = field(default=DEFAULT_LIMITS, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.jurisdictions:
            raise InvalidArgument.expected("jurisdictions", "at least one", [])
        if len(self.jurisdictions) > self.limits.max_stats_jurisdictions:
            raise InvalidArgument.expected(
                "jurisdictions",
                f"at most {self.limits.max_stats_jurisdictions}",
                len(self.jurisdictions),
            )
        for j in self.jurisdictions:
            identifiers.jurisdiction(j, "jurisdiction")
        if len(set(self.jurisdictions)) != len(self.jurisdictions):
            raise InvalidArgument.expected("jurisdictions", "no repeats", list(self.jurisdictions))
        identifiers.client_reference(self.client_reference)
