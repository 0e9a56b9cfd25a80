"""Helpers shared by the storage tests (fixtures live in conftest.py)."""

from __future__ import annotations

from tests.conftest import RunningFederation


def hebei_exchange(rf: RunningFederation) -> str:
    """One allowed exchange: Hebei's housing fund asks Beijing for one record; its request id."""
    with rf.client("130000", "hebei-housing-fund") as c:
        resp = c.get_records(
            holder_jurisdiction="110000",
            dataset="si_contributions",
            purpose="housing_fund_transfer",
            subject_ids=[rf.commuter()],
        )
    assert len(resp.records) == 1
    return str(resp.request_id)
