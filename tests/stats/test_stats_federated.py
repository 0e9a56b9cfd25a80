"""Federated statistics: fan-out, combination, coverage, missing parts, gRPC servicer."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from gateway._proto.dataexchange.gateway.v1 import stats_pb2, stats_pb2_grpc
from gateway.errors import BudgetExhausted, PeerUnavailable
from gateway.ledger.entry import validate_event
from gateway.ledger.events import AppendReceipt, LedgerEvent, list_details, read_list_details
from gateway.limits import DEFAULT_LIMITS
from gateway.server.interceptor import caller_from_context
from gateway.server.servicers.statistics import StatisticsServicer
from gateway.stats.convert import federated_to_proto, query_to_proto
from gateway.stats.coordinator import StatsCoordinator, combine
from gateway.stats.holder import StatsHolder
from gateway.stats.model import FederatedQuery, Statistic, StatsQuery
from tests.helpers import ServicePort, service_port
from tests.stats.conftest import MemoryLedger

CODES = ("110000", "120000", "130000")
SI = "si_contributions"


def q(statistic: Statistic = Statistic.COUNT, **kw: Any) -> StatsQuery:
    kw.setdefault("epsilon", 1.0)
    kw.setdefault("confidence", 0.9)
    return StatsQuery(dataset=SI, purpose="planning", statistic=statistic, **kw)


class Federation:
    """Three in-process holders behind a fan_out that mimics the transport."""

    def __init__(self, holders: dict[str, StatsHolder], local: str, ledger: Any) -> None:
        self.holders = holders
        self.down: set[str] = set()
        self.requests: list[stats_pb2.PeerStatsRequest] = []
        self.coordinator = StatsCoordinator(
            local_jurisdiction=local,
            fan_out=self.fan_out,
            ledger=ledger,
            clock_ms=lambda: int(time.time() * 1000),
        )
        self.local = local

    def fan_out(self, j: str, req: stats_pb2.PeerStatsRequest) -> stats_pb2.PeerStatsResponse:
        self.requests.append(req)
        if j in self.down:
            raise PeerUnavailable(f"gateway {j} unreachable")
        # What the transport does: serialise, verify, hand the holder the authenticated sender.
        wire = stats_pb2.PeerStatsRequest.FromString(req.SerializeToString())
        rid = str(uuid.uuid4())
        resp = self.holders[j].handle_peer(wire, requester=self.local, request_id=rid, now_ms=0)
        resp.header.request_id = rid
        return stats_pb2.PeerStatsResponse.FromString(resp.SerializeToString())


@pytest.fixture
def federation(make_holder: Callable[..., Any], ledger_cls: type) -> Iterator[Federation]:
    holders = {
        c: make_holder(c, budget={"epsilon_per_requester": 100.0, "epsilon_total": 100.0})[0]
        for c in CODES
    }
    fed = Federation(holders, "120000", ledger_cls())
    yield fed
    fed.coordinator.close()


def exact_sums(sources: dict[str, Path]) -> dict[str, float]:
    """Exact per-age-band sum of months_contributed over the three jurisdictions."""
    out: dict[str, float] = {}
    for c in CODES:
        with sqlite3.connect(sources[c]) as conn:
            seen: set[str] = set()
            for pid, band, months in conn.execute(
                f"SELECT person_id, age_band, months_contributed FROM {SI} ORDER BY rowid"
            ):
                if pid in seen:  # truncation: first row per person
                    continue
                seen.add(pid)
                out[band] = out.get(band, 0.0) + min(600, max(0, months))
    return out


def test_federated_count_combines_three_jurisdictions_with_intervals(
    federation: Federation,
) -> None:
    ans = federation.coordinator.query(
        FederatedQuery(CODES, q(group_by=("age_band",))), "tianjin-planning"
    )
    assert ans.complete and [p.jurisdictions for p in ans.parts] == [(c,) for c in CODES]
    comb = ans.combined
    assert comb is not None and comb.jurisdictions == CODES and len(comb.cells) == 6
    for i, cell in enumerate(comb.cells):
        assert cell.value == sum(p.cells[i].value for p in ans.parts)
        assert cell.interval is not None
        # Wider than any single part (union bound over 3 parts), centred on the value.
        part_half = ans.parts[0].components[0].accuracy
        assert cell.interval[1] - cell.value > part_half
    assert {r.jurisdiction for r in ans.remaining} == set(CODES)
    # Requester ledger: one release per part, all with the same query digest.
    events = federation.coordinator._ledger.events
    assert [e.counterparty for e in events] == list(CODES)
    assert all(e.kind == "stats_release" and e.role == "requester" for e in events)
    assert {dict(e.details)["query_digest"] for e in events} == {q(group_by=("age_band",)).digest}
    # Every holder ledgered its own release.
    for h in federation.holders.values():
        assert [e.kind for e in h._ledger.events] == ["stats_release"]


def test_federated_sum_lies_within_its_interval_at_the_stated_rate(
    federation: Federation, sources: dict[str, Path]
) -> None:
    exact = exact_sums(sources)
    query = q(Statistic.SUM, column="months_contributed", group_by=("age_band",), epsilon=1.0)
    misses = checks = 0
    for _ in range(40):
        ans = federation.coordinator.query(FederatedQuery(CODES, query), "tianjin-planning")
        assert ans.combined is not None
        for cell in ans.combined.cells:
            assert cell.interval is not None
            checks += 1
            misses += not cell.interval[0] <= exact.get(cell.key[0], 0.0) <= cell.interval[1]
    # Stated level 0.9: misses ~ Binomial(240, <= 0.1); mean <= 24, sd <= 4.7.
    # 24 + 6.4 sd = 54: exceeded with probability < 1e-9 if the intervals are right.
    assert checks == 240
    assert misses <= 54


def test_federated_mean_interval_contains_combined_estimate(federation: Federation) -> None:
    query = q(Statistic.MEAN, column="monthly_base", group_by=("gender",))
    ans = federation.coordinator.query(FederatedQuery(CODES, query), "tianjin-planning")
    assert ans.combined is not None
    for cell in ans.combined.cells:
        s, n = cell.components
        assert cell.value == pytest.approx(min(40000, max(0, s / n)))
        assert (
            cell.interval is not None
            and 0 <= cell.interval[0] <= cell.value <= cell.interval[1] <= 40000
        )


def test_quantiles_are_returned_per_part_and_not_combined(federation: Federation) -> None:
    ans = federation.coordinator.query(
        FederatedQuery(CODES, q(Statistic.MEDIAN, column="monthly_base")), "tianjin-planning"
    )
    assert len(ans.parts) == 3 and ans.combined is None


def test_down_holder_is_reported_missing_not_silently_dropped(federation: Federation) -> None:
    federation.down.add("130000")
    ans = federation.coordinator.query(FederatedQuery(CODES, q()), "tianjin-planning")
    assert not ans.complete
    (missing,) = ans.missing
    assert missing.jurisdiction == "130000" and missing.code == "UNAVAILABLE"
    assert ans.combined is not None and ans.combined.jurisdictions == ("110000", "120000")
    kinds = [(e.counterparty, e.kind) for e in federation.coordinator._ledger.events]
    assert ("130000", "stats_refusal") in kinds


def test_refusing_holder_is_reported_with_its_reason(
    make_holder: Callable[..., Any], ledger_cls: type
) -> None:
    holders = {c: make_holder(c, shipped=True)[0] for c in CODES}
    holders["110000"] = make_holder(
        "110000", requesters=[{"jurisdiction": "130000", "service_systems": ["hebei-planning"]}]
    )[0]
    fed = Federation(holders, "120000", ledger_cls())
    ans = fed.coordinator.query(FederatedQuery(CODES, q()), "tianjin-planning")
    (missing,) = ans.missing
    assert missing.jurisdiction == "110000" and missing.code == "PERMISSION_DENIED"
    assert "does not allow" in missing.reason
    fed.coordinator.close()


def test_exhausted_everywhere_raises_budget_exhausted(
    make_holder: Callable[..., Any], ledger_cls: type
) -> None:
    holders = {c: make_holder(c, shipped=True)[0] for c in CODES}
    fed = Federation(holders, "120000", ledger_cls())
    for _ in range(3):
        assert fed.coordinator.query(FederatedQuery(CODES, q()), "tianjin-planning").complete
    with pytest.raises(BudgetExhausted, match="remaining epsilon 0"):
        fed.coordinator.query(FederatedQuery(CODES, q()), "tianjin-planning")
    fed.coordinator.close()


def test_dry_run_spends_nothing_anywhere(federation: Federation) -> None:
    ans = federation.coordinator.query(
        FederatedQuery(CODES, q(group_by=("age_band",))), "tianjin-planning", dry_run=True
    )
    assert ans.dry_run and ans.combined is None and all(p.cells == () for p in ans.parts)
    assert all(r.requester_epsilon == 100.0 for r in ans.remaining)
    assert federation.coordinator._ledger.events == []
    for h in federation.holders.values():
        assert h._budget.spends() == []


def test_tampered_release_from_a_peer_is_rejected(federation: Federation) -> None:
    real = federation.fan_out

    def liar(j: str, req: stats_pb2.PeerStatsRequest) -> stats_pb2.PeerStatsResponse:
        resp = real(j, req)
        if j == "110000":
            resp.release.epsilon = 0.001  # claims a different query
        return resp

    federation.coordinator._fan_out = liar
    ans = federation.coordinator.query(FederatedQuery(CODES, q()), "tianjin-planning")
    (missing,) = ans.missing
    assert missing.jurisdiction == "110000" and missing.code == "DATA_LOSS"


class StrictLedger(MemoryLedger):
    """A memory ledger that refuses what the real one refuses (``validate_event``)."""

    def append(self, event: LedgerEvent, rider: object | None = None) -> AppendReceipt:
        validate_event(event)
        return super().append(event)


def test_federated_query_over_twenty_jurisdictions_is_ledgered_not_failed_after_holders_spent(
    make_holder: Callable[..., Any],
) -> None:
    # Attack (or just a national query): 19+ jurisdictions made the requester's
    # "jurisdictions" detail longer than a details value may be, so its ledger
    # refused every part AFTER every holder had spent budget and released: the
    # service system got INVALID_ARGUMENT and the releases went unrecorded.
    holder, _, budget = make_holder("120000")

    def fan_out(j: str, req: stats_pb2.PeerStatsRequest) -> stats_pb2.PeerStatsResponse:
        rid = req.header.request_id
        resp = holder.handle_peer(req, requester="120000", request_id=rid, now_ms=0)
        resp.release.jurisdictions[:] = [j]  # twenty holders, played by one
        resp.receipt.jurisdiction = j
        return resp

    ledger = StrictLedger()
    coordinator = StatsCoordinator(
        local_jurisdiction="120000", fan_out=fan_out, ledger=ledger, clock_ms=lambda: 0
    )
    try:
        js = tuple(str(110000 + 10000 * i) for i in range(20))
        ans = coordinator.query(FederatedQuery(js, q()), "tianjin-planning")
    finally:
        coordinator.close()
    assert ans.complete and len(ans.parts) == 20 and len(budget.spends()) == 20
    assert len(ledger.of_kind("stats_release")) == 20
    assert read_list_details(ledger.events[0].details, "jurisdictions") == js


@pytest.mark.parametrize("tamper", ["mechanism", "receipt"])
def test_hostile_holder_strings_the_ledger_refuses_make_a_missing_part_not_a_failed_query(
    make_holder: Callable[..., Any], tamper: str
) -> None:
    # Attack: a holder answers with a mechanism name (or a receipt) holding a
    # control character. The requester copied it unchecked into its ledger entry,
    # which the ledger refused, failing the whole federated query after the
    # honest holders had spent their budget and released.
    holders = {c: make_holder(c)[0] for c in CODES}
    ledger = StrictLedger()
    fed = Federation(holders, "120000", ledger)
    real = fed.fan_out

    def liar(j: str, req: stats_pb2.PeerStatsRequest) -> stats_pb2.PeerStatsResponse:
        resp = real(j, req)
        if j == "130000":
            if tamper == "mechanism":
                resp.release.components[0].mechanism = "integer_laplace\n"
            else:
                resp.receipt.jurisdiction = "130000\x1b"
                resp.receipt.entry_hash = "ab" * 32
        return resp

    fed.coordinator._fan_out = liar
    try:
        ans = fed.coordinator.query(FederatedQuery(CODES, q()), "tianjin-planning")
    finally:
        fed.coordinator.close()
    (missing,) = ans.missing
    assert missing.jurisdiction == "130000" and missing.code == "DATA_LOSS"
    assert len(ans.parts) == 2 and ans.combined is not None
    assert [e.kind for e in ledger.events] == ["stats_release", "stats_release", "stats_refusal"]


def test_long_detail_lists_continue_under_numbered_keys_and_never_split_an_item() -> None:
    cols = [f"c{i}_" + "x" * 60 for i in range(8)]  # 8 columns of 63 characters
    out = list_details("group_by", cols, DEFAULT_LIMITS)
    assert list(out) == ["group_by", "group_by_2", "group_by_3", "group_by_4"]
    assert all(len(v) <= DEFAULT_LIMITS.max_identifier_len for v in out.values())
    assert ",".join(out.values()).split(",") == cols
    assert list_details("filters", [], DEFAULT_LIMITS) == {"filters": ""}


def test_list_details_of_ten_or_more_parts_read_back_whole_and_in_order_from_an_entry() -> None:
    # An entry keeps its details sorted by key, so a list continued past key_9
    # is stored as key, key_10, key_11, key_2, ...: read in stored order (or by
    # prefix) it came back scrambled.
    items = [f"c{i:02d}_" + "x" * 50 for i in range(24)]  # 12 parts of two items
    out = list_details("group_by", items, DEFAULT_LIMITS)
    assert len(out) == 12 and "group_by_12" in out
    stored = tuple(sorted(out.items()))
    assert [k for k, _ in stored][:3] == ["group_by", "group_by_10", "group_by_11"]
    assert read_list_details(stored, "group_by") == tuple(items)
    assert read_list_details(stored, "filters") == ()
    empty = tuple(list_details("filters", [], DEFAULT_LIMITS).items())
    assert read_list_details(empty, "filters") == ()


def test_combine_refuses_nothing_and_is_pure() -> None:
    assert combine([], q()) is None


# ---------------------------------------------------------------------------
# gRPC servicer over a real loopback server
# ---------------------------------------------------------------------------


@pytest.fixture
def port(make_holder: Callable[..., Any], ledger_cls: type) -> Iterator[ServicePort]:
    holders = {c: make_holder(c, shipped=True)[0] for c in CODES}
    fed = Federation(holders, "120000", ledger_cls())

    def mount(server: grpc.Server) -> None:
        stats_pb2_grpc.add_StatisticsServicer_to_server(
            StatisticsServicer(fed.coordinator, caller_from_context), server
        )

    try:
        with service_port(mount, ["tianjin-planning", "intruder"], jurisdiction="120000") as svc:
            yield svc
    finally:
        fed.coordinator.close()


@pytest.fixture
def stub(port: ServicePort) -> Iterator[stats_pb2_grpc.StatisticsStub]:
    with port.channel() as channel:
        yield stats_pb2_grpc.StatisticsStub(channel)


@pytest.fixture
def md(port: ServicePort) -> tuple[tuple[str, str], ...]:
    return port.metadata("tianjin-planning")


def test_grpc_query_dry_run_and_exhaustion(
    stub: stats_pb2_grpc.StatisticsStub, md: tuple[tuple[str, str], ...]
) -> None:
    req = federated_to_proto(FederatedQuery(CODES, q(group_by=("age_band",))))
    dry = stub.DryRun(req, metadata=md, timeout=30)
    assert dry.dry_run and not dry.has_combined and len(dry.parts) == 3
    assert dry.parts[0].components[0].mechanism == "integer_laplace"
    for i in range(3):
        resp = stub.Query(req, metadata=md, timeout=30)
        assert resp.complete and resp.has_combined and len(resp.combined.cells) == 6
        assert all(c.has_interval and c.lower <= c.value <= c.upper for c in resp.combined.cells)
        assert [r.requester_epsilon for r in resp.remaining] == [2.0 - i] * 3
        assert len(resp.receipts) == 3
    with pytest.raises(grpc.RpcError) as err:
        stub.Query(req, metadata=md, timeout=30)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "remaining epsilon 0" in err.value.details()


@pytest.mark.parametrize(
    ("query", "code"),
    [
        (q(group_by=("employer",)), grpc.StatusCode.INVALID_ARGUMENT),
        (q(group_by=("name",)), grpc.StatusCode.INVALID_ARGUMENT),
        (q(Statistic.SUM, column="gender"), grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_grpc_undeclared_columns_are_invalid_argument(
    stub: stats_pb2_grpc.StatisticsStub,
    md: tuple[tuple[str, str], ...],
    query: StatsQuery,
    code: grpc.StatusCode,
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Query(federated_to_proto(FederatedQuery(CODES, query)), metadata=md, timeout=30)
    assert err.value.code() == code


def test_grpc_malformed_request_is_invalid_argument(
    stub: stats_pb2_grpc.StatisticsStub, md: tuple[tuple[str, str], ...]
) -> None:
    bad = stats_pb2.StatsQueryRequest(jurisdictions=["110000", "110000"], query=query_to_proto(q()))
    with pytest.raises(grpc.RpcError) as err:
        stub.Query(bad, metadata=md, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    no_kind = stats_pb2.StatsQueryRequest(
        jurisdictions=["110000"],
        query=stats_pb2.StatsQuery(dataset=SI, purpose="p", epsilon=1.0, confidence=0.9),
    )
    with pytest.raises(grpc.RpcError) as err:
        stub.Query(no_kind, metadata=md, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_grpc_caller_outside_the_agreement_is_refused(
    stub: stats_pb2_grpc.StatisticsStub, port: ServicePort
) -> None:
    req = federated_to_proto(FederatedQuery(CODES, q()))
    with pytest.raises(grpc.RpcError) as err:
        stub.Query(req, metadata=port.metadata("intruder"), timeout=30)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_grpc_caller_without_a_registered_token_is_unauthenticated(
    stub: stats_pb2_grpc.StatisticsStub,
) -> None:
    req = federated_to_proto(FederatedQuery(CODES, q()))
    for md in ((), (("authorization", "Bearer forged"),)):
        with pytest.raises(grpc.RpcError) as err:
            stub.Query(req, metadata=md, timeout=30)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
