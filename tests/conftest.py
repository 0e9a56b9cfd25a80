"""Shared fixtures: a real three-gateway federation on loopback.

The federation is laid out once per session (keys, signed bundle, seeded
SQLite sources) and its gateways run in-process on real sockets with real
TLS. Tests that stop or reconfigure gateways build their own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.client import ServiceClient
from gateway.config import load_config
from gateway.demo.setup import Federation, GatewaySite, build_federation
from gateway.server.app import Gateway
from tests.dbs import scratch_schema

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@dataclass
class RunningFederation:
    fed: Federation
    gateways: dict[str, Gateway]

    def site(self, code: str) -> GatewaySite:
        return self.fed.sites[code]

    def client(self, code: str, service: str, token: str | None = None) -> ServiceClient:
        site = self.fed.sites[code]
        return ServiceClient(
            site.service_address,
            site.tls_cert,
            code,
            token if token is not None else site.tokens[service],
        )

    def subject(self, code: str, sql: str) -> str:
        with sqlite3.connect(f"file:{self.fed.sites[code].data_source}?mode=ro", uri=True) as c:
            return str(c.execute(sql).fetchone()[0])

    def commuter(self) -> str:
        return self.subject(
            "110000",
            "SELECT person_id FROM si_contributions WHERE residence_jurisdiction='130000' LIMIT 1",
        )


def start_federation(
    root: Path,
    rows: int = 300,
    policies: Path | None = None,
    suite: str = "intl",
    sm2_user_id: str = "",
    source: tuple[str, str] | None = None,
) -> RunningFederation:
    """Lay out and start the cluster; ``source`` = (SQLAlchemy URL, schema
    prefix) serves the holders' registers from that database."""
    extra: dict[str, object] = {"policies": policies} if policies else {}
    if source is not None:
        extra |= {"source_url": source[0], "source_schema": source[1]}
    fed = build_federation(root, rows=rows, suite=suite, sm2_user_id=sm2_user_id, **extra)  # type: ignore[arg-type]
    gws = {code: Gateway(load_config(site.config)) for code, site in fed.sites.items()}
    for gw in gws.values():
        gw.start()
    return RunningFederation(fed, gws)


def stop_federation(rf: RunningFederation) -> None:
    for gw in rf.gateways.values():
        gw.stop(grace=0.2)


@contextmanager
def engine_federation(
    engine: str, root: Path, rows: int = 300, suite: str = "intl"
) -> Iterator[RunningFederation]:
    """A running cluster whose holders read from ``engine`` ("sqlite", "postgresql",
    "mariadb"); the database schemas are dropped afterwards."""
    if engine == "sqlite":
        rf = start_federation(root, rows=rows, suite=suite)
        try:
            yield rf
        finally:
            stop_federation(rf)
        return
    with scratch_schema(engine) as source:
        rf = start_federation(root, rows=rows, suite=suite, source=source)
        try:
            yield rf
        finally:
            stop_federation(rf)


SUITES = ("intl", "gm")


@pytest.fixture(scope="session", params=SUITES)
def federation(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[RunningFederation]:
    """The shared federation, once per cipher suite: every test using it runs for both."""
    rf = start_federation(
        tmp_path_factory.mktemp(f"federation-{request.param}"), suite=request.param
    )
    yield rf
    stop_federation(rf)
