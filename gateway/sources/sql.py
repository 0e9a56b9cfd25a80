"""Bureau databases as data sources, through SQLAlchemy Core (2.x), read-only.

Owns: one connection pool per database URL (bounded size, below a server's
worker count; a short checkout wait; connect and statement timeouts, TCP
keepalives and user timeout on PostgreSQL, read/write timeouts on
MySQL/MariaDB, so every query ends within ``source_query_timeout_seconds``;
pre-ping so a restarted server is picked up), the
start-up check that each mapped table and column exists, and the four reads
(named subjects, bulk scan, bulk stream, statistics frame) built as SQLAlchemy
Core selects over the mapped columns only, every value a bound parameter.

Does not own: the mapping (``gateway.catalogue.SourceMapping``), routing
(``gateway.sources.Sources``).

Failures: a server that is down or times out raises ``StorageFailure``
(UNAVAILABLE) for the datasets it holds, never a crash; messages name the
database without its password and never carry driver text (which can echo bound
values, i.e. subject ids); a value that does not fit its catalogue type raises
``StorageFailure`` too, naming the dataset, never the value. Sessions are
read-only where the dialect has a switch (PostgreSQL, MySQL/MariaDB); give the
gateway's database user SELECT rights only.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from gateway.catalogue import Dataset, SourceMapping
from gateway.errors import PolicyFileError, StorageFailure
from gateway.limits import Limits
from gateway.sources.common import (
    MISFITS,
    Row,
    RowBatch,
    checked_columns,
    frame_parts,
    normalise_row,
    reported_misfit,
    subject_keys,
)
from gateway.sources.frames import FrameCache

if TYPE_CHECKING:
    import polars as pl

log = logging.getLogger("gateway.sources")

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_IN_CHUNK = 500


def expand_url(url: str) -> str:
    """Replace ``${VAR}`` with the environment's value (PolicyFileError if unset)."""

    def sub(m: re.Match[str]) -> str:
        value = os.environ.get(m.group(1))
        if value is None:
            raise PolicyFileError(
                f"data source URL needs environment variable {m.group(1)}, which is not set"
            )
        return value

    return _ENV.sub(sub, url)


def _connect_args(dialect: str, limits: Limits) -> dict[str, Any]:
    timeout = limits.source_connect_timeout_seconds
    query_ms = limits.source_query_timeout_seconds * 1000
    if dialect == "postgresql":
        keepalive = limits.source_keepalive_seconds
        return {
            "connect_timeout": timeout,
            "options": f"-c statement_timeout={query_ms} -c default_transaction_read_only=on",
            "application_name": "jurisdiction-gateway",
            # statement_timeout is the server's: a network that drops mid-query
            # (or a server host that dies) would leave the client reading for
            # ever. Keepalives probe an idle socket, and the TCP user timeout
            # drops one whose data or probes go unacknowledged past the bound.
            "keepalives": 1,
            "keepalives_idle": keepalive,
            "keepalives_interval": keepalive,
            "keepalives_count": 3,
            "tcp_user_timeout": query_ms,
        }
    if dialect in ("mysql", "mariadb"):
        return {
            "connect_timeout": timeout,
            "read_timeout": limits.source_query_timeout_seconds,
            "write_timeout": limits.source_query_timeout_seconds,
        }
    if dialect == "sqlite":
        return {"timeout": timeout}
    return {}


class SqlSource:
    """Read-only access to one database (one pool) for every dataset mapped to it."""

    def __init__(self, url: str, limits: Limits) -> None:
        self._limits = limits
        try:
            parsed = sa.make_url(expand_url(url))
        except sa_exc.ArgumentError as exc:
            raise PolicyFileError(f"data source URL {url!r} is not a SQLAlchemy URL") from exc
        self.name = parsed.render_as_string(hide_password=True)
        dialect = parsed.get_backend_name()
        try:
            self._engine = sa.create_engine(
                parsed,
                pool_size=limits.source_pool_size,
                max_overflow=limits.source_pool_overflow,
                pool_timeout=limits.source_pool_timeout_seconds,
                pool_pre_ping=True,
                pool_recycle=1800,
                hide_parameters=True,  # driver errors never echo subject ids
                connect_args=_connect_args(dialect, limits),
            )
        except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as exc:
            raise PolicyFileError(
                f"data source {self.name}: no SQLAlchemy dialect or driver for it "
                f"({type(exc).__name__}); install the dialect's package"
            ) from exc
        if dialect in ("mysql", "mariadb"):
            sa.event.listen(
                self._engine,
                "connect",
                functools.partial(_mysql_session, limits.source_query_timeout_seconds),
            )
        self._tables: dict[tuple[str, tuple[str, ...]], sa.TableClause] = {}
        self._frames = FrameCache(
            limits.source_frame_cache_entries,
            limits.source_frame_file_grace_seconds,
            limits.source_frame_file_rows,
        )

    def close(self) -> None:
        self._engine.dispose()
        self._frames.close()

    # ------------------------------------------------------------------
    # Mapping and checks
    # ------------------------------------------------------------------

    @staticmethod
    def _mapping(dataset: Dataset) -> SourceMapping:
        if dataset.source is None:  # pragma: no cover - routing bug
            raise StorageFailure(f"dataset {dataset.code} has no database mapping")
        return dataset.source

    def _table(self, dataset: Dataset) -> sa.TableClause:
        m = self._mapping(dataset)
        schema, _, name = m.table.rpartition(".")
        key = (m.table, tuple(m.db_column(c) for c in dataset.column_names))
        t = self._tables.get(key)
        if t is None:
            t = sa.table(name, *(sa.column(c) for c in key[1]), schema=schema or None)
            self._tables[key] = t
        return t

    def _col(self, dataset: Dataset, name: str) -> sa.ColumnClause[Any]:
        return self._table(dataset).c[self._mapping(dataset).db_column(name)]

    def _select(self, dataset: Dataset, cols: Sequence[str]) -> sa.Select[Any]:
        return sa.select(*(self._col(dataset, c) for c in cols))

    def check(self, dataset: Dataset) -> None:
        """Raise PolicyFileError naming a mapped table or column that does not exist.

        A database that cannot be reached is logged and skipped: its datasets
        answer UNAVAILABLE until it is back."""
        m = self._mapping(dataset)
        schema, _, name = m.table.rpartition(".")
        try:
            with self._engine.connect() as conn:
                insp = sa.inspect(conn)
                if not (
                    insp.has_table(name, schema=schema or None)
                    or name in insp.get_view_names(schema=schema or None)
                ):
                    raise PolicyFileError(
                        f"dataset {dataset.code}: table or view {m.table!r} does not exist "
                        f"in {self.name}"
                    )
                present = {c["name"] for c in insp.get_columns(name, schema=schema or None)}
        except sa_exc.SQLAlchemyError as exc:
            log.warning(
                "data source %s unreachable at start-up (%s); dataset %s answers UNAVAILABLE "
                "until it is back",
                self.name,
                type(exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc).__name__,
                dataset.code,
            )
            return
        for c in dataset.column_names:
            if m.db_column(c) not in present:
                raise PolicyFileError(
                    f"dataset {dataset.code}: column {m.db_column(c)!r} (catalogue column {c}) "
                    f"does not exist in {m.table} in {self.name}"
                )

    def guarantees_unique(self, dataset: Dataset, column: str) -> bool:
        m = self._mapping(dataset)
        schema, _, name = m.table.rpartition(".")
        want = [m.db_column(column)]
        with self._errors(dataset):
            with self._engine.connect() as conn:
                insp = sa.inspect(conn)
                pk = insp.get_pk_constraint(name, schema=schema or None)
                if list(pk.get("constrained_columns") or []) == want:
                    return True
                for u in insp.get_unique_constraints(name, schema=schema or None):
                    if list(u["column_names"]) == want:
                        return True
                for idx in insp.get_indexes(name, schema=schema or None):
                    if idx.get("unique") and list(idx["column_names"]) == want:
                        return True
        return False

    # ------------------------------------------------------------------
    # Reads
    # ------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, dataset: Dataset) -> Iterator[None]:
        try:
            yield
        except sa_exc.SQLAlchemyError as exc:
            raise self._failure(dataset, exc) from exc
        except MISFITS as exc:
            raise reported_misfit(self.name, dataset, exc) from None

    def _failure(self, dataset: Dataset, exc: sa_exc.SQLAlchemyError) -> StorageFailure:
        kind = type(exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc).__name__
        log.warning("data source %s failed for %s: %s", self.name, dataset.code, kind)
        # The database's name goes to our log only: callers (other jurisdictions
        # among them) learn which dataset is affected, not the bureau's hosts.
        if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError):
            return StorageFailure(
                f"the data source of dataset {dataset.code} is unavailable ({kind}); retry later"
            )
        return StorageFailure(f"the data source query for dataset {dataset.code} failed ({kind})")

    def probe(self, dataset: Dataset) -> None:
        """One row of the subject column in no order (readiness): the table need
        not be sorted. Failures are not logged here (the caller logs a change)."""
        query = self._select(dataset, [dataset.subject_column]).limit(1)
        try:
            with self._engine.connect() as conn:
                conn.execute(query).fetchall()
        except sa_exc.SQLAlchemyError as exc:
            kind = type(exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc).__name__
            raise StorageFailure(
                f"the data source of dataset {dataset.code} is unavailable ({kind})"
            ) from None

    def _rows(self, dataset: Dataset, cols: Sequence[str], query: sa.Select[Any]) -> list[Row]:
        kinds = [dataset.column(c).type for c in cols]
        with self._errors(dataset), self._engine.connect() as conn:
            return [normalise_row(r, cols, kinds) for r in conn.execute(query)]

    def _order(self, dataset: Dataset) -> list[sa.ColumnClause[Any]]:
        m = self._mapping(dataset)
        names = list(m.order_by) or [
            dataset.subject_column,
            *(c for c in dataset.column_names if c != dataset.subject_column),
        ]
        return [self._col(dataset, c) for c in names]

    def fetch(
        self, dataset: Dataset, subject_ids: Sequence[str], columns: Sequence[str], limit: int
    ) -> list[Row]:
        cols = checked_columns(dataset, columns)
        subject = self._col(dataset, dataset.subject_column)
        ids = subject_keys(dataset, subject_ids)
        rows: list[Row] = []
        for i in range(0, len(ids), _IN_CHUNK):
            chunk = ids[i : i + _IN_CHUNK]
            query = (
                self._select(dataset, cols)
                .where(subject.in_(chunk))
                .order_by(*self._order(dataset))
                .limit(limit - len(rows) + 1)
            )
            rows += self._rows(dataset, cols, query)
            if len(rows) > limit:
                break
        return rows[: limit + 1]

    def scan(self, dataset: Dataset, columns: Sequence[str], limit: int) -> list[Row]:
        cols = checked_columns(dataset, columns)
        query = self._select(dataset, cols).order_by(*self._order(dataset)).limit(limit + 1)
        return self._rows(dataset, cols, query)

    def stream(
        self, dataset: Dataset, columns: Sequence[str], start: int, limit: int, batch_rows: int
    ) -> Iterator[RowBatch]:
        cols = checked_columns(dataset, columns)
        kinds = [dataset.column(c).type for c in cols]
        query = (
            self._select(dataset, cols).order_by(*self._order(dataset)).offset(start).limit(limit)
        )
        with self._errors(dataset), self._engine.connect() as conn:
            # A server-side cursor: the database sends rows as they are consumed.
            result = conn.execution_options(stream_results=True, yield_per=batch_rows).execute(
                query
            )
            finished = False
            try:
                for part in result.partitions(batch_rows):
                    yield RowBatch.of_source_rows(cols, kinds, part)
                finished = True
            finally:
                if not finished:
                    # Abandoned mid-way (the recipient went away): drop the
                    # connection rather than drain the rest of the cursor.
                    _abandon(conn, result)

    def frame(self, dataset: Dataset, columns: Sequence[str]) -> pl.LazyFrame:
        """Only ``columns``, streamed from a server-side cursor in batches of
        ``source_batch_rows`` into columnar chunks; kept for
        ``source_frame_cache_seconds`` so repeated queries do not re-read."""
        cols = checked_columns(dataset, columns)
        now = time.monotonic()

        def fresh(loaded: object) -> bool:
            assert isinstance(loaded, float)
            return now - loaded < self._limits.source_frame_cache_seconds

        cached = self._frames.get(dataset.code, cols, fresh)
        if cached is not None:
            return cached
        batch = self._limits.source_batch_rows
        with self._errors(dataset), self._engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=batch).execute(
                self._select(dataset, cols)
            )
            parts = frame_parts(dataset, cols, result.partitions(batch))
            return self._frames.put(dataset.code, cols, now, parts, fresh)


def _abandon(conn: sa.Connection, result: sa.CursorResult[Any]) -> None:
    """Close a connection whose server-side cursor was not read to the end."""
    raw = getattr(result.context, "cursor", None)
    unbuffered = getattr(raw, "_result", None)
    conn.invalidate()
    with contextlib.suppress(Exception):
        # PyMySQL would otherwise try to drain the rest from the closed socket
        # when the cursor is garbage-collected.
        if unbuffered is not None and hasattr(unbuffered, "unbuffered_active"):
            unbuffered.unbuffered_active = False
        if raw is not None and hasattr(raw, "connection"):
            raw.connection = None
        result.close()


def _mysql_session(query_seconds: int, dbapi_conn: Any, _record: Any) -> None:
    """A read-only session whose statements the server ends past ``query_seconds``
    too (the client's read timeout drops the connection, not the server's query)."""
    cur = dbapi_conn.cursor()
    try:
        cur.execute("SET SESSION TRANSACTION READ ONLY")
        server = str(getattr(dbapi_conn, "get_server_info", lambda: "")())
        if "mariadb" in server.lower():
            cur.execute("SET SESSION max_statement_time = %s", (float(query_seconds),))
        else:
            cur.execute("SET SESSION max_execution_time = %s", (int(query_seconds) * 1000,))
    finally:
        cur.close()
