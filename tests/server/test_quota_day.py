"""Which day a holder charges an exchange to: its own, never the requester's."""

from __future__ import annotations

import time
from pathlib import Path

from gateway.config import load_config
from gateway.demo.setup import CLUSTER, build_federation
from gateway.policy.quota import QuotaKey, utc_day
from gateway.server.app import Gateway
from tests.conftest import RunningFederation
from tests.storage.kit import hebei_exchange

DAY_MS = 86_400_000


def test_requester_skewing_its_header_across_midnight_cannot_pick_the_quota_day(
    tmp_path: Path,
) -> None:
    """Hebei's clock (so its request headers) runs 250 s ahead of Beijing's, inside the
    replay window, across UTC midnight: Beijing charges the exchange to its own day.
    (The header's time chose the day, so a requester could move its requests into
    the next day's quota near midnight.)"""
    members = tuple(m for m in CLUSTER if m.code in ("110000", "130000"))
    fed = build_federation(tmp_path, rows=50, members=members)
    real0 = time.time()
    holder_base = ((int(real0 * 1000) // DAY_MS) + 1) * DAY_MS - 100_000  # 23:58:20 UTC

    def holder_clock() -> int:
        return holder_base + int((time.time() - real0) * 1000)

    def requester_clock() -> int:
        return holder_clock() + 250_000  # the next UTC day

    bj_site, hb_site = fed.sites["110000"], fed.sites["130000"]
    bj = Gateway(load_config(bj_site.config), clock_ms=holder_clock)
    hb = Gateway(load_config(hb_site.config), clock_ms=requester_clock)
    try:
        bj.start()
        hb.start()
        hebei_exchange(RunningFederation(fed, {"110000": bj, "130000": hb}))
        holder_day, requester_day = utc_day(holder_clock()), utc_day(requester_clock())
        assert holder_day != requester_day
        key = QuotaKey("110000", "si_contributions", "130000", "hebei-housing-fund", holder_day)
        assert bj.quota.used(key) == 1
        other = QuotaKey(
            "110000", "si_contributions", "130000", "hebei-housing-fund", requester_day
        )
        assert bj.quota.used(other) == 0
    finally:
        hb.stop(grace=0)
        bj.stop(grace=0)
