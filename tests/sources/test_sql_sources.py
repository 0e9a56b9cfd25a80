"""Bureau databases as sources: real PostgreSQL and MariaDB, each test its own schema.

Covers the failures an operator meets: a mapped table or column that does not
exist (start-up names it), a database that is down (UNAVAILABLE for its
datasets only, the others served, no crash, no password or subject id in the
message), a missing environment variable, and that a database serves exactly
what the SQLite file serves (same values, same types, resumable bulk order).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.catalogue import Catalogue, Dataset, SourceMapping, load_catalogue
from gateway.demo.seed import seed_database
from gateway.demo.sqlseed import seed_sql_database
from gateway.errors import PolicyFileError, StorageFailure
from gateway.limits import Limits
from gateway.sources import Sources, SqliteSource
from gateway.sources.sql import SqlSource
from tests.dbs import scratch_schema
from tests.sources.source_testkit import assert_each_unavailable

ROOT = Path(__file__).resolve().parents[2]
LIMITS = Limits(source_batch_rows=64, source_connect_timeout_seconds=2)
ROWS = 300


def _with_source(cat: Catalogue, code: str, mapping: dict[str, object] | None) -> Catalogue:
    datasets = tuple(
        d.model_copy(update={"source": SourceMapping(**mapping) if mapping else None})  # type: ignore[arg-type]
        if d.code == code
        else d
        for d in cat.datasets
    )
    return cat.model_copy(update={"datasets": datasets})


@pytest.fixture(params=["postgresql", "mariadb"])
def seeded(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Catalogue, dict[str, dict[str, object]], Path]]:
    """(catalogue, mappings, sqlite path): the same rows in SQLite and in the server."""
    cat = load_catalogue(ROOT / "policies" / "110000")
    sqlite = tmp_path / "source.sqlite"
    seed_database(sqlite, cat, rows=ROWS, seed=7)
    with scratch_schema(request.param) as (url, prefix):
        mappings = seed_sql_database(url, f"{prefix}_bj", cat, rows=ROWS, seed=7)
        yield cat, mappings, sqlite


def _dataset(cat: Catalogue, mappings: dict[str, dict[str, object]]) -> Dataset:
    return _with_source(cat, "si_contributions", mappings["si_contributions"]).dataset(
        "si_contributions"
    )


def test_database_serves_the_same_values_and_types_as_sqlite(seeded) -> None:  # type: ignore[no-untyped-def]
    cat, mappings, sqlite = seeded
    ds = _dataset(cat, mappings)
    db = SqlSource(str(mappings["si_contributions"]["url"]), LIMITS)
    lite = SqliteSource(sqlite, LIMITS)
    try:
        ids = [str(r["person_id"]) for r in lite.scan(ds, ["person_id"], 5)[:5]]
        cols = list(ds.column_names)
        key = lambda r: str(r["person_id"])  # noqa: E731
        assert sorted(db.fetch(ds, ids, cols, 10), key=key) == sorted(
            lite.fetch(ds, ids, cols, 10), key=key
        )
        # Dates come back as ISO text, NUMERIC as float, INTEGER as int: as from SQLite.
        row = db.fetch(ds, ids[:1], cols, 1)[0]
        assert isinstance(row["birth_date"], str) and len(str(row["birth_date"])) == 10
        assert isinstance(row["monthly_base"], float)
        assert isinstance(row["months_contributed"], int)
        measured = ["age_band", "district_code", "monthly_base", "months_contributed"]
        a = db.frame(ds, measured).collect().sort(measured)
        b = lite.frame(ds, measured).collect().sort(measured)
        assert a.schema == b.schema and a.equals(b)
    finally:
        db.close()


def test_interrupted_bulk_stream_resumes_at_its_offset_without_gap_or_duplicate(seeded) -> None:  # type: ignore[no-untyped-def]
    cat, mappings, _ = seeded
    ds = _dataset(cat, mappings)
    db = SqlSource(str(mappings["si_contributions"]["url"]), LIMITS)
    try:
        cols = ["person_id", "age_band"]
        whole = [r for b in db.stream(ds, cols, 0, ROWS, 50) for r in b.rows()]
        assert len(whole) == ROWS
        batches = list(db.stream(ds, cols, 0, ROWS, 50))
        assert all(len(b) <= 50 for b in batches)
        first = list(next(iter(db.stream(ds, cols, 0, 120, 50))).rows())
        rest = [r for b in db.stream(ds, cols, 50, ROWS, 50) for r in b.rows()]
        assert first + rest == whole
    finally:
        db.close()


def test_missing_table_is_named_at_start_up_and_its_pool_released(  # type: ignore[no-untyped-def]
    seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    cat, mappings, sqlite = seeded
    m = dict(mappings["si_contributions"])
    m["table"] = str(m["table"]).rsplit(".", 1)[0] + ".no_such_register"
    disposed: list[str] = []
    real_close = SqlSource.close

    def close(self: SqlSource) -> None:
        disposed.append(self.name)
        real_close(self)

    monkeypatch.setattr(SqlSource, "close", close)
    with pytest.raises(PolicyFileError, match=r"no_such_register.*does not exist"):
        Sources(sqlite, _with_source(cat, "si_contributions", m), LIMITS)
    assert len(disposed) == 1  # the pool opened to check the table


def test_missing_column_is_named_at_start_up(seeded) -> None:  # type: ignore[no-untyped-def]
    cat, mappings, sqlite = seeded
    m = dict(mappings["si_contributions"])
    m["columns"] = {**dict(m.get("columns") or {}), "employer": "dwmc"}  # type: ignore[call-overload]
    with pytest.raises(PolicyFileError, match=r"column 'dwmc' \(catalogue column employer\)"):
        Sources(sqlite, _with_source(cat, "si_contributions", m), LIMITS)


def test_database_session_refuses_writes(seeded) -> None:  # type: ignore[no-untyped-def]
    _, mappings, _ = seeded
    m = mappings["si_contributions"]
    db = SqlSource(str(m["url"]), LIMITS)
    try:
        with pytest.raises(sa.exc.DBAPIError), db._engine.connect() as conn:
            conn.exec_driver_sql(f"DELETE FROM {m['table']}")
    finally:
        db.close()


def test_source_down_answers_unavailable_for_its_datasets_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cat = load_catalogue(ROOT / "policies" / "110000")
    sqlite = tmp_path / "source.sqlite"
    seed_database(sqlite, cat, rows=20, seed=3)
    down = {
        "url": "postgresql+psycopg://reader:s3cret-pw@127.0.0.1:1/registers",
        "table": "si_contributions",
    }
    mapped = _with_source(cat, "si_contributions", down)
    with caplog.at_level(logging.WARNING):
        sources = Sources(sqlite, mapped, LIMITS)  # starts: the others are served
    assert "unreachable at start-up" in caplog.text and "s3cret-pw" not in caplog.text
    try:
        ds = mapped.dataset("si_contributions")
        with pytest.raises(StorageFailure, match="unavailable") as err:
            sources.fetch(ds, ["110101199001011234"], ["person_id"], 5)
        message = str(err.value)
        assert "s3cret-pw" not in message and "110101199001011234" not in message
        assert "127.0.0.1" not in message  # the bureau's hosts stay in its own log
        assert err.value.grpc_code.name == "UNAVAILABLE"
        with pytest.raises(StorageFailure):
            sources.frame(ds, ["age_band"])
        other = mapped.dataset("population_core")  # still in SQLite
        assert len(sources.scan(other, ["person_id"], 5)) == 6
    finally:
        sources.close()
    assert "110101199001011234" not in caplog.text


def test_url_variable_missing_from_environment_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BJ_SI_DB_PASSWORD", raising=False)
    with pytest.raises(PolicyFileError, match="BJ_SI_DB_PASSWORD"):
        SqlSource("postgresql+psycopg://reader:${BJ_SI_DB_PASSWORD}@db.bj/si", LIMITS)


def test_mapping_naming_an_unknown_catalogue_column_is_refused() -> None:
    ds = load_catalogue(ROOT / "policies" / "110000").dataset("si_contributions")
    bad = {"url": "sqlite://", "table": "t", "columns": {"wage": "gz"}}
    with pytest.raises(ValueError, match=r"source\.columns names wage"):
        Dataset.model_validate({**ds.model_dump(), "source": bad})


def test_statistics_read_only_the_needed_columns_in_batches(seeded, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Personal-data columns a statistic does not use never leave the database,
    and the frame arrives in batches (one batch of Python rows alive at a time)."""
    import gateway.sources.sql as sql_module

    cat, mappings, _ = seeded
    ds = _dataset(cat, mappings)
    db = SqlSource(str(mappings["si_contributions"]["url"]), LIMITS)
    statements: list[str] = []
    sa.event.listen(
        db._engine, "before_cursor_execute", lambda *a: statements.append(str(a[2]).lower())
    )
    parts: list[int] = []
    original = sql_module.frame_parts

    def counting(dataset, cols, batches):  # type: ignore[no-untyped-def]
        def each():  # type: ignore[no-untyped-def]
            for b in batches:
                parts.append(len(b))
                yield b

        return original(dataset, cols, each())

    monkeypatch.setattr(sql_module, "frame_parts", counting)
    try:
        df = db.frame(ds, ["age_band", "monthly_base"]).collect()
    finally:
        db.close()
    assert df.height == ROWS and df.columns == ["age_band", "monthly_base"]
    selects = [s for s in statements if "si_contributions" in s and "select" in s]
    assert selects and all("sfzh" not in s and "xm" not in s and "phone" not in s for s in selects)
    assert len(parts) == -(-ROWS // LIMITS.source_batch_rows)
    assert max(parts) <= LIMITS.source_batch_rows


SECRET_ID = "110101199001011234"


@pytest.fixture(params=["postgresql", "mariadb"])
def misfit_register(request: pytest.FixtureRequest) -> Iterator[tuple[str, Dataset]]:
    """(engine, dataset) over a register whose ``months_contributed`` (an integer in
    the catalogue) is text holding a subject id, and whose ``monthly_base`` holds
    a NUMERIC NaN on PostgreSQL (MariaDB's DECIMAL has none)."""
    from gateway.demo.sqlseed import create_schema

    with scratch_schema(request.param) as (url, prefix):
        schema = f"{prefix}_misfit"
        create_schema(url, schema)
        eng = sa.create_engine(url)
        nan = "'NaN'" if request.param == "postgresql" else "1.5"
        try:
            with eng.begin() as conn:
                conn.exec_driver_sql(
                    f"CREATE TABLE {schema}.reg (person_id VARCHAR(32), "
                    "months_contributed VARCHAR(64), monthly_base NUMERIC(14, 2))"
                )
                conn.exec_driver_sql(
                    f"INSERT INTO {schema}.reg VALUES ('{SECRET_ID}', 'see {SECRET_ID}', {nan})"
                )
        finally:
            eng.dispose()
        ds = load_catalogue(ROOT / "policies" / "110000").dataset("si_contributions")
        keep = ("person_id", "months_contributed", "monthly_base")
        yield (
            request.param,
            ds.model_copy(
                update={
                    "columns": tuple(c for c in ds.columns if c.name in keep),
                    "source": SourceMapping(url=url, table=f"{schema}.reg"),
                }
            ),
        )


def test_a_value_that_does_not_fit_its_catalogue_type_answers_unavailable_without_the_value(
    misfit_register: tuple[str, Dataset], caplog: pytest.LogCaptureFixture
) -> None:
    """Text in a column the catalogue calls integer used to raise ValueError from
    the conversion: INTERNAL, and a traceback in the log whose message is the
    database value (here, a subject id)."""
    _, ds = misfit_register
    assert ds.source is not None
    db = SqlSource(ds.source.url, LIMITS)
    cols = ["person_id", "months_contributed"]
    try:
        with caplog.at_level(logging.DEBUG):
            reads = (
                lambda: db.fetch(ds, [SECRET_ID], cols, 5),
                lambda: db.scan(ds, cols, 5),
                lambda: [b for b in db.stream(ds, cols, 0, 5, 5)],
            )
            assert_each_unavailable(reads, "si_contributions", [SECRET_ID], no_cause=True)
    finally:
        db.close()
    assert "do not fit" in caplog.text and SECRET_ID not in caplog.text


def test_a_numeric_nan_in_a_statistics_column_answers_unavailable_instead_of_hanging(
    misfit_register: tuple[str, Dataset],
) -> None:
    """PostgreSQL NUMERIC 'NaN' made Polars panic while building the frame: a
    BaseException that passed every ``except Exception``, so the statistics RPC
    was never answered (the caller waited for its deadline) and its budget was
    charged with no ledger entry."""
    engine, ds = misfit_register
    if engine != "postgresql":
        pytest.skip("only PostgreSQL's NUMERIC has NaN")
    assert ds.source is not None
    db = SqlSource(ds.source.url, LIMITS)
    try:
        with pytest.raises(StorageFailure, match="do not fit") as err:
            db.frame(ds, ["monthly_base"])
        assert err.value.grpc_code.name == "UNAVAILABLE"
    finally:
        db.close()


def test_statistics_frames_kept_by_a_database_source_stay_bounded(seeded) -> None:  # type: ignore[no-untyped-def]
    """Expired frames were never dropped and one was kept per column tuple ever
    queried: memory grew with every combination requesters chose."""
    from itertools import permutations

    cat, mappings, _ = seeded
    ds = _dataset(cat, mappings)
    limits = Limits(source_batch_rows=64, source_frame_cache_entries=3)
    db = SqlSource(str(mappings["si_contributions"]["url"]), limits)
    statements: list[str] = []
    sa.event.listen(db._engine, "before_cursor_execute", lambda *a: statements.append(str(a[2])))
    try:
        measured = ["age_band", "gender", "district_code"]
        for k in (1, 2, 3):
            for cols in permutations(measured, k):
                df = db.frame(ds, list(cols)).collect()
                assert df.columns == list(cols) and df.height == ROWS
                assert len(db._frames) <= limits.source_frame_cache_entries
        # A column set read moments ago, asked in another order, is not read again.
        before = len(statements)
        assert db.frame(ds, ["gender", "district_code", "age_band"]).collect().height == ROWS
        assert len(statements) == before
    finally:
        db.close()


def _hold_lock(url: str, table: str) -> tuple[sa.Engine, sa.Connection]:
    """Another session holding an exclusive lock on ``table``: every read of it waits."""
    eng = sa.create_engine(url)
    locker = eng.connect()
    if eng.dialect.name == "postgresql":
        locker.begin()
        locker.exec_driver_sql(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    else:
        locker.exec_driver_sql(f"LOCK TABLES {table} WRITE")
    return eng, locker


def _release_lock(eng: sa.Engine, locker: sa.Connection) -> None:
    if eng.dialect.name != "postgresql":
        locker.exec_driver_sql("UNLOCK TABLES")
    locker.close()
    eng.dispose()


def test_a_hung_database_answers_unavailable_within_the_bound_while_other_datasets_are_served(
    seeded,  # type: ignore[no-untyped-def]
) -> None:
    """A database whose table another session keeps locked (as a stalled disk or
    a dropped network would) took every one of a server's 8 workers (its pool
    allowed 4 + 4 connections), so a dataset in another source waited until the
    hung queries ended: one hung bureau database stopped every dataset."""
    from concurrent.futures import ThreadPoolExecutor

    cat, mappings, sqlite = seeded
    mapped = _with_source(cat, "si_contributions", mappings["si_contributions"])
    hung = mapped.dataset("si_contributions")
    other = mapped.dataset("population_core")  # in the SQLite file
    query_bound = 5  # the requests that find no free connection fail after 2 s
    limits = Limits(source_query_timeout_seconds=query_bound, source_connect_timeout_seconds=2)
    sources = Sources(sqlite, mapped, limits)
    eng, locker = _hold_lock(str(mappings["si_contributions"]["url"]), str(hung.source.table))  # type: ignore[union-attr]
    workers = ThreadPoolExecutor(8)  # a gRPC server's workers
    try:
        started = time.monotonic()
        stuck = [
            workers.submit(sources.scan, hung, ["person_id"], 5)
            for _ in range(8)  # a burst of requests for the hung dataset
        ]
        time.sleep(0.3)
        asked = time.monotonic()
        served = workers.submit(sources.scan, other, ["person_id"], 5)
        assert len(served.result(timeout=30)) == 6
        assert time.monotonic() - asked < query_bound - 1  # not queued behind the hung ones
        for f in stuck:
            with pytest.raises(StorageFailure, match="si_contributions") as err:
                f.result(timeout=30)
            assert err.value.grpc_code.name == "UNAVAILABLE"
        assert time.monotonic() - started < query_bound + 3
    finally:
        _release_lock(eng, locker)
        workers.shutdown()
        sources.close()


def test_database_sessions_end_a_query_the_network_or_server_stops_answering(
    seeded,  # type: ignore[no-untyped-def]
) -> None:
    """PostgreSQL's statement_timeout is enforced by the server: a network that
    dropped mid-query left the client reading for ever (no keepalive, no TCP
    user timeout). MariaDB kept running a query the client had given up on."""
    import socket

    _, mappings, _ = seeded
    limits = Limits(source_query_timeout_seconds=7, source_keepalive_seconds=4)
    db = SqlSource(str(mappings["si_contributions"]["url"]), limits)
    try:
        with db._engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            if db._engine.dialect.name == "postgresql":
                sock = socket.socket(fileno=os.dup(raw.pgconn.socket))  # type: ignore[union-attr]
                try:
                    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 4
                    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 7000
                finally:
                    sock.close()
                shown = conn.exec_driver_sql("SHOW statement_timeout").scalar()
                assert shown == "7s"
            else:
                shown = conn.exec_driver_sql("SELECT @@max_statement_time").scalar()
                assert float(shown) == 7.0
    finally:
        db.close()


def test_readiness_probe_reads_one_row_without_sorting_the_table_or_logging(
    seeded,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Readiness ran ``scan(..., 1)``: with no ``order_by`` mapped, a sort of the
    whole register on the bureau's database per probe, and a WARNING per failing probe."""
    cat, mappings, _ = seeded
    ds = _dataset(cat, mappings)
    db = SqlSource(str(mappings["si_contributions"]["url"]), LIMITS)
    statements: list[str] = []
    sa.event.listen(db._engine, "before_cursor_execute", lambda *a: statements.append(str(a[2])))
    try:
        db.probe(ds)
        reads = [s for s in statements if "si_contributions" in s.lower()]
        assert len(reads) == 1 and "ORDER BY" not in reads[0].upper()
    finally:
        db.close()
    down = SqlSource("postgresql+psycopg://reader:pw@127.0.0.1:1/registers", LIMITS)
    try:
        with caplog.at_level(logging.INFO, logger="gateway.sources"):
            with pytest.raises(StorageFailure, match="si_contributions is unavailable"):
                down.probe(ds)
        assert not caplog.records  # the readiness probe logs a change, once
    finally:
        down.close()


@pytest.mark.parametrize("engine", ["postgresql", "mariadb"])
def test_a_fraction_in_a_catalogue_integer_column_answers_unavailable_instead_of_a_wrong_value(
    engine: str,
) -> None:
    """NUMERIC 1.5 in a column the catalogue calls integer was released as 1
    (records) or 2 (statistics): a wrong value, silently."""
    from decimal import Decimal

    from gateway.demo.sqlseed import create_schema
    from gateway.sources.common import normalise

    with pytest.raises(ValueError):
        normalise(Decimal("1.5"), "integer")
    assert normalise(Decimal("2.0"), "integer") == 2 and normalise(3.0, "integer") == 3
    with scratch_schema(engine) as (url, prefix):
        schema = f"{prefix}_frac"
        create_schema(url, schema)
        eng = sa.create_engine(url)
        try:
            with eng.begin() as conn:
                conn.exec_driver_sql(
                    f"CREATE TABLE {schema}.reg (person_id VARCHAR(32), "
                    "months_contributed NUMERIC(10, 1))"
                )
                conn.exec_driver_sql(
                    f"INSERT INTO {schema}.reg VALUES ('{SECRET_ID}', 1.5), ('2', 2.0)"
                )
        finally:
            eng.dispose()
        ds = load_catalogue(ROOT / "policies" / "110000").dataset("si_contributions")
        ds = ds.model_copy(
            update={
                "columns": tuple(
                    c for c in ds.columns if c.name in ("person_id", "months_contributed")
                ),
                "source": SourceMapping(url=url, table=f"{schema}.reg"),
            }
        )
        assert ds.column("months_contributed").type == "integer"
        db = SqlSource(url, LIMITS)
        cols = ["person_id", "months_contributed"]
        try:
            for read in (
                lambda: db.fetch(ds, [SECRET_ID], cols, 5),
                lambda: db.scan(ds, cols, 5),
                lambda: [b for b in db.stream(ds, cols, 0, 5, 5)],
                lambda: db.frame(ds, ["months_contributed"]),
            ):
                with pytest.raises(StorageFailure, match="si_contributions") as err:
                    read()
                assert err.value.grpc_code.name == "UNAVAILABLE"
                assert "1.5" not in str(err.value) and SECRET_ID not in str(err.value)
        finally:
            db.close()
