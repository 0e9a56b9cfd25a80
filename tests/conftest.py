"""Shared fixtures: a real three-gateway federation on loopback.

The federation is laid out once per session (keys, signed bundle, seeded
SQLite sources) and its gateways run in-process on real sockets with real
TLS. Tests that stop or reconfigure gateways build their own.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.client import ServiceClient
from gateway.config import load_config
from gateway.demo.setup import PORT_RANGE_ENV, Federation, GatewaySite, build_federation, port_range
from gateway.server.app import Gateway
from tests.dbs import scratch_schema

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _ports_of_this_worker() -> None:
    """Under pytest-xdist each worker (and every gateway, bench or demo process it
    starts) picks listening ports from its own slice, so two workers never hand
    out the same port between picking it and binding it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ...
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2 or PORT_RANGE_ENV in os.environ:
        return
    lo, hi = port_range()
    span = (hi - lo + 1) // count
    first = lo + int(worker[2:]) * span
    os.environ[PORT_RANGE_ENV] = f"{first}-{first + span - 1}"


_ports_of_this_worker()


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
    return start_gateways_of(fed)


def start_gateways_of(fed: Federation) -> RunningFederation:
    """Start, in this process, every gateway of a laid-out federation."""
    gws = {code: Gateway(load_config(site.config)) for code, site in fed.sites.items()}
    for gw in gws.values():
        gw.start()
    return RunningFederation(fed, gws)


def stop_federation(rf: RunningFederation) -> None:
    for gw in rf.gateways.values():
        gw.stop(grace=0.2)


@contextmanager
def running(fed: Federation) -> Iterator[RunningFederation]:
    """Every gateway of ``fed`` running for the block, stopped afterwards."""
    rf = start_gateways_of(fed)
    try:
        yield rf
    finally:
        stop_federation(rf)


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
