"""Protobuf <-> domain conversion for the statistics messages (stats.proto).

Owns: turning ``StatsQuery``/``StatsRelease``/... messages into the frozen
domain values of ``gateway.stats.model`` and back, with structural validation
of everything that arrives (service systems and peers are untrusted): sizes,
finiteness, shapes. Does not own: policy decisions, combination, transport.
"""

from __future__ import annotations

import math

from gateway import crypto
from gateway._proto.dataexchange.gateway.v1 import common_pb2, stats_pb2
from gateway.errors import InvalidArgument
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.stats.model import (
    Cell,
    FederatedAnswer,
    FederatedQuery,
    HolderAnswer,
    NoiseComponent,
    Release,
    Remaining,
    Statistic,
    StatsFilter,
    StatsQuery,
)

_KIND_TO_STAT: dict[int, Statistic] = {
    stats_pb2.STATISTIC_KIND_COUNT: Statistic.COUNT,
    stats_pb2.STATISTIC_KIND_SUM: Statistic.SUM,
    stats_pb2.STATISTIC_KIND_MEAN: Statistic.MEAN,
    stats_pb2.STATISTIC_KIND_QUANTILE: Statistic.QUANTILE,
    stats_pb2.STATISTIC_KIND_MEDIAN: Statistic.MEDIAN,
    stats_pb2.STATISTIC_KIND_HISTOGRAM: Statistic.HISTOGRAM,
}
_STAT_TO_KIND: dict[Statistic, int] = {v: k for k, v in _KIND_TO_STAT.items()}


def statistic_from_proto(kind: int) -> Statistic:
    try:
        return _KIND_TO_STAT[kind]
    except KeyError:
        raise InvalidArgument.expected(
            "statistic", "one of COUNT, SUM, MEAN, QUANTILE, MEDIAN, HISTOGRAM", kind
        ) from None


def statistic_to_proto(s: Statistic) -> int:
    return _STAT_TO_KIND[s]


def query_from_proto(pb: stats_pb2.StatsQuery, limits: Limits) -> StatsQuery:
    if len(pb.group_by) > limits.max_stats_group_by:
        raise InvalidArgument.expected(
            "group_by", f"at most {limits.max_stats_group_by} columns", len(pb.group_by)
        )
    if len(pb.filters) > limits.max_stats_filters:
        raise InvalidArgument.expected(
            "filters", f"at most {limits.max_stats_filters}", len(pb.filters)
        )
    for f in pb.filters:
        if len(f.values) > limits.max_stats_filter_values:
            raise InvalidArgument.expected(
                f"filter {f.column[:64]!r} values",
                f"at most {limits.max_stats_filter_values}",
                len(f.values),
            )
    return StatsQuery(
        dataset=pb.dataset,
        purpose=pb.purpose,
        statistic=statistic_from_proto(pb.statistic),
        epsilon=pb.epsilon,
        confidence=pb.confidence,
        column=pb.column,
        group_by=tuple(pb.group_by),
        filters=tuple(StatsFilter(f.column, tuple(f.values), limits) for f in pb.filters),
        quantile=pb.quantile,
        candidates=tuple(pb.candidates),
        bin_edges=tuple(pb.bin_edges),
        limits=limits,
    )


def query_to_proto(q: StatsQuery) -> stats_pb2.StatsQuery:
    return stats_pb2.StatsQuery(
        dataset=q.dataset,
        purpose=q.purpose,
        statistic=statistic_to_proto(q.statistic),  # type: ignore[arg-type]
        column=q.column,
        group_by=list(q.group_by),
        filters=[stats_pb2.StatsFilter(column=f.column, values=list(f.values)) for f in q.filters],
        epsilon=q.epsilon,
        confidence=q.confidence,
        quantile=q.quantile,
        candidates=list(q.candidates),
        bin_edges=list(q.bin_edges),
    )


def federated_from_proto(
    pb: stats_pb2.StatsQueryRequest, limits: Limits = DEFAULT_LIMITS
) -> FederatedQuery:
    if not pb.HasField("query"):
        raise InvalidArgument.expected("query", "a StatsQuery", None)
    if len(pb.jurisdictions) > limits.max_stats_jurisdictions:
        raise InvalidArgument.expected(
            "jurisdictions", f"at most {limits.max_stats_jurisdictions}", len(pb.jurisdictions)
        )
    return FederatedQuery(
        tuple(pb.jurisdictions), query_from_proto(pb.query, limits), pb.client_reference, limits
    )


def federated_to_proto(fq: FederatedQuery) -> stats_pb2.StatsQueryRequest:
    return stats_pb2.StatsQueryRequest(
        jurisdictions=list(fq.jurisdictions),
        query=query_to_proto(fq.query),
        client_reference=fq.client_reference,
    )


def component_to_proto(c: NoiseComponent) -> stats_pb2.NoiseComponent:
    return stats_pb2.NoiseComponent(
        name=c.name,
        mechanism=c.mechanism,
        scale=c.scale,
        accuracy=c.accuracy if c.accuracy is not None else 0.0,
        has_accuracy=c.accuracy is not None,
    )


def release_to_proto(r: Release) -> stats_pb2.StatsRelease:
    return stats_pb2.StatsRelease(
        jurisdictions=list(r.jurisdictions),
        dataset=r.dataset,
        statistic=statistic_to_proto(r.statistic),  # type: ignore[arg-type]
        column=r.column,
        group_by=list(r.group_by),
        epsilon=r.epsilon,
        delta=r.delta,
        confidence=r.confidence,
        components=[component_to_proto(c) for c in r.components],
        cells=[
            stats_pb2.StatsCell(
                key=list(c.key),
                value=c.value,
                lower=c.interval[0] if c.interval else 0.0,
                upper=c.interval[1] if c.interval else 0.0,
                has_interval=c.interval is not None,
                components=list(c.components),
            )
            for c in r.cells
        ],
        query_digest=r.query_digest,
        interval_method=r.interval_method,
        bounds=list(r.bounds) if r.bounds else [],
    )


def release_digest(r: Release, suite: crypto.Suite = crypto.INTL) -> str:
    """Hex digest (the federation suite's hash: SHA-256, or SM3 for gm) of the
    release's deterministic protobuf bytes (the ledger's payload digest)."""
    return suite.digest(release_to_proto(r).SerializeToString(deterministic=True)).hex()


def _finite(what: str, x: float) -> float:
    if not math.isfinite(x):
        raise InvalidArgument.expected(what, "a finite number", x)
    return float(x)


def release_from_proto(pb: stats_pb2.StatsRelease, limits: Limits = DEFAULT_LIMITS) -> Release:
    """Parse a release received from a peer; structural checks only."""
    comps = tuple(
        NoiseComponent(
            c.name,
            c.mechanism,
            _finite("component scale", c.scale),
            _finite("component accuracy", c.accuracy) if c.has_accuracy else None,
        )
        for c in pb.components
    )
    if not 1 <= len(comps) <= 4:
        raise InvalidArgument.expected("release components", "1 to 4", len(comps))
    if len(pb.cells) > limits.max_stats_group_keys:
        raise InvalidArgument.expected(
            "release cells", f"at most {limits.max_stats_group_keys}", len(pb.cells)
        )
    cells: list[Cell] = []
    for c in pb.cells:
        if len(c.key) != len(pb.group_by):
            raise InvalidArgument.expected("cell key length", len(pb.group_by), len(c.key))
        if len(c.components) != len(comps):
            raise InvalidArgument.expected("cell components", len(comps), len(c.components))
        interval = (
            (_finite("cell lower", c.lower), _finite("cell upper", c.upper))
            if c.has_interval
            else None
        )
        cells.append(
            Cell(
                tuple(c.key),
                _finite("cell value", c.value),
                interval,
                tuple(_finite("cell component", v) for v in c.components),
            )
        )
    if len(pb.bounds) not in (0, 2):
        raise InvalidArgument.expected("release bounds", "0 or 2 numbers", len(pb.bounds))
    bounds = (_finite("bound", pb.bounds[0]), _finite("bound", pb.bounds[1])) if pb.bounds else None
    return Release(
        jurisdictions=tuple(pb.jurisdictions),
        dataset=pb.dataset,
        statistic=statistic_from_proto(pb.statistic),
        column=pb.column,
        group_by=tuple(pb.group_by),
        epsilon=_finite("epsilon", pb.epsilon),
        delta=_finite("delta", pb.delta),
        confidence=_finite("confidence", pb.confidence),
        components=comps,
        cells=tuple(cells),
        query_digest=pb.query_digest,
        interval_method=pb.interval_method,
        bounds=bounds,
    )


def remaining_to_proto(r: Remaining) -> stats_pb2.BudgetRemaining:
    return stats_pb2.BudgetRemaining(
        jurisdiction=r.jurisdiction,
        requester_epsilon=r.requester_epsilon,
        dataset_epsilon=r.dataset_epsilon,
    )


def remaining_from_proto(pb: stats_pb2.BudgetRemaining) -> Remaining:
    return Remaining(
        pb.jurisdiction,
        _finite("remaining epsilon", pb.requester_epsilon),
        _finite("remaining epsilon", pb.dataset_epsilon),
    )


def holder_answer_to_proto(a: HolderAnswer) -> stats_pb2.PeerStatsResponse:
    """The response body; the transport fills ``header`` and signs."""
    resp = stats_pb2.PeerStatsResponse(
        release=release_to_proto(a.release),
        remaining=remaining_to_proto(a.remaining),
        agreement_id=a.agreement_id,
        agreement_digest=a.agreement_digest,
        dry_run=a.dry_run,
        policy_set_digest=a.policy_set_digest,
        legal_basis=a.legal_basis,
        approval_id=a.approval_id,
    )
    if a.receipt_index is not None:
        resp.receipt.CopyFrom(
            common_pb2.LedgerReceipt(
                jurisdiction=a.release.jurisdictions[0],
                index=a.receipt_index,
                entry_hash=a.receipt_hash,
            )
        )
    return resp


def answer_to_proto(a: FederatedAnswer) -> stats_pb2.StatsQueryResponse:
    resp = stats_pb2.StatsQueryResponse(
        request_id=a.request_id,
        parts=[release_to_proto(p) for p in a.parts],
        has_combined=a.combined is not None,
        missing=[
            stats_pb2.MissingPart(jurisdiction=m.jurisdiction, code=m.code, reason=m.reason)
            for m in a.missing
        ],
        complete=a.complete,
        remaining=[remaining_to_proto(r) for r in a.remaining],
        receipts=[
            common_pb2.LedgerReceipt(
                jurisdiction=r.jurisdiction, index=r.index, entry_hash=r.entry_hash
            )
            for r in a.receipts
        ],
        dry_run=a.dry_run,
    )
    if a.combined is not None:
        resp.combined.CopyFrom(release_to_proto(a.combined))
    return resp
