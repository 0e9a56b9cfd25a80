"""Local data sources a holder gateway serves datasets from.

Owns: the ``DataSource`` protocol and the embedded SQLite implementation
(one table per dataset, named by the dataset code, columns as in the
catalogue). Does not own: which rows or fields may leave (``gateway.policy``),
statistics (``gateway.stats`` reads ``frame``).

Identifiers reaching SQL come from the validated catalogue (``gateway.identifiers.Code``), never
from a request; values are always bound parameters. The SQLite file is opened
read-only: a gateway never writes to its source.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from gateway.catalogue import Dataset
from gateway.errors import InvalidArgument, NotFound, StorageFailure

if TYPE_CHECKING:
    import polars as pl

Row = dict[str, object]

# SQLite's default SQLITE_MAX_VARIABLE_NUMBER is 32766; stay well below it.
_IN_CHUNK = 500


class DataSource(Protocol):
    def fetch(
        self, dataset: Dataset, subject_ids: Sequence[str], columns: Sequence[str], limit: int
    ) -> list[Row]:
        """Rows whose subject column is one of ``subject_ids`` (at most ``limit``)."""
        ...

    def scan(self, dataset: Dataset, columns: Sequence[str], limit: int) -> list[Row]:
        """Up to ``limit`` rows (bulk requests), in a stable order."""
        ...

    def frame(self, dataset: Dataset, columns: Sequence[str]) -> pl.LazyFrame:
        """The dataset's columns as a Polars LazyFrame (for statistics)."""
        ...


def _quote(identifier: str) -> str:
    # Catalogue identifiers pass gateway.identifiers.code; quote anyway.
    return '"' + identifier.replace('"', '""') + '"'


class SqliteSource:
    """Read-only SQLite data source; one table per dataset code."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise StorageFailure(f"data source {path} does not exist")
        self._path = path
        self._local = threading.local()
        # Statistics frames, reused while the file is unchanged (mtime, size).
        self._frames: dict[tuple[str, tuple[str, ...]], tuple[tuple[int, int], pl.DataFrame]] = {}
        self._frames_lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self._path

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(
                    f"file:{self._path}?mode=ro", uri=True, check_same_thread=True
                )
            except sqlite3.Error as exc:
                raise StorageFailure(f"cannot open data source {self._path}: {exc}") from exc
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        return conn

    def _columns(self, dataset: Dataset, columns: Sequence[str]) -> list[str]:
        known = set(dataset.column_names)
        unknown = [c for c in columns if c not in known]
        if unknown:
            raise InvalidArgument(f"dataset {dataset.code} has no column(s) {', '.join(unknown)}")
        return list(columns) or list(dataset.column_names)

    def _query(self, sql: str, params: Sequence[object]) -> list[Row]:
        try:
            cur = self._conn().execute(sql, params)
            return [dict(r) for r in cur.fetchall()]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                raise NotFound(
                    f"dataset is declared but has no table in {self._path.name}"
                ) from exc
            raise StorageFailure(f"data source query failed: {exc}") from exc
        except sqlite3.Error as exc:
            raise StorageFailure(f"data source query failed: {exc}") from exc

    def guarantees_unique(self, dataset: Dataset, column: str) -> bool:
        """True if the table has a UNIQUE index (or primary key) on exactly ``column``."""
        conn = self._conn()
        try:
            for idx in conn.execute(f"PRAGMA index_list({_quote(dataset.code)})").fetchall():
                if not idx["unique"]:
                    continue
                cols = [
                    r["name"] for r in conn.execute(f"PRAGMA index_info({_quote(idx['name'])})")
                ]
                if cols == [column]:
                    return True
        except sqlite3.Error as exc:
            raise StorageFailure(f"data source {self._path}: {exc}") from exc
        return False

    def fetch(
        self, dataset: Dataset, subject_ids: Sequence[str], columns: Sequence[str], limit: int
    ) -> list[Row]:
        cols = self._columns(dataset, columns)
        select = ", ".join(_quote(c) for c in cols)
        subject = _quote(dataset.subject_column)
        table = _quote(dataset.code)
        rows: list[Row] = []
        ids = list(dict.fromkeys(subject_ids))
        for i in range(0, len(ids), _IN_CHUNK):
            chunk = ids[i : i + _IN_CHUNK]
            marks = ", ".join("?" for _ in chunk)
            rows += self._query(
                f"SELECT {select} FROM {table} WHERE {subject} IN ({marks}) ORDER BY rowid LIMIT ?",
                [*chunk, limit - len(rows) + 1],
            )
            if len(rows) > limit:
                break
        return rows[: limit + 1]  # one extra lets the caller detect "more than limit"

    def scan(self, dataset: Dataset, columns: Sequence[str], limit: int) -> list[Row]:
        cols = self._columns(dataset, columns)
        select = ", ".join(_quote(c) for c in cols)
        return self._query(
            f"SELECT {select} FROM {_quote(dataset.code)} ORDER BY rowid LIMIT ?",
            [limit + 1],
        )

    def frame(self, dataset: Dataset, columns: Sequence[str]) -> pl.LazyFrame:
        cols = self._columns(dataset, columns)
        st = self._path.stat()
        version = (st.st_mtime_ns, st.st_size)
        key = (dataset.code, tuple(cols))
        with self._frames_lock:
            cached = self._frames.get(key)
        if cached is not None and cached[0] == version:
            return cached[1].lazy()
        df = self._load_frame(dataset, cols)
        with self._frames_lock:
            self._frames[key] = (version, df)
        return df.lazy()

    def _load_frame(self, dataset: Dataset, cols: list[str]) -> pl.DataFrame:
        import polars as pl

        select = ", ".join(_quote(c) for c in cols)
        try:
            cur = self._conn().execute(f"SELECT {select} FROM {_quote(dataset.code)}")
            cur.row_factory = None
            rows = cur.fetchall()
        except sqlite3.Error as exc:
            raise StorageFailure(f"data source query failed: {exc}") from exc
        schema: dict[str, pl.DataType] = {}
        for c in cols:
            t = dataset.column(c).type
            schema[c] = (
                pl.Int64() if t == "integer" else pl.Float64() if t == "float" else pl.String()
            )
        return pl.DataFrame(rows, schema=schema, orient="row")
