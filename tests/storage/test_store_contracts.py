"""One contract, two backends: every store behaves the same on SQLite and PostgreSQL.

Each test takes ``backend`` (parametrised: sqlite, postgres) and opens one or
two "replicas" of the same state with ``backend.open()``. Races use real
threads against real databases.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import pytest

from gateway.crypto import SigningKey
from gateway.errors import (
    BudgetExhausted,
    InvalidArgument,
    QuotaExceeded,
    ReplayRejected,
    StorageFailure,
    TrustBundleRejected,
)
from gateway.ledger.ledger import Ledger
from gateway.ledger.storage import EntryRow, SizeConflict
from gateway.ledger.verify import verify_store
from gateway.ledger.witness import Evidence, WitnessConflict, WitnessState
from gateway.policy.quota import QuotaKey
from gateway.stats.budget import Caps, Spend
from tests.ledger.ledger_testkit import ORIGIN, make_event
from tests.storage.conftest import Backend

KEY = SigningKey.generate()


def _race(n: int, fn: Callable[[int], object]) -> list[object]:
    """Run fn(0..n-1) from n threads released together; results or exceptions."""
    start = threading.Barrier(min(n, 16))

    def one(i: int) -> object:
        if i < 16:
            start.wait()
        try:
            return fn(i)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, range(n)))


# -- ledger ------------------------------------------------------------------


def test_ledger_round_trip_verifies_with_the_same_root(backend: Backend) -> None:
    stores = backend.open()
    ledger = Ledger(stores.ledger, KEY, ORIGIN, checkpoint_every=5)
    for i in range(23):
        ledger.append(make_event(i))
    ledger.checkpoint_now()
    report = verify_store(stores.ledger, ORIGIN, KEY.verify_key)
    assert report.ok, report.problem
    assert report.entries == 23
    assert report.root == ledger.root_at(23)
    assert [c.checkpoint.size for c in ledger.checkpoints()] == [5, 10, 15, 20, 23]
    assert ledger.find("req-000007")[0].index == 7
    proof = ledger.inclusion_proof(7, 23)
    assert proof == ledger.inclusion_proof(7, 23)


def test_ledger_of_the_gm_suite_verifies_on_every_backend(backend: Backend) -> None:
    """The stores never hash: a 国密 ledger (SM3 tree, SM2 checkpoints) round-trips as is."""
    from gateway import crypto

    gm = crypto.suite("gm")
    key = gm.generate_signing_key()
    stores = backend.open()
    ledger = Ledger(stores.ledger, key, ORIGIN, checkpoint_every=4)
    for i in range(9):
        ledger.append(make_event(i))
    ledger.checkpoint_now()
    report = verify_store(stores.ledger, ORIGIN, key.verify_key)
    assert report.ok, report.problem
    assert report.root == ledger.root_at(9)
    assert stores.ledger.get_meta("suite") == "gm"


def test_ledger_append_with_stale_size_is_refused_and_writes_nothing(backend: Backend) -> None:
    stores = backend.open()
    ledger = Ledger(stores.ledger, KEY, ORIGIN)
    ledger.append(make_event(0))
    row = EntryRow(5, b"x", b"y" * 32, "r", 1)
    with pytest.raises(SizeConflict):
        stores.ledger.append(0, [row], [], [])
    assert stores.ledger.size() == 1


def test_ledger_reopened_continues_the_same_chain(backend: Backend) -> None:
    first = backend.open()
    a = Ledger(first.ledger, KEY, ORIGIN, checkpoint_every=3)
    for i in range(4):
        a.append(make_event(i))
    b = Ledger(backend.open().ledger, KEY, ORIGIN, checkpoint_every=3)
    b.append(make_event(4))
    assert verify_store(first.ledger, ORIGIN, KEY.verify_key).ok


def test_ledger_replicas_appending_at_once_keep_one_linear_order(backend: Backend) -> None:
    """Two writers on one store (replicas on PostgreSQL; SQLite: two connections to one file)."""
    if backend.name == "sqlite":
        pytest.skip("SQLite serves one process; two writers only conflict and retry")
    r1, r2 = backend.open(), backend.open()
    l1 = Ledger(r1.ledger, KEY, ORIGIN, checkpoint_every=7)
    l2 = Ledger(r2.ledger, KEY, ORIGIN, checkpoint_every=7)
    out = _race(120, lambda i: (l1 if i % 2 else l2).append(make_event(i)))
    assert not [o for o in out if isinstance(o, Exception)]
    indexes = sorted(o.index for o in out)  # type: ignore[attr-defined]
    assert indexes == list(range(120))
    l1.checkpoint_now()
    l2.checkpoint_now()
    report = verify_store(r1.ledger, ORIGIN, KEY.verify_key)
    assert report.ok, report.problem
    sizes = [c.checkpoint.size for c in l1.checkpoints()]
    assert sizes == sorted(set(sizes)), "two checkpoints for one size"


def test_replica_behind_catches_up_from_the_lock_reply_or_reloads_when_far_behind(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica whose tail another moved builds on the stored head: from the leaf
    hashes sent with the lock when the gap is small, else by reloading its tail;
    either way one chain and one tree."""
    if backend.name == "sqlite":
        pytest.skip("one process owns a SQLite ledger: no other writer moves its tail")
    from gateway.storage.postgres import ledger as pg_ledger

    monkeypatch.setattr(pg_ledger, "CATCH_UP_ROWS", 5)
    r1, r2 = backend.open(), backend.open()
    l1 = Ledger(r1.ledger, KEY, ORIGIN, checkpoint_every=4)
    l2 = Ledger(r2.ledger, KEY, ORIGIN, checkpoint_every=4)
    reloads: list[int] = []
    load_tail = l2._load_tail
    monkeypatch.setattr(l2, "_load_tail", lambda head=None: (reloads.append(1), load_tail(head)))
    for i in range(3):
        l1.append(make_event(i))
    assert l2.append(make_event(3)).index == 3
    assert not reloads, "a gap of 3 must be caught up from the lock's reply"
    for i in range(4, 14):
        l1.append(make_event(i))
    assert l2.append(make_event(14)).index == 14
    assert reloads, "a gap of 10 > CATCH_UP_ROWS must reload the tail"
    l2.checkpoint_now()
    assert l2.root_at(15) == l1.root_at(15)
    report = verify_store(r1.ledger, ORIGIN, KEY.verify_key)
    assert report.ok, report.problem
    assert report.entries == 15


# -- replay --------------------------------------------------------------------


def test_replayed_request_id_is_refused_across_replicas(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    a.replay.check_and_record("120000", "req-1", 1000, 1000)
    with pytest.raises(ReplayRejected):
        b.replay.check_and_record("120000", "req-1", 1000, 1000)
    b.replay.check_and_record("130000", "req-1", 1000, 1000)  # another sender's id space


def test_racing_replicas_accept_one_request_id_exactly_once(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    out = _race(40, lambda i: (a if i % 2 else b).replay.check_and_record("120000", "same", 1, 1))
    assert sum(1 for o in out if o is None) == 1
    assert all(isinstance(o, ReplayRejected) for o in out if o is not None)


# -- quota -----------------------------------------------------------------------

QK = QuotaKey("110000", "household_register", "120000", "tj-social-security", "2026-12-01")


def test_quota_over_limit_is_refused_and_unchanged(backend: Backend) -> None:
    q = backend.open().quota
    assert q.used(QK) == 0
    assert q.consume(QK, 7, 10) == 7
    with pytest.raises(QuotaExceeded, match="used 7 of 10"):
        q.consume(QK, 4, 10)
    assert q.used(QK) == 7
    assert q.consume(QK, 3, 10) == 10
    next_day = QuotaKey(QK.holder, QK.dataset, QK.requester, QK.service_system, "2026-12-02")
    with pytest.raises(QuotaExceeded):
        q.consume(next_day, 11, 10)  # more than the limit on a fresh day
    assert q.used(next_day) == 0


def test_racing_replicas_never_overspend_a_quota(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    out = _race(60, lambda i: (a if i % 2 else b).quota.consume(QK, 1, 25))
    assert sum(1 for o in out if isinstance(o, int)) == 25
    assert all(isinstance(o, QuotaExceeded) for o in out if not isinstance(o, int))
    assert a.quota.used(QK) == 25


def test_quota_refund_gives_back_a_charge_and_never_goes_below_zero(backend: Backend) -> None:
    a, b = backend.open().quota, backend.open().quota
    assert a.consume(QK, 7, 10) == 7
    assert b.refund(QK, 3) == 4
    assert b.reading(QK) == 4 and a.used(QK) == 4  # the refund refreshed its reading
    assert a.refund(QK, 9) == 0  # floored: a refund never makes room the day never had
    next_day = QuotaKey(QK.holder, QK.dataset, QK.requester, QK.service_system, "2026-12-02")
    assert a.refund(next_day, 1) == 0 and a.used(next_day) == 0  # nothing to give back
    with pytest.raises(InvalidArgument):
        a.refund(QK, -1)


def test_racing_charges_and_refunds_never_hold_more_than_the_quota(backend: Backend) -> None:
    """Exchanges that fail give their charge back while others charge: at no moment
    do the charges held pass the quota, and the counter ends exactly at what stayed."""
    a, b = backend.open(), backend.open()
    limit, held, peak = 5, [0], [0]
    lock = threading.Lock()

    def exchange(i: int) -> object:
        store = (a if i % 2 else b).quota
        store.consume(QK, 1, limit)
        with lock:
            held[0] += 1
            peak[0] = max(peak[0], held[0])
        if i % 3:  # failed after the charge: give it back
            with lock:
                held[0] -= 1
            store.refund(QK, 1)
            return "refunded"
        return "kept"

    out = _race(60, exchange)
    kept = out.count("kept")
    assert peak[0] <= limit and 0 < kept <= limit
    assert all(o in ("kept", "refunded") or isinstance(o, QuotaExceeded) for o in out), out
    assert a.quota.used(QK) == b.quota.used(QK) == kept


def test_stale_quota_reading_never_lets_a_replica_release_past_the_quota(
    backend: Backend,
) -> None:
    """The policy's early check may read another replica's charges late; the
    charge itself refuses, and refreshes the reading."""
    a, b = backend.open().quota, backend.open().quota
    assert a.consume(QK, 6, 10) == 6
    assert a.reading(QK) == 6
    assert b.consume(QK, 4, 10) == 10
    assert a.reading(QK) in ((6, 10) if backend.name == "postgres" else (10,))
    with pytest.raises(QuotaExceeded, match="used 10 of 10"):
        a.consume(QK, 1, 10)
    assert a.reading(QK) == 10
    assert a.used(QK) == b.used(QK) == 10


# -- budget ----------------------------------------------------------------------

CAPS = Caps(epsilon_per_requester=10.0, epsilon_total=10.0)


def _spend(i: int, eps: float = 1.0, requester: str = "120000/tj") -> Spend:
    return Spend("household_register", requester, eps, 0.0, f"stat-{i}", "q" * 64, 1000 + i)


def test_budget_reserve_settle_and_exhaustion(backend: Backend) -> None:
    budget = backend.open().budget
    usage = budget.reserve(_spend(0, 4.0), CAPS)
    assert usage.requester_eps == 4 * 10**9
    budget.settle("stat-0", "released")
    with pytest.raises(StorageFailure):
        budget.settle("stat-0", "failed")  # settled once only
    with pytest.raises(BudgetExhausted, match="remaining epsilon 6"):
        budget.reserve(_spend(1, 6.5), CAPS)
    budget.reserve(_spend(2, 6.0, "130000/he"), CAPS)
    assert budget.usage("household_register", "130000/he").total_eps == 10 * 10**9
    totals = {(t.dataset, t.requester): t.epsilon for t in budget.totals()}
    assert totals == {
        ("household_register", "120000/tj"): 4.0,
        ("household_register", "130000/he"): 6.0,
    }


def test_budget_replayed_request_id_is_refused(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    a.budget.reserve(_spend(0), CAPS)
    with pytest.raises(ReplayRejected):
        b.budget.reserve(_spend(0), CAPS)


def test_racing_replicas_never_overspend_a_budget_of_10(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    out = _race(
        80,
        lambda i: (a if i % 2 else b).budget.reserve(_spend(i, 1.0, f"r{i % 3}/svc"), CAPS),
    )
    granted = [o for o in out if not isinstance(o, Exception)]
    assert len(granted) == 10
    assert all(isinstance(o, BudgetExhausted) for o in out if isinstance(o, Exception))
    total = sum(t.epsilon for t in a.budget.totals())
    assert total == 10.0


def test_reservation_never_settled_stays_counted_as_spent_after_a_restart(
    backend: Backend,
) -> None:
    # A release whose settle failed (its answer was already ledgered) leaves its
    # row ``reserved``: a restart or another replica must count it, never refund it.
    backend.open().budget.reserve(_spend(0, 6.0), CAPS)
    again = backend.open()
    assert again.budget.usage("household_register", "120000/tj").requester_eps == 6 * 10**9
    with pytest.raises(BudgetExhausted, match="remaining epsilon 4"):
        again.budget.reserve(_spend(1, 4.5), CAPS)
    assert again.spends.recorded(["stat-0"]) == {"stat-0"}  # the start-up check sees it
    again.budget.settle("stat-0", "released")  # a later settle still closes it once


def test_reservations_left_open_are_settled_at_start_up_from_the_ledger(
    backend: Backend,
) -> None:
    # Failure: a settle that failed after the release was ledgered (or a process
    # stopped between the append and the settle) left rows ``reserved`` forever,
    # indistinguishable from a request in progress. The start-up settles them
    # from the ledger; every one stays counted as spent.
    from gateway.ops.spent import Settled, settle_open_reservations

    stores = backend.open()
    ledger = Ledger(stores.ledger, KEY, ORIGIN)
    hour = 3_600_000
    now = 10 * hour

    def spend(i: int, at_ms: int) -> Spend:
        return Spend("household_register", "120000/tj", 1.0, 0.0, f"stat-{i}", "q" * 64, at_ms)

    for i, at in enumerate((hour, hour, hour, now - 1000, hour, hour)):
        stores.budget.reserve(spend(i, at), CAPS)
    stats = {"kind": "stats_release", "record_count": 0, "details": (("epsilon", "1.0"),)}
    ledger.append(make_event(0, request_id="stat-0", **stats))  # released, settle lost
    refusal = (("charged", "true"), ("epsilon", "1.0"))
    ledger.append(
        make_event(1, request_id="stat-1", kind="stats_refusal", decision="deny",
                   record_count=0, details=refusal)
    )  # fmt: skip
    # stat-2: nothing ledgered, an hour old: failed. stat-3: recent, maybe in
    # progress on a replica: left alone. stat-4: another gateway's entry only.
    ledger.append(make_event(4, request_id="stat-4", local="130000", **stats))
    stores.budget.settle("stat-5", "released")  # settled normally: untouched
    before = stores.budget.usage("household_register", "120000/tj")

    settled = settle_open_reservations(stores.ledger, "110000", stores.budget, now)

    assert settled == Settled(released=1, failed=3)
    status = {r.request_id: r.status for r in stores.budget.spends()}
    assert status == {
        "stat-0": "released",
        "stat-1": "failed",
        "stat-2": "failed",
        "stat-3": "reserved",
        "stat-4": "failed",
        "stat-5": "released",
    }
    assert stores.budget.usage("household_register", "120000/tj") == before  # none refunded
    # Another replica starting next finds nothing left to settle.
    again = backend.open()
    assert settle_open_reservations(again.ledger, "110000", again.budget, now) == Settled(0, 0)


def test_thirty_charges_of_an_epsilon_just_above_a_unit_cannot_overspend_the_cap(
    backend: Backend,
) -> None:
    # Attack: an epsilon 4e-13 above a whole number of units (1e-9) was charged
    # rounded to 3 decimals of a unit, i.e. DOWN to 0.1 exactly: 30 such queries
    # fitted a cap of 3.0 while spending 3.000000000012.
    budget = backend.open().budget
    caps = Caps(epsilon_per_requester=3.0, epsilon_total=3.0)
    eps = 0.1000000000004
    granted = 0
    for i in range(30):
        try:
            budget.reserve(_spend(i, eps), caps)
            granted += 1
        except BudgetExhausted:
            break
    assert granted == 29
    spent = budget.usage("household_register", "120000/tj").requester_eps
    assert Fraction(spent, 10**9) >= granted * Fraction(repr(eps))
    assert spent <= 3 * 10**9


def test_cap_just_below_a_unit_is_not_rounded_up_to_it(backend: Backend) -> None:
    # A cap of 2.9999999999996 was rounded to 3 decimals of a unit, i.e. UP to
    # 3.0: thirty queries at 0.1 fitted it.
    budget = backend.open().budget
    caps = Caps(epsilon_per_requester=2.9999999999996, epsilon_total=10.0)
    for i in range(29):
        budget.reserve(_spend(i, 0.1), caps)
    with pytest.raises(BudgetExhausted):
        budget.reserve(_spend(29, 0.1), caps)
    assert budget.usage("household_register", "120000/tj").requester_eps == 29 * 10**8


# -- witness -----------------------------------------------------------------------


def _state(size: int) -> WitnessState:
    return WitnessState(
        "120000.gateway.dataexchange.cn/ledger", size, bytes([size]) * 32, f"n{size}", size
    )


def test_witness_state_advances_by_compare_and_set(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    origin = _state(0).origin
    assert a.witness.latest(origin) is None
    a.witness.advance(None, _state(3))
    with pytest.raises(WitnessConflict):
        b.witness.advance(None, _state(4))  # another replica created it first
    with pytest.raises(WitnessConflict):
        b.witness.advance(2, _state(4))
    b.witness.advance(3, _state(5))
    assert a.witness.latest(origin) == _state(5)


def test_racing_replicas_advance_witness_state_once(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    a.witness.advance(None, _state(1))
    out = _race(20, lambda i: (a if i % 2 else b).witness.advance(1, _state(2 + i)))
    assert sum(1 for o in out if o is None) == 1
    assert all(isinstance(o, WitnessConflict) for o in out if o is not None)


def test_witness_evidence_is_kept(backend: Backend) -> None:
    w = backend.open().witness
    ev = Evidence("o", "fork", "held", "shown", "two roots at size 3", 7)
    w.record_evidence(ev)
    w.record_evidence(Evidence("p", "rollback", "h", "s", "d", 8))
    assert w.evidence("o") == [ev]
    assert len(w.evidence()) == 2


# -- bundle version ----------------------------------------------------------------


def test_bundle_version_never_goes_down_across_replicas(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    assert a.versions.highest() == 0
    a.versions.record(3)
    assert b.versions.highest() == 3
    with pytest.raises(TrustBundleRejected, match="older"):
        b.versions.record(2)
    b.versions.record(4)
    assert a.versions.highest() == 4
