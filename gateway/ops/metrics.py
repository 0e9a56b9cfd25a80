"""Prometheus metrics of one gateway (prometheus-client).

Owns: the gateway's own ``CollectorRegistry`` (several gateways may share a
process in tests; nothing goes to the global registry), the RPC counters and
latency histograms the observing interceptor and the outbound transport
update, and ``StateCollector``, which reads ledger, witness, budget, replay
and quota state (through the stores: on PostgreSQL, the shared database's) and
whether this process holds the signing lease when Prometheus scrapes (so the figures are never stale and
the hot path pays nothing for them).

Labels are identifiers only (API method, port, status code, counterparty
jurisdiction, dataset code, requester service system): bounded sets taken
from the trust bundle, the catalogue and the registered service systems, never
subject ids or free text. A caller-supplied dataset that is not in the
catalogue is counted as ``other``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("gateway.metrics")

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

# Latency buckets (seconds) spanning a sub-millisecond health check to a
# federated statistic over a slow link.
BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


@dataclass(frozen=True)
class BudgetFigure:
    dataset: str
    requester: str
    epsilon_remaining: float
    epsilon_spent: float


@dataclass(frozen=True)
class StateSources:
    """Where the scrape-time figures come from (callables: read when scraped)."""

    ledger_size: Callable[[], int]
    newest_checkpoint: Callable[[], tuple[int, int] | None]  # (issued ms, tree size)
    witnessed_sizes: Callable[[], dict[str, int]]
    budgets: Callable[[], Sequence[BudgetFigure]]
    store_rows: Callable[[], dict[str, int]]  # "replay", "quota" -> rows (unreadable: absent)
    now_ms: Callable[[], int]
    lease_held: Callable[[], bool] = lambda: True
    entry_ms: Callable[[int], int] = lambda index: 0  # the time entry ``index`` was recorded
    # Served dataset -> whether its source answers (readiness probe, reused briefly).
    sources_up: Callable[[], dict[str, bool]] = lambda: {}
    # The TLS certificate this process presents: when it expires (POSIX ms; None:
    # not reported), and whether it is the retired one of a key rotation.
    own_certificate_not_after_ms: int | None = None
    own_certificate_retired: Callable[[], bool] = lambda: False


class StateCollector(Collector):
    """Figures read from the gateway's stores at scrape time."""

    def __init__(self, jurisdiction: str, sources: StateSources) -> None:
        self._me = jurisdiction
        self._src = sources

    def describe(self) -> Iterable[Metric]:
        return []  # figures are produced at collect time only

    def collect(self) -> Iterator[Metric]:
        # A store that does not answer now (a busy SQLite file, an unreachable
        # PostgreSQL) leaves its figures out of this scrape; the scrape itself
        # and every other figure still succeed (readiness says what is wrong).
        src = self._src
        entries = GaugeMetricFamily("gateway_ledger_entries", "Entries in this gateway's ledger.")
        age = GaugeMetricFamily(
            "gateway_ledger_checkpoint_age_seconds",
            "Seconds the oldest entry not covered by a signed checkpoint has waited for one "
            "(0 when the newest checkpoint covers every entry: an idle ledger needs none); "
            "absent before the first checkpoint.",
        )
        lag = GaugeMetricFamily(
            "gateway_witness_lag_entries",
            "Ledger entries not yet covered by a checkpoint the peer has cosigned.",
            labels=["peer"],
        )
        seen = GaugeMetricFamily(
            "gateway_witness_cosigned_size",
            "Largest tree size of this ledger the peer has cosigned.",
            labels=["peer"],
        )
        try:
            size = src.ledger_size()
            entries.add_metric([], size)
            newest = src.newest_checkpoint()
            if newest is not None:
                issued_ms, covered = newest
                # An idle ledger (a new gateway's empty one, or no traffic overnight)
                # is not signed again: its checkpoint ages, but nothing is waiting.
                # After an idle spell the wait starts with the first new entry.
                waited = 0.0
                if covered < size:
                    since = max(issued_ms, src.entry_ms(covered))
                    waited = max(0.0, (src.now_ms() - since) / 1000.0)
                age.add_metric([], waited)
            for peer, cosigned in sorted(src.witnessed_sizes().items()):
                lag.add_metric([peer], max(0, size - cosigned))
                seen.add_metric([peer], cosigned)
        except Exception as exc:
            log.warning("metrics: ledger store unreadable: %s", exc, extra={"event": "metrics"})
        yield entries
        yield age
        yield lag
        yield seen
        remaining = GaugeMetricFamily(
            "gateway_privacy_budget_remaining_epsilon",
            "Epsilon a requester may still spend on a dataset (the lower of its own and the "
            "dataset's total cap).",
            labels=["requester", "dataset"],
        )
        spent = GaugeMetricFamily(
            "gateway_privacy_budget_spent_epsilon",
            "Epsilon a requester has spent on a dataset.",
            labels=["requester", "dataset"],
        )
        try:
            for b in src.budgets():
                remaining.add_metric([b.requester, b.dataset], b.epsilon_remaining)
                spent.add_metric([b.requester, b.dataset], b.epsilon_spent)
        except Exception as exc:  # a scrape must not fail because one store is busy
            log.warning("metrics: budget store unreadable: %s", exc, extra={"event": "metrics"})
        yield remaining
        yield spent
        stores = GaugeMetricFamily(
            "gateway_store_rows",
            "Rows in the gateway's stores (on PostgreSQL: the database its replicas share).",
            labels=["store"],
        )
        for name, n in sorted(src.store_rows().items()):
            stores.add_metric([name], n)
        yield stores
        up = GaugeMetricFamily(
            "gateway_dataset_source_up",
            "1 if the source of a served dataset answers a one-row read, 0 if it cannot be "
            "served now (the other datasets are).",
            labels=["dataset"],
        )
        try:
            for dataset, ok in sorted(src.sources_up().items()):
                up.add_metric([dataset], 1 if ok else 0)
        except Exception as exc:
            log.warning("metrics: sources unreadable: %s", exc, extra={"event": "metrics"})
        yield up
        yield GaugeMetricFamily(
            "gateway_signing_lease_held",
            "1 if this process holds the checkpoint-signing lease (always, on SQLite).",
            value=1 if src.lease_held() else 0,
        )
        if src.own_certificate_not_after_ms is not None:
            yield GaugeMetricFamily(
                "gateway_own_certificate_expiry_seconds",
                "Seconds until the TLS certificate this gateway presents expires (negative "
                "once it has).",
                value=(src.own_certificate_not_after_ms - src.now_ms()) / 1000.0,
            )
            yield GaugeMetricFamily(
                "gateway_own_certificate_retired",
                "1 if the TLS certificate this gateway presents is the retired one of a key "
                "rotation (peers trust it only until the overlap ends): restart it.",
                value=1 if src.own_certificate_retired() else 0,
            )


OTHER: Final = "other"


class KnownLabels:
    """Bounds label values to what the trust bundle names: members and their datasets.

    A caller can put any well-formed code in a request; counting it as its own
    label value would let one service system grow the metrics without bound.
    """

    def __init__(self, members: Callable[[], Iterable[tuple[str, Iterable[str]]]]) -> None:
        self._members = members
        self._cache: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())
        self._stamp: object = None

    def _sets(self) -> tuple[frozenset[str], frozenset[str]]:
        members = tuple((j, tuple(ds)) for j, ds in self._members())
        if members != self._stamp:
            self._stamp = members
            self._cache = (
                frozenset(j for j, _ in members),
                frozenset(d for _, ds in members for d in ds),
            )
        return self._cache

    def counterparty(self, value: str) -> str:
        if not value:
            return ""
        known = self._sets()[0]
        parts = value.split(",")
        return value if all(p in known for p in parts) else OTHER

    def dataset(self, value: str) -> str:
        return value if not value or value in self._sets()[1] else OTHER


class GatewayMetrics:
    """The registry of one gateway and the instruments its edges update."""

    def __init__(self, jurisdiction: str, known: KnownLabels | None = None) -> None:
        self.jurisdiction = jurisdiction
        self.known = known or KnownLabels(lambda: ())
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "gateway_requests",
            "RPCs served, by API method, port, outcome, gRPC status code, counterparty and dataset.",
            ["api", "port", "outcome", "code", "counterparty", "dataset"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gateway_hop_duration_seconds",
            "Latency per hop: 'service' (service system to this gateway, whole exchange), "
            "'peer' (a peer's request served here), 'outbound' (this gateway's call to a peer).",
            ["hop", "api"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.outbound = Counter(
            "gateway_peer_calls",
            "Calls this gateway made to peers, by peer, method and result.",
            ["peer", "api", "result"],
            registry=self.registry,
        )
        self.ledger_appends = Counter(
            "gateway_ledger_appends",
            "Ledger entries written, by kind and decision.",
            ["kind", "decision", "counterparty", "dataset"],
            registry=self.registry,
        )
        self._state: StateCollector | None = None

    def watch_state(self, sources: StateSources) -> None:
        if self._state is not None:
            self.registry.unregister(self._state)
        self._state = StateCollector(self.jurisdiction, sources)
        self.registry.register(self._state)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric, as served on /metrics."""
        return bytes(generate_latest(self.registry))

    def time_outbound(self, peer: str, api: str) -> _OutboundTimer:
        return _OutboundTimer(self, peer, api)


class _OutboundTimer:
    def __init__(self, metrics: GatewayMetrics, peer: str, api: str) -> None:
        self._m, self._peer, self._api = metrics, peer, api
        self._t0 = 0.0

    def __enter__(self) -> _OutboundTimer:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self._m.latency.labels("outbound", self._api).observe(time.perf_counter() - self._t0)
        result = "ok" if exc_type is None else exc_type.__name__
        self._m.outbound.labels(self._peer, self._api, result).inc()
