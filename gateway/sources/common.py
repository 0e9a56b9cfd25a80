"""What every data source shares: the row shape, the column batch a bulk stream
yields (``RowBatch``), value normalisation and building a statistics frame
from batches.

Owns: turning database values into the catalogue's types (so a PostgreSQL
``date`` or ``numeric`` releases exactly as the SQLite text or real does), the
subject ids asked as values of the subject column's type (``subject_keys``),
assembling a Polars frame from row batches without holding more than one
batch of Python objects at a time (kept between queries by
``gateway.sources.frames``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Final

from gateway import identifiers
from gateway.catalogue import ColumnType, Dataset
from gateway.errors import InvalidArgument, StorageFailure

if TYPE_CHECKING:
    import polars as pl

Row = dict[str, object]


@dataclass(frozen=True)
class RowBatch:
    """A batch of rows column by column (a streamed bulk read): ``columns[i]`` holds
    the values of ``names[i]``, each of length ``len(batch)``. Cheaper to read and
    transform than one dict per row."""

    names: tuple[str, ...]
    columns: tuple[Sequence[object], ...]
    size: int

    @classmethod
    def of_tuples(cls, names: Sequence[str], rows: Sequence[Sequence[object]]) -> RowBatch:
        """From database row tuples in ``names`` order."""
        cols = tuple(zip(*rows, strict=True)) if rows else tuple(() for _ in names)
        return cls(tuple(names), cols, len(rows))

    @classmethod
    def of_source_rows(
        cls, names: Sequence[str], kinds: Sequence[ColumnType], rows: Sequence[Sequence[object]]
    ) -> RowBatch:
        """From database row tuples in ``names`` order, each column turned into its
        catalogue type (``normalise_column``; one of ``MISFITS`` if a value does not fit)."""
        batch = cls.of_tuples(names, rows)
        columns = tuple(normalise_column(c, k) for c, k in zip(batch.columns, kinds, strict=True))
        return cls(batch.names, columns, batch.size)

    def __len__(self) -> int:
        return self.size

    def head(self, n: int) -> RowBatch:
        """The first ``n`` rows."""
        if n >= self.size:
            return self
        n = max(n, 0)
        return RowBatch(self.names, tuple(c[:n] for c in self.columns), n)

    def as_columns(self) -> dict[str, Sequence[object]]:
        return dict(zip(self.names, self.columns, strict=True))

    def rows(self) -> Iterator[Row]:
        for values in zip(*self.columns, strict=True):
            yield dict(zip(self.names, values, strict=True))


def checked_columns(dataset: Dataset, columns: Sequence[str]) -> list[str]:
    """``columns`` if every one is in the catalogue (all columns when empty)."""
    known = set(dataset.column_names)
    unknown = [c for c in columns if c not in known]
    if unknown:
        raise InvalidArgument(f"dataset {dataset.code} has no column(s) {', '.join(unknown)}")
    return list(columns) or list(dataset.column_names)


def subject_keys(dataset: Dataset, subject_ids: Sequence[str]) -> list[object]:
    """The ids asked (de-duplicated) as values of the subject column's type, to bind
    in the lookup: a number column is compared with numbers (``0012345`` is 12345;
    an id that is no number, ``identifiers.subject_id_in_column``, matches nothing
    and is dropped), so every database compares alike (PostgreSQL has no
    integer = text operator; MariaDB would read ``12A`` as 12)."""
    kind = dataset.column(dataset.subject_column).type
    if kind not in ("integer", "float"):
        return list(dict.fromkeys(subject_ids))
    keys: list[object] = []
    for i in subject_ids:
        try:
            number = int(identifiers.subject_id_in_column(i, numeric=True))
        except InvalidArgument:
            continue
        keys.append(number if kind == "integer" else float(number))
    return list(dict.fromkeys(keys))


# What turning a database value into the catalogue's type raises when it does
# not fit (text in an integer column, a NUMERIC NaN or infinity, or a fraction
# such as 1.5, as an integer).
# The exception's text holds the value: it never reaches a caller or a log.
MISFITS: Final = (ValueError, TypeError, ArithmeticError)


def misfit(dataset: Dataset, exc: BaseException) -> StorageFailure:
    """The failure for source values that do not fit the catalogue's column types:
    names the dataset and the exception's class, never the value."""
    return StorageFailure(
        f"dataset {dataset.code}: the source's values do not fit the catalogue's "
        f"column types ({type(exc).__name__})"
    )


def reported_misfit(source: object, dataset: Dataset, exc: BaseException) -> StorageFailure:
    """``misfit``, after one warning for the operator naming the source, the dataset
    and the exception's class. The exception's text is the value (text or a
    fraction in an integer column), so neither it nor a traceback goes anywhere."""
    logging.getLogger("gateway.sources").warning(
        "data source %s: values of %s do not fit the catalogue's column types (%s)",
        source,
        dataset.code,
        type(exc).__name__,
    )
    return misfit(dataset, exc)


def normalise(value: object, kind: ColumnType) -> object:
    """A database value as the catalogue's type: str, int, float or ISO date text
    (one of ``MISFITS`` if it does not fit)."""
    if value is None or type(value) is _NATIVE[kind]:
        return value
    if kind == "integer" and isinstance(value, int | Decimal | float | str):
        number = int(value)  # NaN: ValueError; infinity: OverflowError
        if isinstance(value, Decimal | float) and number != value:
            # 1.5 in an integer column: truncating it would release a wrong value.
            raise ValueError("not a whole number")
        return number
    if kind == "float" and isinstance(value, int | Decimal | float | str):
        return float(value)
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if kind == "date" else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


_NATIVE: dict[str, type] = {"integer": int, "float": float, "string": str, "date": str}


def normalise_column(values: Sequence[object], kind: ColumnType) -> Sequence[object]:
    """A column of database values as the catalogue's type (``normalise`` each);
    ``values`` itself when every one already is (the usual case: one type check
    per value, made in C, and no copy)."""
    if set(map(type, values)) <= {_NATIVE[kind], type(None)}:
        return values
    return tuple(normalise(v, kind) for v in values)


def normalise_row(row: Sequence[object], names: Sequence[str], kinds: Sequence[ColumnType]) -> Row:
    return {n: normalise(v, k) for n, v, k in zip(names, row, kinds, strict=True)}


def polars_schema(dataset: Dataset, cols: Sequence[str]) -> dict[str, pl.DataType]:
    import polars as pl

    schema: dict[str, pl.DataType] = {}
    for c in cols:
        t = dataset.column(c).type
        schema[c] = pl.Int64() if t == "integer" else pl.Float64() if t == "float" else pl.String()
    return schema


def frame_parts(
    dataset: Dataset, cols: Sequence[str], batches: Iterable[Sequence[Sequence[object]]]
) -> Iterator[pl.DataFrame]:
    """The frame of ``cols`` from row tuples arriving in batches, one part per batch.

    Each batch becomes a columnar (Arrow-backed) part at once, converted to the
    catalogue's types with vectorised casts, so only one batch of Python objects
    is alive at a time; a source with no rows yields one empty part (the schema)."""
    import polars as pl

    schema = polars_schema(dataset, cols)
    empty = True
    for batch in batches:
        # Column by column (half the time and memory of building from row tuples).
        columns = list(zip(*batch, strict=True)) if batch else [() for _ in cols]
        try:
            raw = pl.DataFrame([pl.Series(c, v) for c, v in zip(cols, columns, strict=True)])
        except (pl.exceptions.PolarsError, pl.exceptions.PanicException, *MISFITS) as exc:
            # A panic (a PostgreSQL NUMERIC NaN or infinity) is a BaseException:
            # uncaught, it would leave the RPC unanswered until its deadline.
            raise misfit(dataset, exc) from None
        exprs = []
        for c in cols:
            e = pl.col(c)
            if schema[c] == pl.Int64() and (raw.schema[c].is_float() or raw.schema[c].is_decimal()):
                # Polars truncates (float) or rounds (decimal) 1.5 to an integer:
                # a wrong value in a statistic. A fraction is a misfit.
                whole = e.cast(pl.Float64)
                if raw.select((whole != whole.round(0)).any()).item():
                    raise misfit(dataset, ValueError("not a whole number"))
            if raw.schema[c] in (pl.Date, pl.Datetime):
                e = e.dt.strftime("%Y-%m-%d")
            exprs.append(e.cast(schema[c]))
        try:
            part = raw.select(exprs)
        except (pl.exceptions.PolarsError, pl.exceptions.PanicException) as exc:
            raise misfit(dataset, exc) from None
        empty = False
        yield part
    if empty:
        yield pl.DataFrame(schema=schema)
