"""The real PostgreSQL server tests run against, and a fresh schema per test.

``GATEWAY_TEST_POSTGRES_DSN`` names the server (default: the machine's
``postgresql://postgres@127.0.0.1:5432/test``). With ``CI=true`` an unreachable
server fails the test; elsewhere the test is skipped with a message naming
the variable.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import sql

ENV = "GATEWAY_TEST_POSTGRES_DSN"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_dsn() -> str:
    """The DSN, after checking the server answers (skip or fail as above)."""
    dsn = os.environ.get(ENV, DEFAULT_DSN)
    try:
        psycopg.connect(dsn, connect_timeout=3).close()
    except psycopg.Error as exc:
        message = f"PostgreSQL not reachable at {ENV}={dsn}: {str(exc).strip()[:200]}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: PostgreSQL tests must run)")
        pytest.skip(message + f"; set {ENV} to a server's DSN to run these tests")
    return dsn


@contextmanager
def fresh_schema(dsn: str, prefix: str = "t") -> Iterator[str]:
    """A new empty schema name, dropped (with everything in it) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
