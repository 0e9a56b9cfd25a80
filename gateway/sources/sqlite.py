"""The embedded SQLite data source (the default).

Owns: reading the gateway's SQLite file, one table per dataset named by the
dataset code, columns as in the catalogue. Bulk order is ``rowid``.

Identifiers reaching SQL come from the validated catalogue (``gateway.identifiers.Code``), never
from a request; values are always bound parameters. The SQLite file is opened
read-only: a gateway never writes to its source. The bureau may update it
while the gateway runs, in place (WAL mode included) or by renaming a new file
over it: every read sees the file as it is now. Values are released in the
catalogue's types, as the database sources release them
(``gateway.sources.common.normalise``): an integer stored as text is an
integer, a whole REAL in an integer column (2.0) is 2, and a value that does
not fit (1.5 or text in an integer column) is a misfit, never released.

Failures: callers (peers included) learn the dataset and that its source is
unavailable (``StorageFailure``), or that its table is missing (``NotFound``,
naming the file's name only); the file's path and SQLite's text are logged.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.catalogue import Dataset
from gateway.errors import NotFound, StorageFailure
from gateway.limits import DEFAULT_LIMITS, Limits
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

# SQLite's default SQLITE_MAX_VARIABLE_NUMBER is 32766; stay well below it.
_IN_CHUNK = 500


def _quote(identifier: str) -> str:
    # Catalogue identifiers pass gateway.identifiers.code; quote anyway.
    return '"' + identifier.replace('"', '""') + '"'


class SqliteSource:
    """Read-only SQLite data source; one table per dataset code."""

    def __init__(self, path: Path, limits: Limits = DEFAULT_LIMITS) -> None:
        if not path.is_file():
            raise StorageFailure(f"data source {path} does not exist")
        self._path = path
        self._batch = limits.source_batch_rows
        self._local = threading.local()
        # Statistics frames, reused while the file and its WAL are unchanged (_version).
        self._frames = FrameCache(
            limits.source_frame_cache_entries,
            limits.source_frame_file_grace_seconds,
            limits.source_frame_file_rows,
        )

    @property
    def path(self) -> Path:
        return self._path

    def close(self) -> None:
        """Delete the statistics frames kept (this thread's connection closes with it)."""
        self._frames.close()

    def _conn(self) -> sqlite3.Connection:
        # The file as it is now: a bureau that replaces it (a new file renamed
        # over the old one) is read from the next query on, not from the old
        # file an open connection would keep reading.
        st = self._path.stat()
        identity = (st.st_dev, st.st_ino)
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.identity != identity:
            conn.close()
            conn = None
        if conn is None:
            conn = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True, check_same_thread=True)
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
            self._local.identity = identity
        return conn

    def _version(self) -> tuple[int, ...]:
        """Changes whenever the data may have: the file's identity, size and
        modification time, and those of its write-ahead log (a writer in WAL
        mode commits there, leaving the main file untouched until a checkpoint)."""
        st = self._path.stat()
        wal = Path(f"{self._path}-wal")
        try:
            w = wal.stat()
            logged = (w.st_ino, w.st_mtime_ns, w.st_size)
        except FileNotFoundError:
            logged = (0, 0, 0)
        return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size, *logged)

    def _columns(self, dataset: Dataset, columns: Sequence[str]) -> list[str]:
        return checked_columns(dataset, columns)

    @contextlib.contextmanager
    def _errors(self, dataset: Dataset) -> Iterator[None]:
        """SQLite and file errors as what a caller (a peer among them) may learn:
        the dataset and that it is unavailable. The file's path and SQLite's
        own text go to the operator's log only."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                raise NotFound(
                    f"dataset is declared but has no table in {self._path.name}"
                ) from None
            raise self._failure(dataset, exc) from None
        except (sqlite3.Error, OSError) as exc:
            raise self._failure(dataset, exc) from None
        except MISFITS as exc:
            raise reported_misfit(self._path, dataset, exc) from None

    def _failure(self, dataset: Dataset, exc: BaseException) -> StorageFailure:
        log.warning(
            "data source %s failed for %s: %s: %s",
            self._path,
            dataset.code,
            type(exc).__name__,
            exc,
        )
        return StorageFailure(
            f"the data source of dataset {dataset.code} is unavailable "
            f"({type(exc).__name__}); retry later"
        )

    def _query(self, dataset: Dataset, sql: str, params: Sequence[object]) -> list[Row]:
        with self._errors(dataset):
            cur = self._conn().execute(sql, params)
            return [dict(r) for r in cur.fetchall()]

    def _rows(
        self, dataset: Dataset, cols: Sequence[str], sql: str, params: Sequence[object]
    ) -> list[Row]:
        """The rows of ``sql`` (selecting ``cols``) in the catalogue's types, as the
        database sources release them (``normalise``)."""
        kinds = [dataset.column(c).type for c in cols]
        with self._errors(dataset):
            cur = self._conn().execute(sql, params)
            cur.row_factory = None
            return [normalise_row(r, cols, kinds) for r in cur.fetchall()]

    def guarantees_unique(self, dataset: Dataset, column: str) -> bool:
        """True if the table has a UNIQUE index (or primary key) on exactly ``column``."""
        with self._errors(dataset):
            conn = self._conn()
            for idx in conn.execute(f"PRAGMA index_list({_quote(dataset.code)})").fetchall():
                if not idx["unique"]:
                    continue
                cols = [
                    r["name"] for r in conn.execute(f"PRAGMA index_info({_quote(idx['name'])})")
                ]
                if cols == [column]:
                    return True
        return False

    def probe(self, dataset: Dataset) -> None:
        """One row of the subject column (readiness)."""
        self._query(
            dataset,
            f"SELECT {_quote(dataset.subject_column)} FROM {_quote(dataset.code)} LIMIT 1",
            [],
        )

    def fetch(
        self, dataset: Dataset, subject_ids: Sequence[str], columns: Sequence[str], limit: int
    ) -> list[Row]:
        cols = self._columns(dataset, columns)
        select = ", ".join(_quote(c) for c in cols)
        subject = _quote(dataset.subject_column)
        table = _quote(dataset.code)
        rows: list[Row] = []
        ids = subject_keys(dataset, subject_ids)
        for i in range(0, len(ids), _IN_CHUNK):
            chunk = ids[i : i + _IN_CHUNK]
            marks = ", ".join("?" for _ in chunk)
            rows += self._rows(
                dataset,
                cols,
                f"SELECT {select} FROM {table} WHERE {subject} IN ({marks}) ORDER BY rowid LIMIT ?",
                [*chunk, limit - len(rows) + 1],
            )
            if len(rows) > limit:
                break
        return rows[: limit + 1]  # one extra lets the caller detect "more than limit"

    def scan(self, dataset: Dataset, columns: Sequence[str], limit: int) -> list[Row]:
        cols = self._columns(dataset, columns)
        select = ", ".join(_quote(c) for c in cols)
        return self._rows(
            dataset,
            cols,
            f"SELECT {select} FROM {_quote(dataset.code)} ORDER BY rowid LIMIT ?",
            [limit + 1],
        )

    def stream(
        self, dataset: Dataset, columns: Sequence[str], start: int, limit: int, batch_rows: int
    ) -> Iterator[RowBatch]:
        cols = self._columns(dataset, columns)
        kinds = [dataset.column(c).type for c in cols]
        select = ", ".join(_quote(c) for c in cols)
        # A connection of its own: the generator may be resumed on another thread.
        with self._errors(dataset):
            conn = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True, check_same_thread=False)
        try:
            with self._errors(dataset):
                cur = conn.execute(
                    f"SELECT {select} FROM {_quote(dataset.code)} ORDER BY rowid LIMIT ? OFFSET ?",
                    [limit, start],
                )
                while batch := cur.fetchmany(batch_rows):
                    yield RowBatch.of_source_rows(cols, kinds, batch)
        finally:
            conn.close()

    def frame(self, dataset: Dataset, columns: Sequence[str]) -> pl.LazyFrame:
        cols = self._columns(dataset, columns)
        with self._errors(dataset):
            version = self._version()
        fresh: Callable[[object], bool] = lambda stamp: stamp == version  # noqa: E731
        cached = self._frames.get(dataset.code, cols, fresh)
        if cached is not None:
            return cached
        select = ", ".join(_quote(c) for c in cols)
        with self._errors(dataset):
            cur = self._conn().execute(f"SELECT {select} FROM {_quote(dataset.code)}")
            cur.row_factory = None

            def batches() -> Iterator[list[tuple[object, ...]]]:
                while batch := cur.fetchmany(self._batch):
                    yield batch

            parts = frame_parts(dataset, cols, batches())
            return self._frames.put(dataset.code, cols, version, parts, fresh)
