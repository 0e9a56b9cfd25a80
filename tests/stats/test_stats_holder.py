"""Holder: real OpenDP releases over real SQLite sources, policy refusals, budgets, ledger."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import opendp.prelude as dp
import polars as pl
import pytest
from opendp.mod import GLOBAL_FEATURES

from gateway._proto.dataexchange.gateway.v1 import stats_pb2
from gateway.errors import (
    BudgetExhausted,
    ConfigurationError,
    EnvironmentFailure,
    InvalidArgument,
    NotFound,
    PolicyDenied,
    StorageFailure,
    status_name,
)
from gateway.ledger.entry import validate_event
from gateway.stats import engine
from gateway.stats.budget import EPS_UNIT, eps_charge_units
from gateway.stats.convert import query_to_proto
from gateway.stats.model import Statistic, StatsFilter, StatsQuery

SI = "si_contributions"


def q(statistic: Statistic = Statistic.COUNT, **kw: Any) -> StatsQuery:
    kw.setdefault("epsilon", 0.5)
    kw.setdefault("confidence", 0.95)
    return StatsQuery(dataset=SI, purpose="planning", statistic=statistic, **kw)


def truth(path: Path, by: list[str], measure: str | None = None) -> dict[tuple[str, ...], float]:
    """Exact per-group counts (or clamped sums) after one-row-per-person truncation."""
    df = _read(path)
    df = df.filter(pl.int_range(pl.len()).over("person_id") < 1)
    agg = pl.len() if measure is None else pl.col(measure).clip(0, 600).sum()
    out = df.group_by(by).agg(agg.alias("v"))
    return {tuple(r[:-1]): float(r[-1]) for r in out.iter_rows()}


def _read(path: Path) -> pl.DataFrame:
    import sqlite3

    with sqlite3.connect(path) as conn:
        cur = conn.execute(f"SELECT * FROM {SI}")
        names = [d[0] for d in cur.description]
        return pl.DataFrame(cur.fetchall(), schema=names, orient="row")


def test_noise_is_added_and_its_spread_matches_the_stated_scale(
    make_holder: Callable[..., Any], new_ctx: Callable[..., Any], sources: dict[str, Path]
) -> None:
    holder, _, _ = make_holder("120000", max_epsilon_per_query=1.0)
    by = ("age_band", "gender", "status")
    query = q(group_by=by, epsilon=0.05)  # count, sensitivity 1 -> scale 20
    exact = truth(sources["120000"], list(by))
    noise: list[float] = []
    releases = []
    for _ in range(60):
        rel = holder.answer(query, new_ctx()).release
        releases.append(tuple(c.value for c in rel.cells))
        (comp,) = rel.components
        assert comp.mechanism == "integer_laplace"
        assert math.isclose(comp.scale, 20.0, rel_tol=1e-6)
        noise += [c.value - exact.get(c.key, 0.0) for c in rel.cells]
    assert len(set(releases)) == len(releases)  # repeated releases differ
    # Discrete Laplace with scale t: P(k) ~ exp(-|k|/t). Its mean absolute value:
    t = 20.0
    r = math.exp(-1 / t)
    mean_abs = 2 * r / ((1 - r) * (1 + r))
    observed = sum(abs(x) for x in noise) / len(noise)
    # n = 2160 draws; sd(|X|) ~ t, so the relative standard error is ~2.2 %: 15 % is ~7 SE.
    assert abs(observed / mean_abs - 1) < 0.15
    # Mean of 2160 draws has sd ~0.61: 4 is > 6.5 sd.
    assert abs(sum(noise) / len(noise)) < 0.2 * t  # centred


def test_interval_half_width_matches_opendp_accuracy(
    make_holder: Callable[..., Any], new_ctx: Callable[..., Any]
) -> None:
    holder, _, _ = make_holder()
    rel = holder.answer(q(group_by=("age_band",), confidence=0.9), new_ctx()).release
    comp = rel.components[0]
    expected = dp.discrete_laplacian_scale_to_accuracy(comp.scale, 0.1)
    assert comp.accuracy == pytest.approx(expected)
    for cell in rel.cells:
        assert cell.interval == pytest.approx((cell.value - expected, cell.value + expected))


@pytest.mark.parametrize(
    ("statistic", "column", "extra", "mechanisms"),
    [
        (Statistic.SUM, "months_contributed", {}, ("integer_laplace",)),
        (Statistic.SUM, "monthly_base", {}, ("float_laplace",)),
        (Statistic.MEAN, "monthly_base", {}, ("float_laplace", "integer_laplace")),
        (Statistic.MEDIAN, "months_contributed", {}, ("exponential_min",)),
        (Statistic.QUANTILE, "monthly_base", {"quantile": 0.25}, ("exponential_min",)),
        (Statistic.HISTOGRAM, "status", {}, ("integer_laplace",)),
        (
            Statistic.HISTOGRAM,
            "monthly_base",
            {"bin_edges": (0.0, 8000.0, 40000.0)},
            ("integer_laplace",),
        ),
    ],
)
def test_every_statistic_releases_all_declared_cells(
    make_holder: Callable[..., Any],
    new_ctx: Callable[..., Any],
    statistic: Statistic,
    column: str,
    extra: dict[str, Any],
    mechanisms: tuple[str, ...],
) -> None:
    holder, ledger, _ = make_holder()
    query = q(statistic, column=column, group_by=("gender",), **extra)
    ans = holder.answer(query, new_ctx())
    rel = ans.release
    assert tuple(c.mechanism for c in rel.components) == mechanisms
    assert rel.epsilon == 0.5 and rel.delta == 0.0
    n_bins = (
        {"status": 3, "monthly_base": 2}.get(column, 1) if statistic is Statistic.HISTOGRAM else 1
    )
    assert len(rel.cells) == 2 * n_bins  # every declared key, also empty ones
    if statistic in (Statistic.MEDIAN, Statistic.QUANTILE):
        assert all(c.interval is None for c in rel.cells)
        assert all(0 <= c.value <= 40000 for c in rel.cells)
    else:
        assert all(
            c.interval is not None and c.interval[0] <= c.value <= c.interval[1] for c in rel.cells
        )
    (event,) = ledger.events
    details = dict(event.details)
    assert event.kind == "stats_release" and event.role == "holder" and event.decision == "allow"
    assert details["epsilon"] == "0.5" and details["delta"] == "0.0"
    assert details["query_digest"] == query.digest and len(query.digest) == 64
    assert event.counterparty == "110000" and event.service_system == "beijing-planning"


def test_filters_restrict_rows(
    make_holder: Callable[..., Any], new_ctx: Callable[..., Any]
) -> None:
    holder, _, _ = make_holder()
    everyone = q(epsilon=1.0)
    commuters = q(
        epsilon=1.0, filters=(StatsFilter("residence_jurisdiction", ("110000", "130000")),)
    )
    total = holder.answer(everyone, new_ctx()).release.cells[0].value
    part = holder.answer(commuters, new_ctx()).release.cells[0].value
    assert part < total * 0.5  # ~25 % of the seeded rows live elsewhere


@pytest.mark.parametrize(
    ("query", "error", "message"),
    [
        (q(group_by=("employer",)), InvalidArgument, "no declared public domain"),
        (q(group_by=("no_such",)), InvalidArgument, "no column"),
        (
            q(filters=(StatsFilter("name", ("张三",)),)),
            InvalidArgument,
            "no declared public domain",
        ),
        (q(filters=(StatsFilter("status", ("unknown",)),)), InvalidArgument, "declared domain"),
        (q(Statistic.SUM, column="age_band"), InvalidArgument, "no declared bounds"),
        (q(Statistic.SUM, column="person_id"), InvalidArgument, "no declared bounds"),
        (q(Statistic.HISTOGRAM, column="monthly_base"), InvalidArgument, "bin_edges"),
        (
            q(Statistic.HISTOGRAM, column="monthly_base", bin_edges=(0.0, 1e9)),
            InvalidArgument,
            "bounds",
        ),
        (
            q(Statistic.MEDIAN, column="monthly_base", candidates=(-5.0, 1.0)),
            InvalidArgument,
            "bounds",
        ),
        (q(confidence=0.5), InvalidArgument, "confidence"),
        (q(epsilon=5.0), PolicyDenied, "per-query cap"),
    ],
)
def test_undeclared_columns_filters_keys_and_values_are_refused(
    make_holder: Callable[..., Any],
    new_ctx: Callable[..., Any],
    query: StatsQuery,
    error: type[Exception],
    message: str,
) -> None:
    holder, ledger, budget = make_holder()
    with pytest.raises(error, match=message):
        holder.answer(query, new_ctx())
    assert budget.spends() == []  # nothing spent
    (event,) = ledger.events
    assert event.kind == "stats_refusal" and event.decision == "deny"


def test_agreement_narrower_than_catalogue_is_enforced(
    make_holder: Callable[..., Any], new_ctx: Callable[..., Any]
) -> None:
    holder, _, _ = make_holder(
        group_by=["age_band"],
        filters=["status"],
        measures=["months_contributed"],
        statistics=["count", "sum"],
    )
    for query, message in [
        (q(group_by=("district_code",)), "grouping on 'district_code'"),
        (q(filters=(StatsFilter("gender", ("男",)),)), "filtering on 'gender'"),
        (q(Statistic.SUM, column="monthly_base"), "measuring 'monthly_base'"),
        (q(Statistic.MEAN, column="months_contributed"), "does not allow mean"),
    ]:
        with pytest.raises(PolicyDenied, match=message):
            holder.answer(query, new_ctx())


def test_unlisted_requester_and_unknown_dataset_are_refused(
    make_holder: Callable[..., Any], new_ctx: Callable[..., Any]
) -> None:
    holder, _, _ = make_holder()
    with pytest.raises(PolicyDenied, match="does not allow"):
        holder.answer(q(), new_ctx("110000", "some-other-system"))
    with pytest.raises(PolicyDenied, match="no statistics agreement"):
        holder.answer(
            StatsQuery(
                dataset="hf_accounts",
                purpose="p",
                statistic=Statistic.COUNT,
                epsilon=0.5,
                confidence=0.95,
            ),
            new_ctx(),
        )
    with pytest.raises(NotFound):
        holder.answer(
            StatsQuery(
                dataset="nope", purpose="p", statistic=Statistic.COUNT, epsilon=0.5, confidence=0.95
            ),
            new_ctx(),
        )


def test_shipped_agreement_refuses_the_fourth_query_at_epsilon_one(
    make_holder: Callable[..., Any], new_ctx: Callable[..., Any]
) -> None:
    holder, ledger, _ = make_holder("130000", shipped=True)
    for i in range(3):
        ans = holder.answer(q(epsilon=1.0), new_ctx("120000"))
        assert ans.remaining.requester_epsilon == pytest.approx(2.0 - i)
    with pytest.raises(BudgetExhausted, match="remaining epsilon 0"):
        holder.answer(q(epsilon=1.0), new_ctx("120000"))
    # Another requester still has its own budget.
    holder.answer(q(epsilon=1.0), new_ctx("110000"))
    kinds = [e.kind for e in ledger.events]
    assert kinds == ["stats_release"] * 3 + ["stats_refusal", "stats_release"]
    assert dict(ledger.events[3].details)["error_code"] == "RESOURCE_EXHAUSTED"


def test_dry_run_reports_cost_and_accuracy_without_spending(
    make_holder: Callable[..., Any], new_ctx: Callable[..., Any]
) -> None:
    holder, ledger, budget = make_holder(shipped=True)
    ans = holder.answer(
        q(Statistic.SUM, column="months_contributed", epsilon=1.0), new_ctx(), dry_run=True
    )
    assert ans.dry_run and ans.release.cells == ()
    assert ans.release.epsilon == 1.0
    (comp,) = ans.release.components
    assert comp.scale == pytest.approx(600.0) and comp.accuracy is not None
    assert ans.remaining.requester_epsilon == 3.0
    assert budget.spends() == [] and ledger.events == []


def test_tiny_epsilon_query_is_charged_one_unit_not_refused_as_unavailable(
    make_holder: Callable[..., Any], new_ctx: Callable[..., Any]
) -> None:
    holder, ledger, budget = make_holder()
    holder.answer(q(epsilon=1e-13), new_ctx(), dry_run=True)  # accepted by the dry run ...
    ans = holder.answer(q(epsilon=1e-13), new_ctx())  # ... and so by the query itself
    assert len(ans.release.cells) == 1
    (row,) = budget.spends()
    assert row.status == "released" and row.epsilon == 1e-9
    assert [e.kind for e in ledger.events] == ["stats_release"]


def test_100_concurrent_queries_never_overspend(
    make_holder: Callable[..., Any], new_ctx: Callable[..., Any]
) -> None:
    holder, ledger, budget = make_holder(
        budget={"epsilon_per_requester": 3.0, "epsilon_total": 10.0}
    )
    results: list[str] = []
    barrier = threading.Barrier(100)
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        try:
            holder.answer(q(epsilon=0.1), new_ctx())
            outcome = "ok"
        except BudgetExhausted:
            outcome = "refused"
        except Exception as exc:  # surfaced by the assertion below
            outcome = f"unexpected {exc!r}"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=worker) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    unexpected = [r for r in results if r.startswith("unexpected")]
    assert not unexpected, unexpected[:3]
    assert results.count("ok") == 30 and results.count("refused") == 70
    rows = budget.spends()
    assert len(rows) == 30 and all(r.status == "released" for r in rows)
    assert sum(r.epsilon for r in rows) == pytest.approx(3.0)
    assert len(ledger.of_kind("stats_release")) == 30
    assert len(ledger.of_kind("stats_refusal")) == 70


def test_budget_survives_holder_restart(
    make_holder: Callable[..., Any], new_ctx: Callable[..., Any], tmp_path: Path
) -> None:
    path = tmp_path / "persist.db"
    first, _, _ = make_holder(shipped=True, budget_path=path)
    first.answer(q(epsilon=1.0), new_ctx())
    first.answer(q(epsilon=1.0), new_ctx())
    restarted, _, _ = make_holder(shipped=True, budget_path=path)
    assert restarted.answer(q(epsilon=1.0), new_ctx()).remaining.requester_epsilon == 0.0
    with pytest.raises(BudgetExhausted):
        restarted.answer(q(epsilon=0.5), new_ctx())


def _raises(failure: Exception) -> Callable[..., None]:
    """A stand-in that fails with ``failure`` however it is called."""

    def fail(*_: object) -> None:
        raise failure

    return fail


def test_failure_after_reservation_keeps_the_spend(
    make_holder: Callable[..., Any], new_ctx: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    holder, ledger, budget = make_holder()

    monkeypatch.setattr(engine, "execute", _raises(EnvironmentFailure("OpenDP failed to release")))
    with pytest.raises(EnvironmentFailure):
        holder.answer(q(epsilon=0.5), new_ctx())
    (row,) = budget.spends()
    assert row.status == "failed" and row.epsilon == 0.5
    (event,) = ledger.events
    assert event.kind == "stats_refusal" and dict(event.details)["charged"] == "true"


@pytest.mark.parametrize(
    "failure", [StorageFailure("disk I/O error"), RuntimeError("value 4711 of p1")]
)
def test_failure_after_reservation_is_a_charged_refusal_on_the_ledger(
    make_holder: Callable[..., Any],
    new_ctx: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    failure: Exception,
) -> None:
    # A release that fails (or an unexpected error) after the budget was
    # reserved left the spend charged with no holder entry at all: the audit
    # trail missed a charged refusal. Its text is not recorded (it may hold data).
    holder, ledger, budget = make_holder()

    monkeypatch.setattr(engine, "execute", _raises(failure))
    with pytest.raises(type(failure)):
        holder.answer(q(epsilon=0.5), new_ctx())
    (row,) = budget.spends()
    assert row.status == "failed"
    (event,) = ledger.events
    assert event.kind == "stats_refusal" and dict(event.details)["charged"] == "true"
    assert "4711" not in event.reason


@pytest.mark.parametrize(
    "failure", [StorageFailure("source database unreachable"), RuntimeError("value 4711 of p1")]
)
def test_source_failure_is_a_refusal_on_the_ledger_that_spends_nothing(
    make_holder: Callable[..., Any],
    new_ctx: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    failure: Exception,
) -> None:
    # The data are read (and their row count checked) before any budget is
    # reserved: a source that fails is refused, recorded (its text not: it may
    # hold data), and charged nothing.
    holder, ledger, budget = make_holder()

    monkeypatch.setattr(holder._source, "frame", _raises(failure))
    with pytest.raises(type(failure)):
        holder.answer(q(epsilon=0.5), new_ctx())
    assert budget.spends() == []
    (event,) = ledger.events
    assert event.kind == "stats_refusal" and dict(event.details)["charged"] == "false"
    assert "4711" not in event.reason


def test_settle_failure_after_a_release_failure_keeps_the_original_error_and_the_refusal(
    make_holder: Callable[..., Any],
    new_ctx: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The budget store failing to mark the reservation failed replaced the
    # release's error with its own and skipped the charged refusal's entry.
    holder, ledger, budget = make_holder()

    def settle_down(*_: object) -> None:
        raise StorageFailure("budget store failed: disk I/O error")

    monkeypatch.setattr(engine, "execute", _raises(EnvironmentFailure("OpenDP failed to release")))
    monkeypatch.setattr(budget, "settle", settle_down)
    with caplog.at_level(logging.ERROR, logger="gateway.stats.holder"):
        with pytest.raises(EnvironmentFailure, match="OpenDP failed to release"):
            holder.answer(q(epsilon=0.5), new_ctx())
    (row,) = budget.spends()
    assert row.status == "reserved" and row.epsilon == 0.5  # still counted
    (event,) = ledger.events
    assert event.kind == "stats_refusal" and dict(event.details)["charged"] == "true"
    assert any("could not settle" in r.getMessage() for r in caplog.records)


def test_ledger_failure_of_a_release_is_not_followed_by_a_refusal(
    make_holder: Callable[..., Any], new_ctx: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    holder, ledger, budget = make_holder()

    def down(*_: object, **__: object) -> None:
        raise StorageFailure("ledger unavailable")

    monkeypatch.setattr(holder, "_append_release", down)
    with pytest.raises(StorageFailure):
        holder.answer(q(epsilon=0.5), new_ctx())
    assert [r.status for r in budget.spends()] == ["failed"] and ledger.events == []


@pytest.mark.parametrize("signed", [False, True])
def test_settle_failure_after_the_release_is_ledgered_still_returns_the_answer(
    make_holder: Callable[..., Any],
    new_ctx: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    signed: bool,
) -> None:
    # The budget store failing to mark a ledgered release ``released`` turned an
    # answer already on the ledger (and charged) into an error for the caller.
    path = tmp_path / "settle.db"
    holder, ledger, budget = make_holder(shipped=True, budget_path=path)

    def settle_down(*_: object) -> None:
        raise StorageFailure("budget store failed: disk I/O error")

    monkeypatch.setattr(budget, "settle", settle_down)
    c = new_ctx()
    with caplog.at_level(logging.WARNING, logger="gateway.stats.holder"):
        if signed:
            resp = holder.handle_peer(
                stats_pb2.PeerStatsRequest(
                    service_system=c.service_system, query=query_to_proto(q(epsilon=1.0))
                ),
                requester=c.requester,
                request_id=c.request_id,
                now_ms=c.now_ms,
                sign=lambda _: ("c2ln", "bb" * 32),
            )
            assert len(resp.release.cells) == 1
        else:
            ans = holder.answer(q(epsilon=1.0), c)
            assert len(ans.release.cells) == 1 and ans.receipt_hash
    assert [e.kind for e in ledger.events] == ["stats_release"]  # no refusal after it
    (row,) = budget.spends()
    assert row.status == "reserved" and row.request_id == c.request_id
    (record,) = [r for r in caplog.records if r.name == "gateway.stats.holder"]
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert c.request_id in record.getMessage() and "StorageFailure" in record.getMessage()
    # Counted as spent, also after a restart: never refunded.
    restarted, _, _ = make_holder(shipped=True, budget_path=path)
    for _ in range(2):
        restarted.answer(q(epsilon=1.0), new_ctx())
    with pytest.raises(BudgetExhausted, match="remaining epsilon 0"):
        restarted.answer(q(epsilon=1.0), new_ctx())


@pytest.mark.parametrize("statistic", [Statistic.COUNT, Statistic.SUM])
def test_data_over_the_declared_max_rows_are_refused_before_any_budget_is_spent(
    make_holder: Callable[..., Any],
    new_ctx: Callable[..., Any],
    sources: dict[str, Path],
    caplog: pytest.LogCaptureFixture,
    statistic: Statistic,
) -> None:
    # Attack/failure: a source holding more rows than the agreement's max_rows
    # (OpenDP's float-sum error bound assumes it and never checks it) was
    # released anyway: the stated privacy guarantee silently did not hold.
    rows = _read(sources["120000"]).height
    holder, ledger, budget = make_holder(max_rows=rows - 1)
    column = "" if statistic is Statistic.COUNT else "months_contributed"
    with caplog.at_level(logging.INFO, logger="gateway.stats.holder"):
        with pytest.raises(ConfigurationError) as err:
            holder.answer(q(statistic, column=column), new_ctx())
    assert status_name(err.value) == "FAILED_PRECONDITION"
    message = err.value.message
    assert SI in message and "max_rows" in message and len(message) < 300
    assert str(rows) not in message  # the size of the data is itself a statistic
    # Nothing spent, nothing released; the refusal is on the ledger, uncharged.
    assert budget.spends() == []
    (event,) = ledger.events
    assert event.kind == "stats_refusal"
    details = dict(event.details)
    assert details["charged"] == "false" and details["error_code"] == "FAILED_PRECONDITION"
    assert str(rows) not in event.reason
    # The operator: one error line, no traceback, with both counts and the file.
    (record,) = caplog.records
    text = record.getMessage()
    assert record.levelno == logging.ERROR and record.exc_info is None and "\n" not in text
    assert SI in text and str(rows) in text and str(rows - 1) in text
    assert "max_rows" in text and str(holder.policy.path) in text


def test_dry_run_over_the_declared_max_rows_fails_as_the_query_would_without_spending(
    make_holder: Callable[..., Any], new_ctx: Callable[..., Any], sources: dict[str, Path]
) -> None:
    # Failure: a dry run read no data, so it succeeded on data over max_rows and
    # the real query then got FAILED_PRECONDITION.
    rows = _read(sources["120000"]).height
    holder, ledger, budget = make_holder(max_rows=rows - 1)
    with pytest.raises(ConfigurationError) as err:
        holder.answer(q(), new_ctx(), dry_run=True)
    assert status_name(err.value) == "FAILED_PRECONDITION"
    assert SI in err.value.message and str(rows) not in err.value.message
    assert budget.spends() == [] and ledger.events == []  # a dry run is never ledgered
    # Within max_rows the dry run still answers.
    holder, ledger, budget = make_holder(max_rows=rows)
    assert holder.answer(q(), new_ctx(), dry_run=True).dry_run


def test_data_at_exactly_the_declared_max_rows_are_released(
    make_holder: Callable[..., Any], new_ctx: Callable[..., Any], sources: dict[str, Path]
) -> None:
    holder, ledger, budget = make_holder(max_rows=_read(sources["120000"]).height)
    assert len(holder.answer(q(), new_ctx()).release.cells) == 1
    assert [r.status for r in budget.spends()] == ["released"]
    assert [e.kind for e in ledger.events] == ["stats_release"]


def test_engine_refuses_to_release_over_more_rows_than_max_rows(
    make_holder: Callable[..., Any],
) -> None:
    # The engine's own check, whoever calls it (the holder checks first, before
    # reserving): a frame over the bound is never measured.
    holder, _, _ = make_holder(max_rows=10)
    auth = holder._policy.authorise(SI, "110000", "beijing-planning", "planning")
    cal = engine.calibrate(engine.plan_query(q(), auth.dataset, auth.terms, "120000"))
    engine.execute(cal, pl.LazyFrame({"person_id": [f"p{i}" for i in range(10)]}))
    with pytest.raises(ConfigurationError, match="max_rows"):
        engine.execute(cal, pl.LazyFrame({"person_id": [f"p{i}" for i in range(11)]}))


def test_release_refused_if_honest_but_curious_is_enabled(
    make_holder: Callable[..., Any], new_ctx: Callable[..., Any]
) -> None:
    holder, _, budget = make_holder()
    dp.enable_features("honest-but-curious")
    try:
        with pytest.raises(EnvironmentFailure, match="honest-but-curious"):
            holder.answer(q(), new_ctx())
    finally:
        dp.disable_features("honest-but-curious")
    assert "honest-but-curious" not in GLOBAL_FEATURES
    assert [r.status for r in budget.spends()] == ["failed"]


def test_identifier_truncation_bounds_one_persons_rows(make_holder: Callable[..., Any]) -> None:
    holder, _, _ = make_holder()
    auth = holder._policy.authorise(SI, "110000", "beijing-planning", "planning")
    plan = engine.plan_query(q(epsilon=1.0), auth.dataset, auth.terms, "120000")
    cal = engine.calibrate(plan)
    # One person with 50 rows moves the count by at most max_rows = 1 before noise.
    rows = pl.LazyFrame({"person_id": ["p"] * 50 + [f"q{i}" for i in range(10)]})
    (cell,) = engine.execute(cal, rows).cells
    # Scale 1: |noise| >= 25 has probability ~1e-11; untruncated (60) would fail.
    assert abs(cell.value - 11) < 25


@pytest.mark.parametrize("eps", [0.1, 0.2, 0.07, 0.9])
@pytest.mark.parametrize(
    ("statistic", "column"),
    [
        (Statistic.COUNT, ""),
        (Statistic.SUM, "months_contributed"),
        (Statistic.MEAN, "monthly_base"),
    ],
)
def test_opendp_privacy_loss_is_never_above_the_units_charged(
    make_holder: Callable[..., Any], eps: float, statistic: Statistic, column: str
) -> None:
    # The noise was calibrated to the float epsilon (0.1 is 0.1000000000000000055...)
    # while the budget charged 10**8 units (0.1 exactly): OpenDP's own privacy map
    # then said more was spent than was charged.
    holder, _, _ = make_holder()
    auth = holder._policy.authorise(SI, "110000", "beijing-planning", "planning")
    plan = engine.plan_query(
        q(statistic, column=column, epsilon=eps), auth.dataset, auth.terms, "120000"
    )
    cal = engine.calibrate(plan)
    loss = float(cal.measurement.map(engine._input(plan)[2]))
    assert Fraction(loss) <= Fraction(eps_charge_units(eps), EPS_UNIT)
    assert cal.epsilon == eps  # what the release states and the ledger records


def test_peer_seam_round_trips_protobuf(
    make_holder: Callable[..., Any],
) -> None:
    holder, ledger, _ = make_holder()
    req = stats_pb2.PeerStatsRequest(
        service_system="hebei-planning",
        query=query_to_proto(q(group_by=("age_band",))),
        federated_query_id="0b6f3c1e-2d4a-4f5b-8c7d-9e0f1a2b3c4d",
    )
    resp = holder.handle_peer(
        req,
        requester="130000",
        request_id="6f1c2a4e-7b1d-4c3e-9a2f-0d8e5b7c1a23",
        now_ms=5,
        requester_signature_b64="c2ln",
        request_digest_hex="aa" * 32,
    )
    assert not resp.HasField("header")  # the transport fills and signs it
    assert list(resp.release.jurisdictions) == ["120000"] and len(resp.release.cells) == 6
    assert resp.receipt.index == 0 and resp.agreement_id == "stats-120000-2026"
    (event,) = ledger.events
    assert event.requester_signature == "c2ln" and event.request_digest == "aa" * 32
    assert dict(event.details)["federated_query_id"] == "0b6f3c1e-2d4a-4f5b-8c7d-9e0f1a2b3c4d"


def test_declared_privacy_unit_ungrouped_unfiltered_count_counts_every_row(
    make_holder: Callable[..., Any], new_ctx: Callable[..., Any], sources: dict[str, Path]
) -> None:
    # Regression: with no truncation and no columns needed, the prepared frame
    # once had zero columns (and so zero rows), and every count came out ~0.
    holder, _, _ = make_holder(truncate_by_identifier=False)
    value = holder.answer(q(epsilon=1.0), new_ctx()).release.cells[0].value
    rows = sum(truth(sources["120000"], ["age_band"]).values())
    assert abs(value - rows) < 25  # Laplace scale 1: |noise| >= 25 has probability ~1e-11


def test_undeclared_purpose_is_refused(
    make_holder: Callable[..., Any], new_ctx: Callable[..., Any]
) -> None:
    holder, ledger, budget = make_holder()
    query = StatsQuery(
        dataset=SI, purpose="marketing", statistic=Statistic.COUNT, epsilon=0.5, confidence=0.95
    )
    with pytest.raises(PolicyDenied, match="marketing"):
        holder.answer(query, new_ctx())
    assert budget.spends() == []  # nothing spent on a refusal
    assert len(ledger.of_kind("stats_refusal")) == 1


class StrictLedger:
    """A ledger that refuses what the real one refuses (``validate_event``)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def append(self, event: Any, rider: object | None = None) -> Any:
        validate_event(event)
        return self.inner.append(event)


@pytest.mark.parametrize("fqid", ["x\ny", "a" * 200, "\x1b[2J"])
def test_peer_federated_query_id_the_ledger_refuses_is_refused_before_any_budget_is_spent(
    make_holder: Callable[..., Any], fqid: str
) -> None:
    # Attack: a peer sends a federated_query_id the ledger cannot record. It was
    # copied into the entry's details unchecked: the holder reserved budget, read
    # the data and computed the release, then failed to ledger both the release
    # and the refusal: a spend with no entry at all.
    holder, ledger, budget = make_holder()
    holder._ledger = StrictLedger(ledger)
    req = stats_pb2.PeerStatsRequest(
        service_system="hebei-planning", query=query_to_proto(q()), federated_query_id=fqid
    )
    with pytest.raises(InvalidArgument, match="federated_query_id"):
        holder.handle_peer(
            req, requester="130000", request_id="6f1c2a4e-7b1d-4c3e-9a2f-0d8e5b7c1a23", now_ms=5
        )
    assert budget.spends() == []
    (event,) = ledger.events
    assert event.kind == "stats_refusal" and "malformed" in event.reason


def test_holder_entry_of_a_query_over_long_column_names_fits_the_ledger(
    make_holder: Callable[..., Any], new_ctx: Callable[..., Any]
) -> None:
    # A catalogue may name columns of up to 64 characters and a query may group by
    # 8 and filter on 16 of them: joined into one details value they exceeded what
    # the ledger accepts, so such a release was charged and then never ledgered.
    holder, _, _ = make_holder()
    long = [f"c{i}_" + "x" * 60 for i in range(8)]
    query = q(
        group_by=tuple(long[:4]),
        filters=tuple(StatsFilter(c, ("v",)) for c in long[4:]),
    )
    event = holder._event("stats_release", "allow", "r", query, new_ctx(), None, {})
    validate_event(event)
    details = dict(event.details)
    assert details["group_by_2"] and details["filters_2"]


@pytest.mark.parametrize(
    ("statistic", "extra"),
    [
        (Statistic.MEDIAN, {}),  # failed (INTERNAL) after the budget was spent
        (Statistic.HISTOGRAM, {"bin_edges": (0.0, 300.0, 600.0)}),  # silently all empty
        (Statistic.SUM, {}),
    ],
)
def test_filter_on_the_measured_column_is_refused_before_any_budget_is_spent(
    make_holder: Callable[..., Any], statistic: Statistic, extra: dict[str, Any]
) -> None:
    # A catalogue may declare both public_keys and bounds on a column, and an
    # agreement list it as both a filter and a measure. A query measuring it and
    # filtering on it turned the measured values into filter keys.
    holder, _, _ = make_holder()
    auth = holder._policy.authorise(SI, "110000", "beijing-planning", "planning")
    terms = auth.terms.model_copy(update={"filters": (*auth.terms.filters, "months_contributed")})
    keyed = tuple(
        c.model_copy(update={"public_keys": ("1", "2", "600")})
        if c.name == "months_contributed"
        else c
        for c in auth.dataset.columns
    )
    dataset = auth.dataset.model_copy(update={"columns": keyed})
    query = q(
        statistic,
        column="months_contributed",
        filters=(StatsFilter("months_contributed", ("600",)),),
        **extra,
    )
    with pytest.raises(InvalidArgument, match="cannot also be a filter"):
        engine.plan_query(query, dataset, terms, "120000")
