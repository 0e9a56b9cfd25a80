"""Budget store: never overspends (pure arithmetic, 100 concurrent threads), survives restarts."""

from __future__ import annotations

import sqlite3
import threading
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import BudgetExhausted, ReplayRejected, StorageFailure
from gateway.stats.budget import (
    EPS_UNIT,
    Caps,
    Spend,
    SqliteBudgetStore,
    Usage,
    check_charge,
    eps_cap_units,
    eps_charge_units,
    eps_loss_bound,
)

CAPS = Caps(epsilon_per_requester=3.0, epsilon_total=10.0)


def spend(i: int | str, eps: float = 1.0, requester: str = "120000/tianjin-planning") -> Spend:
    return Spend("si_contributions", requester, eps, 0.0, f"req-{i}", "ab" * 32, 0)


@given(
    spent_req=st.integers(0, 4 * EPS_UNIT),
    spent_tot=st.integers(0, 12 * EPS_UNIT),
    eps=st.floats(1e-6, 5.0),
)
def test_check_charge_refuses_exactly_when_a_cap_would_be_exceeded(
    spent_req: int, spent_tot: int, eps: float
) -> None:
    usage = Usage(spent_req, max(spent_req, spent_tot), 0, 0)
    units = eps_charge_units(eps)
    over = usage.requester_eps + units > eps_cap_units(
        CAPS.epsilon_per_requester
    ) or usage.total_eps + units > eps_cap_units(CAPS.epsilon_total)
    if over:
        with pytest.raises(BudgetExhausted, match="remaining epsilon"):
            check_charge(usage, units, 0, CAPS, "x")
    else:
        check_charge(usage, units, 0, CAPS, "x")


@given(st.floats(1e-12, 100.0))
def test_charge_rounds_up_never_down(eps: float) -> None:
    # Exactly: no tolerance (rounding to 3 decimals of a unit undercharged by
    # up to 5e-13 per query).
    units = eps_charge_units(eps)
    assert Fraction(units, EPS_UNIT) >= Fraction(repr(eps))
    assert units == 1 or Fraction(units - 1, EPS_UNIT) < Fraction(repr(eps))  # one unit at most
    bound = eps_loss_bound(eps)
    assert 0 < bound <= eps and Fraction(bound) <= Fraction(units, EPS_UNIT)


@pytest.mark.parametrize(
    ("eps", "units"),
    [(0.1000000000004, 100_000_001), (0.0000000010004, 2), (2.0000000000001, 2_000_000_001)],
)
def test_epsilon_just_above_a_unit_is_charged_the_next_unit(eps: float, units: int) -> None:
    # Attack: the charge was rounded to 3 decimals of a unit first, so an epsilon
    # less than half a thousandth of a unit above a whole unit was charged DOWN.
    assert eps_charge_units(eps) == units


@pytest.mark.parametrize(
    ("cap", "units"), [(2.9999999999996, 2_999_999_999), (0.9999999999999, 999_999_999)]
)
def test_cap_just_below_a_unit_is_rounded_down(cap: float, units: int) -> None:
    assert eps_cap_units(cap) == units
    assert eps_cap_units(3.0) == 3 * EPS_UNIT and eps_cap_units(0.3) == 3 * 10**8


def test_loss_bound_of_a_tenth_is_below_the_float_tenth() -> None:
    # The float 0.1 is 0.1000000000000000055...: a loss of exactly that float is
    # above the 10**8 units charged for it.
    assert eps_charge_units(0.1) == 10**8
    assert eps_loss_bound(0.1) < 0.1 and Fraction(eps_loss_bound(0.1)) <= Fraction(1, 10)
    assert eps_loss_bound(0.5) == 0.5 and eps_loss_bound(1e-300) == 1e-300


@pytest.mark.parametrize("eps", [1e-13, 4e-13, 1e-300])
def test_epsilon_below_half_a_unit_is_charged_one_unit_not_zero(tmp_path: Path, eps: float) -> None:
    # Attack: epsilon so small that rounding made the charge 0 units. Every store
    # refuses a 0-unit row (CHECK epsilon_units > 0), so the query failed as a
    # StorageFailure (UNAVAILABLE) after the dry run had accepted it; without
    # that CHECK it would have been a free release.
    assert eps_charge_units(eps) == 1
    store = SqliteBudgetStore(tmp_path / "b.db")
    usage = store.reserve(spend(1, eps), CAPS)
    assert usage.requester_eps == 1


def test_tenth_epsilon_thirty_times_fits_three_exactly_no_float_drift(tmp_path: Path) -> None:
    store = SqliteBudgetStore(tmp_path / "b.db")
    for i in range(30):
        store.reserve(spend(i, 0.1), CAPS)
    with pytest.raises(BudgetExhausted):
        store.reserve(spend("x", 0.1), CAPS)
    assert store.usage("si_contributions", "120000/tianjin-planning").requester_eps == 3 * EPS_UNIT


def test_overspend_refused_with_remaining_budget_in_message(tmp_path: Path) -> None:
    store = SqliteBudgetStore(tmp_path / "b.db")
    store.reserve(spend(1, 2.5), CAPS)
    with pytest.raises(BudgetExhausted, match=r"remaining epsilon 0\.5"):
        store.reserve(spend(2, 1.0), CAPS)
    # The refused query recorded nothing.
    assert len(store.spends()) == 1


def test_dataset_total_cap_binds_across_requesters(tmp_path: Path) -> None:
    store = SqliteBudgetStore(tmp_path / "b.db")
    caps = Caps(epsilon_per_requester=3.0, epsilon_total=5.0)
    store.reserve(spend(1, 3.0, "110000/a"), caps)
    store.reserve(spend(2, 2.0, "120000/b"), caps)
    with pytest.raises(BudgetExhausted, match="dataset 0"):
        store.reserve(spend(3, 0.5, "130000/c"), caps)


def test_budget_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    first = SqliteBudgetStore(path)
    first.reserve(spend(1, 2.0), CAPS)
    first.settle("req-1", "released")
    del first
    again = SqliteBudgetStore(path)
    assert again.usage("si_contributions", "120000/tianjin-planning").remaining(CAPS) == (1.0, 8.0)
    with pytest.raises(BudgetExhausted):
        again.reserve(spend(2, 1.5), CAPS)


def test_replayed_request_id_cannot_spend_twice(tmp_path: Path) -> None:
    store = SqliteBudgetStore(tmp_path / "b.db")
    store.reserve(spend(1, 0.5), CAPS)
    with pytest.raises(ReplayRejected):
        store.reserve(spend(1, 0.5), CAPS)


def test_failed_computation_is_not_refunded(tmp_path: Path) -> None:
    store = SqliteBudgetStore(tmp_path / "b.db")
    store.reserve(spend(1, 1.0), CAPS)
    store.settle("req-1", "failed")
    assert store.usage("si_contributions", "120000/tianjin-planning").requester_eps == EPS_UNIT
    with pytest.raises(StorageFailure):
        store.settle("req-1", "released")  # a settled reservation cannot change again


def test_spend_rows_cannot_be_deleted_or_rewritten_with_sql(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    SqliteBudgetStore(path).reserve(spend(1, 1.0), CAPS)
    with sqlite3.connect(path) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM spends")
        with pytest.raises(sqlite3.IntegrityError, match="settled"):
            conn.execute("UPDATE spends SET epsilon_units = 1")


def test_100_concurrent_reservations_never_overspend(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    # Two store objects on one file: in-process lock AND SQLite locking are exercised.
    stores = [SqliteBudgetStore(path), SqliteBudgetStore(path)]
    ok: list[int] = []
    refused: list[int] = []
    barrier = threading.Barrier(100)

    def worker(i: int) -> None:
        barrier.wait()
        try:
            stores[i % 2].reserve(spend(i, 0.07), CAPS)
            ok.append(i)
        except BudgetExhausted:
            refused.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ok) == 42  # floor(3.0 / 0.07)
    assert len(refused) == 58
    spent = stores[0].usage("si_contributions", "120000/tianjin-planning").requester_eps
    assert spent == 42 * eps_charge_units(0.07) <= eps_cap_units(3.0)
