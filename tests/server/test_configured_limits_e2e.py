"""``[limits]`` in gateway.toml reaches the servers' readers, not only the library defaults.

Covers: the worker threads of each gRPC server (``server_workers``); a statistics query larger than the configured bound is refused at the
service API with INVALID_ARGUMENT before anything is asked of a holder (the
servicer once read the default limits, so a tighter configuration was ignored).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from gateway.config import load_config
from gateway.demo.setup import build_federation
from gateway.server.app import Gateway
from tests.conftest import RunningFederation


def test_configured_stats_filter_limit_refuses_a_larger_query_at_the_service_port(
    tmp_path: Path,
) -> None:
    fed = build_federation(tmp_path, rows=20)
    site = fed.sites["120000"]
    site.config.write_text(
        site.config.read_text(encoding="utf-8") + "\n[limits]\nmax_stats_filters = 1\n",
        encoding="utf-8",
    )
    gws = {code: Gateway(load_config(s.config)) for code, s in fed.sites.items()}
    for gw in gws.values():
        gw.start()
    try:
        rf = RunningFederation(fed, gws)
        filters = {"residence_jurisdiction": ["130000"], "age_band": ["25-34"]}
        with rf.client("120000", "tianjin-planning") as c:
            with pytest.raises(grpc.RpcError) as err:
                c.query_statistics(
                    ["110000"], "si_contributions", "commuter_planning", "count",
                    epsilon=0.5, filters=filters, dry_run=True,
                )  # fmt: skip
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "filters: expected at most 1" in (err.value.details() or "")
            one = {"residence_jurisdiction": ["130000"]}
            answer = c.query_statistics(
                ["110000"], "si_contributions", "commuter_planning", "count",
                epsilon=0.5, filters=one, dry_run=True,
            )  # fmt: skip
            assert answer is not None
    finally:
        for gw in gws.values():
            gw.stop(grace=0.2)


def test_configured_server_workers_bound_the_threads_serving_calls(tmp_path: Path) -> None:
    # A call holds a worker for its whole length: the configured number, not a
    # built-in one, is how many calls a port serves at once.
    fed = build_federation(tmp_path, rows=20)
    site = fed.sites["120000"]
    site.config.write_text(
        site.config.read_text(encoding="utf-8") + "\n[limits]\nserver_workers = 2\n",
        encoding="utf-8",
    )
    gw = Gateway(load_config(site.config))
    before = set(threading.enumerate())  # another test's idle workers may linger
    gw.start()
    try:
        rf = RunningFederation(fed, {"120000": gw})
        with rf.client("120000", "tianjin-planning") as c, ThreadPoolExecutor(12) as pool:
            for _ in range(5):
                list(pool.map(lambda _: c.list_datasets(), range(24)))
        serving = [
            t for t in set(threading.enumerate()) - before if t.name.startswith("svc-120000")
        ]
        assert 1 <= len(serving) <= 2
    finally:
        gw.stop(grace=0.2)
