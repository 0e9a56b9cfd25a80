"""Helpers shared by the storage tests (fixtures live in conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import RunningFederation, running


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


@contextmanager
def running_with_one_site_on_postgres(
    root: Path, dsn: str, schema: str, code: str, rows: int
) -> Iterator[RunningFederation]:
    """The three-gateway federation, ``code`` keeping its state in PostgreSQL
    (``schema``), the others on SQLite; every gateway stopped afterwards."""
    from gateway.demo.setup import build_federation, use_storage

    fed = build_federation(root, rows=rows)
    use_storage(fed.sites[code].config, dsn, schema)
    with running(fed) as rf:
        yield rf
