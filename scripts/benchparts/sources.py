"""Sources benchmark: a statistics frame of N rows read from PostgreSQL vs from SQLite.

The same rows (the stats benchmark's synthetic register) sit in a SQLite file and
in a PostgreSQL schema; a fresh process loads the columns a group-by sum needs
(``age_band``, ``district_code``, ``monthly_base``) through the gateway's own
source (``SqliteSource.frame`` / ``SqlSource.frame``: server-side cursor,
batches into columnar chunks) and reports how much its peak resident set grew
and how long the load took. Target: the database source within the memory of
the SQLite one (ratio of peak growth <= 1.2: the PostgreSQL client library
holds one batch of rows that SQLite hands over one at a time).

The PostgreSQL URL is ``GATEWAY_TEST_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``); the schema is dropped after.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from benchparts.common import Report
from benchparts.stats import _rows

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = ["age_band", "district_code", "monthly_base"]
URL = os.environ.get(
    "GATEWAY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

_CHILD = """
import json, sys, time
from pathlib import Path
def hwm():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
from gateway.catalogue import SourceMapping, load_catalogue
from gateway.limits import Limits
from gateway.sources import SqliteSource
from gateway.sources.sql import SqlSource
import numpy, polars  # a gateway has both loaded (ledger verification, statistics)
kind, where, cols = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
ds = load_catalogue(Path(sys.argv[4])).dataset("si_contributions")
if kind == "sqlite":
    src = SqliteSource(Path(where), Limits())
else:
    url, table = where.split("|")
    ds = ds.model_copy(update={"source": SourceMapping(url=url, table=table)})
    src = SqlSource(url, Limits())
src.guarantees_unique(ds, "person_id")  # connect (and import the driver) before measuring
before = hwm()
t0 = time.perf_counter()
df = src.frame(ds, cols).collect()
seconds = time.perf_counter() - t0
print(json.dumps({"rows": df.height, "seconds": seconds, "before_kb": before, "peak_kb": hwm(),
                  "frame_kb": df.estimated_size() // 1024}))
"""


def _measure(kind: str, where: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, kind, where, ",".join(COLUMNS), str(ROOT / "policies" / "110000")],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run(quick: bool = False) -> Report:
    import sqlalchemy as sa

    n = 20_000 if quick else 1_000_000
    report = Report(
        f"sources: statistics frame of {n:,} rows ({', '.join(COLUMNS)}) from PostgreSQL vs SQLite",
        ["seconds", "rows", "RSS growth MB", "frame MB"],
    )
    probe = sa.create_engine(URL, connect_args={"connect_timeout": 5})
    try:
        with probe.connect():
            pass
    except sa.exc.SQLAlchemyError:
        shown = sa.make_url(URL).render_as_string(hide_password=True)
        report.notes.append(
            f"skipped: PostgreSQL not reachable at {shown}; set GATEWAY_TEST_POSTGRES_URL"
        )
        return report
    finally:
        probe.dispose()
    df = _rows(n)
    with tempfile.TemporaryDirectory(prefix="bench-sources-") as tmp:
        path = Path(tmp) / "source.sqlite"
        with sqlite3.connect(path) as conn:
            conn.execute(
                "CREATE TABLE si_contributions (person_id TEXT, age_band TEXT, district_code TEXT,"
                " monthly_base REAL)"
            )
            conn.executemany(
                "INSERT INTO si_contributions VALUES (?, ?, ?, ?)",
                df.select("person_id", *COLUMNS).iter_rows(),
            )
        schema = f"gwbench_{secrets.token_hex(4)}"
        engine = sa.create_engine(URL)
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
                conn.exec_driver_sql(
                    f'CREATE TABLE "{schema}".si_contributions (person_id varchar(18),'
                    " age_band varchar(8), district_code varchar(6), monthly_base numeric(10,2))"
                )
                raw = conn.connection.dbapi_connection
                assert raw is not None
                with raw.cursor() as cur:  # type: ignore[attr-defined]
                    with cur.copy(
                        f'COPY "{schema}".si_contributions (person_id, age_band, district_code,'
                        " monthly_base) FROM STDIN"
                    ) as copy:
                        for row in df.select("person_id", *COLUMNS).iter_rows():
                            copy.write_row(row)
            results = {
                "sqlite": _measure("sqlite", str(path)),
                "postgresql": _measure("postgresql", f"{URL}|{schema}.si_contributions"),
            }
        finally:
            with engine.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            engine.dispose()
    growth = {}
    for name, r in results.items():
        growth[name] = (r["peak_kb"] - r["before_kb"]) / 1024
        report.row(name, r["seconds"], int(r["rows"]), growth[name], r["frame_kb"] / 1024)
    report.ratio(
        "peak_rss_growth (postgresql/sqlite)",
        growth["postgresql"] / max(growth["sqlite"], 0.1),
        "<= 1.2",
    )
    report.notes.append(
        "each load in a fresh process; RSS growth = peak resident set during the load minus before it"
    )
    return report
