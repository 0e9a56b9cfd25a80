"""The PostgreSQL quota store's remembered readings: how old, how many.

A reading of the shared quota saves the policy's early check a database round
trip; these tests pin how stale it may be (``Limits.quota_reading_seconds``)
and that memory stays bounded (``Limits.max_quota_readings``).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.limits import DEFAULT_LIMITS
from gateway.policy.quota import QuotaKey
from gateway.storage.postgres.db import PgDatabase
from gateway.storage.postgres.quota import PgQuotaStore


def _key(i: int) -> QuotaKey:
    return QuotaKey("110000", "household_register", "120000", f"sys-{i}", "2026-12-01")


@pytest.fixture
def db(pg_db: PgDatabase) -> PgDatabase:
    return pg_db


def test_reading_older_than_the_limit_is_read_again(db: PgDatabase) -> None:
    now = [0.0]
    limits = replace(DEFAULT_LIMITS, quota_reading_seconds=1.0)
    mine = PgQuotaStore(db, limits, clock=lambda: now[0])
    other = PgQuotaStore(db, limits)
    assert mine.reading(_key(0)) == 0
    other.consume(_key(0), 3, 10)
    now[0] = 0.9
    assert mine.reading(_key(0)) == 0  # within the window: the remembered reading
    now[0] = 1.1
    assert mine.reading(_key(0)) == 3  # past it: read again


def test_remembered_readings_are_bounded(db: PgDatabase) -> None:
    limits = replace(DEFAULT_LIMITS, max_quota_readings=4)
    store = PgQuotaStore(db, limits)
    for i in range(10):
        store.reading(_key(i))
        assert len(store._readings) <= 4
