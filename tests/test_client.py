"""ServiceClient: records and statistics against real gateways; the token travels as call metadata."""

from __future__ import annotations

import grpc
import pytest

from gateway.client import ServiceClient, statistic_kind, stats_request
from tests.conftest import RunningFederation


def test_query_statistics_dry_run_spends_nothing_and_the_real_query_spends_epsilon(
    federation: RunningFederation,
) -> None:
    budget = federation.gateways["130000"].statistics.budget
    before = sum(r.epsilon for r in budget.totals())
    with federation.client("120000", "tianjin-planning") as gw:
        args = (["130000"], "si_contributions", "commuter_planning", "count")
        dry = gw.query_statistics(*args, epsilon=0.2, group_by=["age_band"], dry_run=True)
        assert dry.dry_run and [p.jurisdictions[0] for p in dry.parts] == ["130000"]
        assert sum(r.epsilon for r in budget.totals()) == before
        real = gw.query_statistics(*args, epsilon=0.2, group_by=["age_band"])
    assert not real.dry_run and real.parts[0].epsilon == pytest.approx(0.2)
    assert sum(r.epsilon for r in budget.totals()) == pytest.approx(before + 0.2)


def test_client_sends_the_token_per_call_and_a_wrong_token_is_unauthenticated(
    federation: RunningFederation,
) -> None:
    site = federation.site("130000")
    with ServiceClient(site.service_address, site.tls_cert, "130000", "svc_wrong") as gw:
        with pytest.raises(grpc.RpcError) as err:
            gw.list_datasets()
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with federation.client("130000", "hebei-housing-fund") as gw:
        assert {m.jurisdiction for m in gw.list_datasets().members} == {
            "110000",
            "120000",
            "130000",
        }


def test_stats_request_builds_filters_and_refuses_an_unknown_statistic() -> None:
    req = stats_request(
        ["110000"], "d", "p", "histogram", epsilon=1.0, column="c",
        filters={"status": ["a", "b"]}, bin_edges=[0, 1, 2],
    )  # fmt: skip
    assert req.query.filters[0].column == "status" and list(req.query.filters[0].values) == [
        "a",
        "b",
    ]
    assert req.query.statistic == statistic_kind("histogram")
    with pytest.raises(ValueError, match="statistic must be one of count, sum"):
        statistic_kind("variance")
