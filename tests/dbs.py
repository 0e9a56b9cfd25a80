"""Real database servers for tests: PostgreSQL and MariaDB, each test its own schema.

URLs come from ``GATEWAY_TEST_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``) and
``GATEWAY_TEST_MARIADB_URL`` (default ``mysql+pymysql://root@127.0.0.1:3306/test``).
With ``CI=true`` an unreachable server fails the test; elsewhere it skips with a
message naming the variable.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from gateway.demo.sqlseed import drop_schema


@dataclass(frozen=True)
class Server:
    engine: str  # "postgresql" | "mariadb"
    env: str
    default: str

    @property
    def url(self) -> str:
        return os.environ.get(self.env, self.default)


SERVERS = {
    "postgresql": Server(
        "postgresql",
        "GATEWAY_TEST_POSTGRES_URL",
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    ),
    "mariadb": Server(
        "mariadb", "GATEWAY_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"
    ),
}
# The engines every parametrised end-to-end test runs against.
ENGINES = ("sqlite", "postgresql", "mariadb")
# (cipher suite, engine) pairs for end-to-end tests: every suite on SQLite, every
# database engine on the default suite (the two axes are independent).
SUITE_ENGINES = (("intl", "sqlite"), ("gm", "sqlite"), ("intl", "postgresql"), ("intl", "mariadb"))


def require(server: Server) -> str:
    """The server's URL, or skip (fail under CI=true) if it cannot be reached."""
    engine = sa.create_engine(server.url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sa.exc.SQLAlchemyError as exc:
        message = (
            f"{server.engine} not reachable at {sa.make_url(server.url).render_as_string(hide_password=True)} "
            f"({type(exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc).__name__}); "
            f"set {server.env}"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    finally:
        engine.dispose()
    return server.url


@contextmanager
def scratch_schema(engine: str) -> Iterator[tuple[str, str]]:
    """(url, schema prefix) on a reachable server; every schema starting with
    the prefix is dropped afterwards."""
    url = require(SERVERS[engine])
    prefix = f"gwtest_{secrets.token_hex(4)}"
    try:
        yield url, prefix
    finally:
        eng = sa.create_engine(url)
        try:
            with eng.connect() as conn:
                names = sa.inspect(conn).get_schema_names()
        finally:
            eng.dispose()
        for name in names:
            if name.startswith(prefix):
                drop_schema(url, name)
