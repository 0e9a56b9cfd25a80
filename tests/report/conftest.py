"""A federation with exchanges, refusals and statistics recorded, for the audit report."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.conftest import RunningFederation, start_federation, stop_federation


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFederation]:
    rf = start_federation(tmp_path_factory.mktemp("audited"), rows=150)
    commuter = rf.commuter()
    si = dict(holder_jurisdiction="110000", dataset="si_contributions")
    with rf.client("130000", "hebei-housing-fund") as c:
        c.get_records(**si, purpose="housing_fund_transfer", subject_ids=[commuter])
        for purpose in ("marketing", "housing_fund_transfer"):
            try:
                c.get_records(**si, purpose=purpose, subject_ids=[commuter], fields=["phone"])
            except grpc.RpcError:
                pass
    with rf.client("120000", "tianjin-planning") as c:
        for _ in range(2):
            c.query_statistics(
                ["110000", "130000"], "si_contributions", "commuter_planning", "count",
                epsilon=0.5, group_by=["age_band"],
            )  # fmt: skip
    for gw in rf.gateways.values():
        gw.checkpoint_and_witness()
    yield rf
    stop_federation(rf)


def ledgers(rf: RunningFederation) -> list[Path]:
    return [rf.site(c).root / "data" / "ledger.sqlite" for c in sorted(rf.gateways)]
