"""Local data sources a holder gateway serves datasets from.

Owns: the ``DataSource`` protocol, the routing of each dataset to its source
(``Sources``: the embedded SQLite file by default, a bureau database when the
catalogue gives the dataset a ``source:`` mapping), and the start-up check of
every mapping. Implementations: ``gateway.sources.sqlite`` (embedded SQLite)
and ``gateway.sources.sql`` (any SQLAlchemy dialect: PostgreSQL via psycopg,
MySQL/MariaDB via PyMySQL, Oracle, Dameng, KingbaseES through theirs).

Does not own: which rows or fields may leave (``gateway.policy``), statistics
(``gateway.stats`` reads ``frame``).

Every source is read-only, takes identifiers from the validated catalogue only
and binds every value as a parameter.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from gateway.catalogue import Catalogue, Dataset
from gateway.limits import Limits
from gateway.sources.common import Row, RowBatch
from gateway.sources.sqlite import SqliteSource

if TYPE_CHECKING:
    import polars as pl

    from gateway.sources.sql import SqlSource

__all__ = ["DataSource", "Row", "RowBatch", "Sources", "SqliteSource"]

log = logging.getLogger("gateway.sources")


class DataSource(Protocol):
    def fetch(
        self, dataset: Dataset, subject_ids: Sequence[str], columns: Sequence[str], limit: int
    ) -> list[Row]:
        """Rows whose subject column is one of ``subject_ids`` (at most ``limit`` + 1)."""
        ...

    def scan(self, dataset: Dataset, columns: Sequence[str], limit: int) -> list[Row]:
        """Up to ``limit`` + 1 rows (bulk requests), in a stable order."""
        ...

    def stream(
        self, dataset: Dataset, columns: Sequence[str], start: int, limit: int, batch_rows: int
    ) -> Iterator[RowBatch]:
        """Rows ``start`` .. ``start + limit`` in the stable bulk order, in batches
        of at most ``batch_rows``, column by column; memory stays at one batch."""
        ...

    def frame(self, dataset: Dataset, columns: Sequence[str]) -> pl.LazyFrame:
        """Only ``columns`` of the dataset as a Polars LazyFrame (statistics),
        read in batches."""
        ...

    def guarantees_unique(self, dataset: Dataset, column: str) -> bool:
        """True if the source enforces at most one row per value of ``column``."""
        ...

    def probe(self, dataset: Dataset) -> None:
        """Raise ``GatewayError`` if the dataset cannot be read now: one row of its
        subject column, in no order (no sort of the table), nothing logged."""
        ...


class Sources:
    """Routes each dataset to its source: a mapped database or the SQLite file.

    One ``SqlSource`` (one connection pool) per distinct database URL. The
    SQLite file is needed only when some dataset has no mapping.
    """

    def __init__(self, default_path: Path, catalogue: Catalogue, limits: Limits) -> None:
        self._limits = limits
        self._default_path = default_path
        self._default: SqliteSource | None = None
        self._sql: dict[str, SqlSource] = {}
        if any(d.source is None for d in catalogue.datasets):
            self._default = SqliteSource(default_path, limits)
        try:
            self.check(catalogue)
        except BaseException:
            self.close()  # the pools opened for the tables checked before the bad one
            raise

    def check(self, catalogue: Catalogue) -> None:
        """Check every mapped table and column exists (PolicyFileError naming the
        first that does not). A database that cannot be reached is logged: its
        datasets answer UNAVAILABLE until it is back, the others are served."""
        for ds in catalogue.datasets:
            if ds.source is None:
                continue
            self._sql_for(ds.source.url).check(ds)

    def _sql_for(self, url: str) -> SqlSource:
        src = self._sql.get(url)
        if src is None:
            # Imported on first use: a gateway without database sources never loads
            # SQLAlchemy (about 11 MB resident).
            from gateway.sources.sql import SqlSource

            src = self._sql[url] = SqlSource(url, self._limits)
        return src

    def _for(self, dataset: Dataset) -> DataSource:
        if dataset.source is not None:
            return self._sql_for(dataset.source.url)
        if self._default is None:
            self._default = SqliteSource(self._default_path, self._limits)
        return self._default

    def fetch(
        self, dataset: Dataset, subject_ids: Sequence[str], columns: Sequence[str], limit: int
    ) -> list[Row]:
        return self._for(dataset).fetch(dataset, subject_ids, columns, limit)

    def scan(self, dataset: Dataset, columns: Sequence[str], limit: int) -> list[Row]:
        return self._for(dataset).scan(dataset, columns, limit)

    def stream(
        self, dataset: Dataset, columns: Sequence[str], start: int, limit: int, batch_rows: int
    ) -> Iterator[RowBatch]:
        return self._for(dataset).stream(dataset, columns, start, limit, batch_rows)

    def frame(self, dataset: Dataset, columns: Sequence[str]) -> pl.LazyFrame:
        return self._for(dataset).frame(dataset, columns)

    def guarantees_unique(self, dataset: Dataset, column: str) -> bool:
        return self._for(dataset).guarantees_unique(dataset, column)

    def probe(self, dataset: Dataset) -> None:
        self._for(dataset).probe(dataset)

    def close(self) -> None:
        for src in self._sql.values():
            src.close()
        self._sql.clear()
        if self._default is not None:
            self._default.close()
