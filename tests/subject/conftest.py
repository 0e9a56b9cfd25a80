"""Fixtures of the subject-access tests: a holder's ledger and index store, on
SQLite files in a temp folder and on a fresh PostgreSQL schema (``holder`` is
parametrised: every test taking it runs the same contract on both backends;
``backend``, from the storage tests, opens whole ``Stores`` on either)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pgtest import fresh_schema, postgres_dsn
from tests.storage.conftest import backend  # noqa: F401  (stores on sqlite and postgres)
from tests.subject.subject_testkit import Holder, open_holder


@pytest.fixture(params=["sqlite", "postgres"])
def holder(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Holder]:
    if request.param == "sqlite":
        h = open_holder(tmp_path)
        yield h
        h.close()
        return
    dsn = postgres_dsn()
    with fresh_schema(dsn, "subj") as schema:
        h = open_holder(tmp_path, (dsn, schema))
        yield h
        h.close()
