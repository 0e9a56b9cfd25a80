"""Two replicas of one gateway on one PostgreSQL schema, in one process each... of this test.

The holder 110000 runs as two ``Gateway`` instances (own ports, same keys, same
database); the bundle lists both peer endpoints; the requesters spread calls
over them and move off one that stops.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from gateway.config import load_config
from gateway.demo.setup import add_replicas, build_federation
from gateway.ledger.verify import verify_store
from gateway.server.app import Gateway
from tests.conftest import RunningFederation
from tests.helpers import ledger_events
from tests.pgtest import fresh_schema, postgres_dsn
from tests.storage.kit import hebei_exchange


class _Counting:
    """Counts the peer record requests one replica served."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.served = 0

    def fetch_records(self, *args: Any) -> Any:
        self.served += 1
        return self.inner.fetch_records(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _wait(cond: Any, timeout: float = 15.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return False


def test_replicas_share_one_log_spread_calls_and_hand_over_the_lease(tmp_path: Path) -> None:
    dsn = postgres_dsn()
    with fresh_schema(dsn, "rep") as schema:
        fed = build_federation(tmp_path, rows=100)
        replicas = add_replicas(fed, "110000", dsn, schema, 2)
        gws = {c: Gateway(load_config(fed.sites[c].config)) for c in ("120000", "130000")}
        holders = [Gateway(load_config(r.config)) for r in replicas]
        counters = []
        for h in holders:
            h.holder = _Counting(h.holder)  # type: ignore[assignment]
            counters.append(h.holder)
        rf = RunningFederation(fed, {**gws, "110000": holders[0]})
        try:
            for gw in [*holders, *gws.values()]:
                gw.start()
            assert [h.stores.lease.held() for h in holders].count(True) == 1
            with ThreadPoolExecutor(8) as pool:
                ids = list(pool.map(lambda _: hebei_exchange(rf), range(24)))
            assert all(c.served > 0 for c in counters), "calls were not spread"
            # One linear log: every exchange once on each side.
            shared = holders[1].ledger.entries(0, holders[1].stores.ledger.size())
            holder_ids = [r.event.request_id for r in shared if r.event.kind == "transfer"]
            assert sorted(holder_ids) == sorted(ids)
            req_ids = [e.request_id for e in ledger_events(gws["130000"]) if e.kind == "transfer"]
            assert sorted(req_ids) == sorted(ids)

            # Only the lease holder runs witness rounds.
            first = next(i for i, h in enumerate(holders) if h.stores.lease.held())
            other = holders[1 - first]
            assert other.checkpoint_and_witness() == {}
            outcomes = holders[first].checkpoint_and_witness()
            assert set(outcomes) == {"120000", "130000"}, outcomes
            assert all(o.startswith("cosigned") for o in outcomes.values()), outcomes

            # The lease holder stops: the other replica takes over; calls go on.
            holders[first].stop(grace=0.2)
            more = [hebei_exchange(rf) for _ in range(6)]
            assert len(set(more)) == 6
            assert _wait(other.stores.lease.held), "no takeover"
            # The peers' witnesses accept the new holder's checkpoint as consistent
            # with the one they cosigned from the old holder.
            outcomes = other.checkpoint_and_witness()
            assert all(o.startswith("cosigned") for o in outcomes.values()), outcomes
            cp = other.ledger.checkpoint_now()
            # Every exchange once as a transfer, plus at most one signed receipt
            # each (the requesters' batched acknowledgements, issue 10; off the
            # request path, so more may arrive after the checkpoint).
            assert cp.checkpoint.size <= other.stores.ledger.size()
            kinds: dict[str, list[str]] = {}
            for r in other.ledger.entries(0, cp.checkpoint.size):
                kinds.setdefault(r.event.kind, []).append(r.event.request_id)
            assert sorted(kinds.pop("transfer")) == sorted([*ids, *more])
            receipts = kinds.pop("receipt", [])
            assert len(set(receipts)) == len(receipts) and set(receipts) <= {*ids, *more}
            assert kinds == {}, kinds
            report = verify_store(
                other.stores.ledger, other.ledger.origin, other.keys.ledger.verify_key
            )
            assert report.ok, report.problem
            sizes = [c.checkpoint.size for c in other.ledger.checkpoints()]
            assert sizes == sorted(set(sizes))
        finally:
            for gw in [*holders, *gws.values()]:
                gw.stop(grace=0.2)
