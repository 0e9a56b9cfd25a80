"""Federated differentially private statistics through three real gateways (mTLS, signed)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from gateway._proto.dataexchange.gateway.v1 import stats_pb2_grpc
from gateway.client import service_channel
from gateway.demo.chapters import commuters_by_age
from tests.conftest import RunningFederation, engine_federation, start_federation, stop_federation
from tests.dbs import SUITE_ENGINES
from tests.helpers import ledger_events


def _stub(
    fed: RunningFederation, code: str, service: str
) -> tuple[grpc.Channel, stats_pb2_grpc.StatisticsStub]:
    site = fed.site(code)
    ch = service_channel(
        site.service_address, site.tls_cert.read_bytes(), code, site.tokens[service]
    )
    return ch, stats_pb2_grpc.StatisticsStub(ch)


@pytest.fixture(params=SUITE_ENGINES, ids=lambda p: "-".join(p))
def own_federation(request, tmp_path):  # type: ignore[no-untyped-def]
    """A fresh federation per test: each cipher suite with SQLite, and the
    registers in PostgreSQL and MariaDB."""
    suite, engine = request.param
    with engine_federation(engine, tmp_path, rows=200, suite=suite) as rf:
        yield rf


def test_federated_count_combines_three_noisy_releases_and_ledgers_each_release(
    own_federation: RunningFederation,
) -> None:
    fed = own_federation
    ch, stub = _stub(fed, "120000", "tianjin-planning")
    before = {c: len(ledger_events(g)) for c, g in fed.gateways.items()}
    resp = stub.Query(commuters_by_age(["110000", "120000", "130000"], 1.0), timeout=30)
    ch.close()
    assert resp.complete and resp.has_combined and not resp.missing
    assert {p.jurisdictions[0] for p in resp.parts} == {"110000", "120000", "130000"}
    for cell in resp.combined.cells:
        assert cell.has_interval and cell.lower <= cell.value <= cell.upper
    assert {tuple(c.key) for c in resp.combined.cells} == {
        ("16-24",),
        ("25-34",),
        ("35-44",),
        ("45-54",),
        ("55-64",),
        ("65+",),
    }
    # Each holder ledgered its release (with epsilon), the requester each part.
    for code in ("110000", "130000"):
        new = [
            e
            for e in ledger_events(fed.gateways[code])[before[code] :]
            if e.kind == "stats_release"
        ]
        assert len(new) == 1 and new[0].role == "holder"
        assert dict(new[0].details)["epsilon"] in ("1.0", "1")
    tj_new = ledger_events(fed.gateways["120000"])[before["120000"] :]
    assert sum(e.role == "requester" and e.kind == "stats_release" for e in tj_new) == 3


def test_budget_exhaustion_is_resource_exhausted_with_remaining_budget(
    own_federation: RunningFederation,
) -> None:
    ch, stub = _stub(own_federation, "130000", "hebei-planning")
    for _ in range(3):  # epsilon 3.0 per requester at 1.0 per query
        stub.Query(commuters_by_age(["110000"], 1.0), timeout=30)
    with pytest.raises(grpc.RpcError) as err:
        stub.Query(commuters_by_age(["110000"], 1.0), timeout=30)
    ch.close()
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "remaining" in (err.value.details() or "")


def test_holder_down_is_reported_as_missing_part_not_silently_combined(
    own_federation: RunningFederation,
) -> None:
    own_federation.gateways["130000"].stop(grace=0)
    ch, stub = _stub(own_federation, "110000", "beijing-planning")
    resp = stub.Query(commuters_by_age(["110000", "120000", "130000"], 1.0), timeout=30)
    ch.close()
    assert not resp.complete
    assert [(m.jurisdiction, m.code) for m in resp.missing] == [("130000", "UNAVAILABLE")]


def test_undeclared_group_key_is_refused(own_federation: RunningFederation) -> None:
    ch, stub = _stub(own_federation, "120000", "tianjin-planning")
    req = commuters_by_age(["110000"], 1.0)
    del req.query.group_by[:]
    req.query.group_by.append("employer")
    with pytest.raises(grpc.RpcError) as err:
        stub.Query(req, timeout=30)
    ch.close()
    assert err.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED)


def test_editing_statistics_agreement_takes_effect_without_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil
    import time

    from gateway.demo.setup import REPO_POLICIES

    policies = tmp_path / "policies"
    shutil.copytree(REPO_POLICIES, policies)
    rf = start_federation(tmp_path / "fed", rows=60, policies=policies)
    try:
        ch, stub = _stub(rf, "120000", "tianjin-planning")
        req = commuters_by_age(["120000"], 0.5)
        req.query.purpose = "planning"
        stub.Query(req, timeout=30)
        f = policies / "120000" / "statistics.yaml"
        f.write_text(
            f.read_text().replace(
                "purposes: [commuter_planning, planning]", "purposes: [commuter_planning]"
            )
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                stub.Query(req, timeout=30)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.PERMISSION_DENIED
                assert "planning" in (exc.details() or "")
                break
            assert time.monotonic() < deadline, "the edited agreement was never picked up"
            time.sleep(0.3)
        ch.close()
    finally:
        stop_federation(rf)


def test_malformed_peer_statistics_request_is_refused_and_ledgered_with_placeholders(
    own_federation: RunningFederation,
) -> None:
    from gateway import domains
    from gateway._proto.dataexchange.gateway.v1 import stats_pb2 as spb
    from gateway.errors import InvalidArgument
    from gateway.ledger.verify import verify_store

    hb, bj = own_federation.gateways["130000"], own_federation.gateways["110000"]
    before = len(ledger_events(bj))
    req = spb.PeerStatsRequest(
        service_system="evil\nsystem", query=commuters_by_age(["110000"], 1.0).query
    )
    with pytest.raises(InvalidArgument):
        hb.caller.call(
            "110000", "ComputeStatistic", req, domains.PEER_STATS_REQUEST,
            domains.PEER_STATS_RESPONSE, spb.PeerStatsResponse,
        )  # fmt: skip
    new = ledger_events(bj)[before:]
    assert [(e.kind, e.service_system) for e in new] == [("stats_refusal", "(invalid)")]
    assert verify_store(bj.ledger.store, bj.ledger.origin, bj.keys.ledger.verify_key).ok


def test_statistics_releases_are_first_class_on_both_sides_and_reconcile(
    own_federation: RunningFederation,
) -> None:
    """Both sides' entries of a release carry both signatures, the agreement id and digest,
    the policy-set digest, the legal basis and approval id; reconcile matches them and every
    signature verifies offline against the trust bundle."""
    from gateway.ledger.reconcile import reconcile
    from gateway.ledger.trustkeys import TrustedKeys
    from gateway.ledger.verify import verify_store
    from gateway.trust import load_bundle

    fed = own_federation
    ch, stub = _stub(fed, "120000", "tianjin-planning")
    stub.Query(commuters_by_age(["110000", "130000"], 1.0), timeout=30)
    ch.close()
    tj = ledger_events(fed.gateways["120000"])
    for holder in ("110000", "130000"):
        held = [e for e in ledger_events(fed.gateways[holder]) if e.kind == "stats_release"][-1]
        asked = next(e for e in tj if e.request_id == held.request_id)
        for e in (held, asked):
            assert e.requester_signature and e.holder_signature
            assert e.request_digest and e.response_digest
            assert e.agreement_id == f"stats-{holder}-2026" and len(e.agreement_digest) == 64
            assert len(e.policy_set_digest) == 64
            assert e.legal_basis.startswith("《中华人民共和国统计法》")
            assert e.approval_id.startswith("京津冀统审")
        r = reconcile(list(enumerate(ledger_events(fed.gateways[holder]))), list(enumerate(tj)))
        assert r.ok and r.matched >= 1 and not r.unacknowledged, r
        gw = fed.gateways[holder]
        keys = TrustedKeys.from_bundle(load_bundle(fed.fed.bundle))
        report = verify_store(gw.ledger.store, gw.ledger.origin, keys, check_signatures=True)
        assert report.ok and report.signatures, report.problem


def test_holder_without_a_statistics_agreement_ledgers_the_refusal(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An authenticated statistics request to a holder with no statistics agreement is
    refused and recorded on both sides, under the same request id."""
    import shutil

    from gateway.demo.setup import REPO_POLICIES

    policies = tmp_path / "policies"
    shutil.copytree(REPO_POLICIES, policies)
    (policies / "130000" / "statistics.yaml").unlink()
    rf = start_federation(tmp_path / "fed", rows=50, policies=policies)
    try:
        ch, stub = _stub(rf, "120000", "tianjin-planning")
        with pytest.raises(grpc.RpcError) as err:
            stub.Query(commuters_by_age(["130000"], 1.0), timeout=30)
        ch.close()
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        held = [e for e in ledger_events(rf.gateways["130000"]) if e.kind == "stats_refusal"]
        asked = [e for e in ledger_events(rf.gateways["120000"]) if e.kind == "stats_refusal"]
        assert len(held) == 1 and held[0].counterparty == "120000"
        assert "no statistics agreement" in held[0].reason and held[0].requester_signature
        assert [e.request_id for e in asked] == [held[0].request_id]
    finally:
        stop_federation(rf)


def test_holder_whose_data_exceed_its_declared_max_rows_refuses_without_spending(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A running holder whose source holds more rows than its agreement's max_rows
    (OpenDP's row bound) answers FAILED_PRECONDITION naming the dataset and max_rows
    but not the row count, spends no budget, ledgers an uncharged refusal, and tells
    its operator in one error line (counts and the file to edit, no traceback)."""
    import logging
    import shutil

    from gateway.demo.setup import REPO_POLICIES

    policies = tmp_path / "policies"
    shutil.copytree(REPO_POLICIES, policies)
    f = policies / "110000" / "statistics.yaml"
    f.write_text(f.read_text().replace("max_rows: 10000000", "max_rows: 5"))
    rf = start_federation(tmp_path / "fed", rows=60, policies=policies)
    try:
        holder = rf.gateways["110000"].statistics.holder
        assert holder is not None
        ds = holder.policy.authorise(
            "si_contributions", "120000", "tianjin-planning", "commuter_planning"
        ).dataset
        rows = holder._source.frame(ds, ["person_id"]).collect().height
        assert rows > 5
        ch, stub = _stub(rf, "120000", "tianjin-planning")
        with caplog.at_level(logging.INFO, logger="gateway.stats.holder"):
            with pytest.raises(grpc.RpcError) as err:
                stub.Query(commuters_by_age(["110000"], 1.0), timeout=30)
        ch.close()
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        details = err.value.details() or ""
        assert "si_contributions" in details and "max_rows" in details
        assert str(rows) not in details and len(details) < 400
        # The holder's configuration, not the requester's trust bundle or files.
        kind = dict(err.value.trailing_metadata() or ())["gateway-error"]
        assert kind == "PeerPreconditionFailed"
        assert rf.gateways["110000"].stores.budget.totals() == []
        held = [
            e
            for e in ledger_events(rf.gateways["110000"])
            if e.kind in ("stats_release", "stats_refusal")
        ]
        assert [(e.kind, dict(e.details)["charged"]) for e in held] == [("stats_refusal", "false")]
        (line,) = [r for r in caplog.records if r.name == "gateway.stats.holder"]
        text = line.getMessage()
        assert line.levelno == logging.ERROR and line.exc_info is None
        assert "si_contributions" in text and str(rows) in text and "max_rows 5" in text
        assert str(f) in text
    finally:
        stop_federation(rf)
