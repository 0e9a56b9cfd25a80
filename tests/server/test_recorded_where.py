"""What is recorded where: one test per row of the README's table, on real gateways.

Rule: every authenticated request is on the holder's ledger, every well-formed
attempt a requester refuses or sends is on its ledger, refusals of every kind
included; garbage and unauthenticated input are on neither.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from gateway._proto.dataexchange.gateway.v1 import stats_pb2_grpc
from gateway.client import service_channel
from gateway.demo.chapters import commuters_by_age
from gateway.ledger.events import LedgerEvent
from tests.conftest import RunningFederation
from tests.helpers import ledger_events

BJ, TJ, HB = "110000", "120000", "130000"


class Watch:
    """New entries in each gateway's ledger since the watch started."""

    def __init__(self, fed: RunningFederation) -> None:
        self.fed = fed
        self.before = {c: len(ledger_events(g)) for c, g in fed.gateways.items()}

    def new(self, code: str) -> list[LedgerEvent]:
        return ledger_events(self.fed.gateways[code])[self.before[code] :]


@pytest.fixture
def watch(federation: RunningFederation) -> Iterator[Watch]:
    yield Watch(federation)


def _records(fed: RunningFederation, **over: object) -> dict[str, object]:
    req: dict[str, object] = dict(
        holder_jurisdiction=BJ,
        dataset="si_contributions",
        purpose="housing_fund_transfer",
        subject_ids=[fed.commuter()],
    )
    req.update(over)
    return req


def _stats(fed: RunningFederation, code: str, service: str) -> tuple[grpc.Channel, object]:
    site = fed.site(code)
    ch = service_channel(
        site.service_address, site.tls_cert.read_bytes(), code, site.tokens[service]
    )
    return ch, stats_pb2_grpc.StatisticsStub(ch)


def test_transfer_is_on_both_ledgers_with_both_signatures_and_legal_basis(
    federation: RunningFederation, watch: Watch
) -> None:
    with federation.client(HB, "hebei-housing-fund") as c:
        c.get_records(**_records(federation))
    (h,), (r,) = watch.new(BJ), watch.new(HB)
    assert (h.kind, h.role, r.kind, r.role) == ("transfer", "holder", "transfer", "requester")
    for e in (h, r):
        assert e.requester_signature and e.holder_signature and e.response_digest
        assert e.legal_basis and e.approval_id and e.agreement_id
    assert (h.legal_basis, h.approval_id) == (r.legal_basis, r.approval_id)


def test_policy_refusal_is_on_both_ledgers_signed_by_the_holder(
    federation: RunningFederation, watch: Watch
) -> None:
    with federation.client(HB, "hebei-housing-fund") as c, pytest.raises(grpc.RpcError):
        c.get_records(**_records(federation, purpose="marketing"))
    (h,), (r,) = watch.new(BJ), watch.new(HB)
    assert h.kind == r.kind == "refusal" and h.request_id == r.request_id
    assert h.holder_signature == r.holder_signature != ""


@pytest.mark.parametrize(
    "override",
    [{"dataset": "no_such_dataset"}, {"holder_jurisdiction": "310000"},
     {"holder_jurisdiction": HB}],
    ids=["unknown-dataset", "not-a-member", "own-jurisdiction"],
)  # fmt: skip
def test_attempt_refused_before_sending_is_on_the_requesters_ledger_only(
    federation: RunningFederation, watch: Watch, override: dict[str, object]
) -> None:
    with federation.client(HB, "hebei-housing-fund") as c, pytest.raises(grpc.RpcError):
        c.get_records(**_records(federation, **override))
    (r,) = watch.new(HB)
    assert (r.kind, r.role, r.decision) == ("refusal", "requester", "deny")
    assert r.reason.startswith("refused before sending") and not r.holder_signature
    assert watch.new(BJ) == [] and watch.new(TJ) == []


def test_malformed_service_request_is_on_no_ledger(
    federation: RunningFederation, watch: Watch
) -> None:
    with federation.client(HB, "hebei-housing-fund") as c, pytest.raises(grpc.RpcError) as err:
        c.get_records(**_records(federation, purpose="NOT A PURPOSE"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert all(watch.new(code) == [] for code in (BJ, TJ, HB))


def test_statistics_release_is_on_both_ledgers(federation: RunningFederation, watch: Watch) -> None:
    ch, stub = _stats(federation, HB, "hebei-planning")
    stub.Query(commuters_by_age([BJ], 0.1), timeout=30)  # type: ignore[attr-defined]
    ch.close()
    (h,) = [e for e in watch.new(BJ) if e.kind == "stats_release"]
    (r,) = [e for e in watch.new(HB) if e.kind == "stats_release"]
    assert h.request_id == r.request_id and h.holder_signature == r.holder_signature != ""


def test_statistics_refusal_is_on_both_ledgers_under_one_request_id(
    federation: RunningFederation, watch: Watch
) -> None:
    req = commuters_by_age([BJ], 0.1)
    req.query.purpose = "marketing"
    ch, stub = _stats(federation, HB, "hebei-planning")
    with pytest.raises(grpc.RpcError) as err:
        stub.Query(req, timeout=30)  # type: ignore[attr-defined]
    ch.close()
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    (h,), (r,) = watch.new(BJ), watch.new(HB)
    assert (h.kind, h.role, r.kind, r.role) == (
        "stats_refusal", "holder", "stats_refusal", "requester",
    )  # fmt: skip
    assert h.request_id == r.request_id and h.requester_signature


def test_statistics_dry_run_is_on_no_ledger(federation: RunningFederation, watch: Watch) -> None:
    ch, stub = _stats(federation, HB, "hebei-planning")
    stub.DryRun(commuters_by_age([BJ, TJ], 0.1), timeout=30)  # type: ignore[attr-defined]
    ch.close()
    assert all(watch.new(code) == [] for code in (BJ, TJ, HB))


def test_attempt_at_a_holder_that_is_down_is_on_the_requesters_ledger(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from gateway.ledger.ledger import SqliteLedger
    from gateway.ledger.reconcile import reconcile
    from tests.conftest import start_federation, stop_federation

    rf = start_federation(tmp_path, rows=30)
    try:
        bj_before = len(ledger_events(rf.gateways[BJ]))
        rf.gateways[BJ].stop(grace=0.1)
        del rf.gateways[BJ]
        watch = Watch(rf)
        with rf.client(HB, "hebei-housing-fund") as c, pytest.raises(grpc.RpcError) as err:
            c.get_records(**_records(rf))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        (r,) = watch.new(HB)
        assert r.kind == "refusal" and r.reason.startswith("exchange failed")
        assert r.requester_signature and not r.holder_signature
        bj = SqliteLedger.open_readonly(rf.site(BJ).root / "data" / "ledger.sqlite")
        held = [r.event for r in bj.entries(0, bj.size)]
        bj.close()
        assert len(held) == bj_before
        report = reconcile(list(enumerate(held)), list(enumerate(ledger_events(rf.gateways[HB]))))
        assert report.ok and not report.unacknowledged  # the holder never answered
    finally:
        stop_federation(rf)
