"""The demo's whole story (exchanges, refusals, streamed bulk transfer, federated
statistics, witnessing, offline compliance checks) with the holders' registers in
a real PostgreSQL or MariaDB instead of SQLite: ``gateway demo --source-url``."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.demo import chapters  # noqa: F401  (registers the statistics and ledger chapters)
from gateway.demo.run import run_demo
from tests.dbs import scratch_schema


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["postgresql", "mariadb"])
def test_demo_passes_with_the_registers_in_a_database(tmp_path: Path, engine: str) -> None:
    with scratch_schema(engine) as (url, prefix):
        assert (
            run_demo(tmp_path / "demo", rows=300, keep=False, source_url=url, source_schema=prefix)
            == 0
        )
