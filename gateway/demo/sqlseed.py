"""The demo's registers in a real database (PostgreSQL, MariaDB, any SQLAlchemy URL).

Owns: creating one schema (PostgreSQL) or database (MySQL/MariaDB) per
jurisdiction, filling it with the same synthetic rows as the SQLite seed (same
seed, same rows) in typed tables the way a bureau keeps them (``DATE``,
``NUMERIC``, pinyin column names for the ID number and name: 身份证号 ``sfzh``,
姓名 ``xm``), and returning each dataset's catalogue ``source:`` mapping.
Dropping the schema again (tests clean up after themselves).

Does not own: reading (``gateway.sources.sql``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from gateway.catalogue import Catalogue, Dataset
from gateway.demo.seed import synthetic_tables

# How the demo bureaus name some columns in their own databases.
DB_NAMES = {"person_id": "sfzh", "name": "xm"}

_BATCH = 5_000


def _type(ds: Dataset, column: str) -> sa.types.TypeEngine[Any]:
    t = ds.column(column).type
    if t == "integer":
        return sa.Integer()
    if t == "float":
        return sa.Numeric(14, 2)
    if t == "date":
        return sa.Date()
    return sa.String(255)


def create_schema(url: str, schema: str, *, replace: bool = False) -> None:
    engine = sa.create_engine(url)
    mysql = engine.dialect.name in ("mysql", "mariadb")
    word = "DATABASE" if mysql else "SCHEMA"
    quoted = engine.dialect.identifier_preparer.quote(schema)
    with engine.begin() as conn:
        if replace:
            conn.exec_driver_sql(f"DROP {word} IF EXISTS {quoted}{'' if mysql else ' CASCADE'}")
        conn.exec_driver_sql(f"CREATE {word} IF NOT EXISTS {quoted}")
    engine.dispose()


def drop_schema(url: str, schema: str) -> None:
    engine = sa.create_engine(url)
    mysql = engine.dialect.name in ("mysql", "mariadb")
    quoted = engine.dialect.identifier_preparer.quote(schema)
    with engine.begin() as conn:
        if mysql:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted}")
        else:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {quoted} CASCADE")
    engine.dispose()


def _value(ds: Dataset, column: str, value: object) -> object:
    if ds.column(column).type == "date" and isinstance(value, str) and value:
        return dt.date.fromisoformat(value)
    return value


def seed_sql_database(
    url: str, schema: str, catalogue: Catalogue, rows: int = 2000, seed: int = 20260101
) -> dict[str, dict[str, object]]:
    """Create typed tables in ``schema`` and fill them; returns each dataset's
    ``source:`` mapping (for catalogue.yaml)."""
    create_schema(url, schema, replace=True)
    engine = sa.create_engine(url)
    mappings: dict[str, dict[str, object]] = {}
    try:
        for ds, _n, made in synthetic_tables(catalogue, rows, seed):
            meta = sa.MetaData(schema=schema)
            table = sa.Table(
                ds.code,
                meta,
                *(
                    sa.Column(DB_NAMES.get(c, c), _type(ds, c), nullable=True)
                    for c in ds.column_names
                ),
                sa.UniqueConstraint(DB_NAMES.get(ds.subject_column, ds.subject_column)),
            )
            meta.create_all(engine)
            with engine.begin() as conn:
                batch: list[dict[str, object]] = []
                for r in made:
                    batch.append({DB_NAMES.get(c, c): _value(ds, c, r[c]) for c in ds.column_names})
                    if len(batch) >= _BATCH:
                        conn.execute(table.insert(), batch)
                        batch = []
                if batch:
                    conn.execute(table.insert(), batch)
            mapping: dict[str, object] = {"url": url, "table": f"{schema}.{ds.code}"}
            renamed = {c: DB_NAMES[c] for c in ds.column_names if c in DB_NAMES}
            if renamed:
                mapping["columns"] = renamed
            mapping["order_by"] = [ds.subject_column]
            mappings[ds.code] = mapping
    finally:
        engine.dispose()
    return mappings
