"""The dataset catalogue: what a holder's datasets contain, as declared by the bureau.

Owns: the frozen, validated description of each dataset a gateway holds
(columns, types, which columns are personal data and of what kind, the data
subject column, sharing class, data grade, statistics metadata such as public
group keys, bounds and the privacy unit), and loading it from
``<policies dir>/catalogue.yaml`` (``kind: dataset-catalogue``).

Does not own: where rows come from (``gateway.sources``), who may see what
(``gateway.policy``), or how statistics are computed (``gateway.stats``).

Statistics metadata is declared here, never inferred from data: bounds and
group-key domains derived from the data would themselves leak.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, model_validator

from gateway.errors import NotFound, clip
from gateway.identifiers import Code, JurisdictionCode
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.yamlfile import load_model


class SharingClass(StrEnum):
    """National practice: 无条件共享 / 有条件共享 / 不予共享."""

    UNCONDITIONAL = "unconditional"
    CONDITIONAL = "conditional"
    NOT_SHARED = "not_shared"


class DataGrade(StrEnum):
    """Data Security Law grades: 一般 / 重要 / 核心."""

    GENERAL = "general"
    IMPORTANT = "important"
    CORE = "core"


class PiiKind(StrEnum):
    NONE = "none"
    ID_NUMBER = "id_number"  # 居民身份证号 / 统一社会信用代码
    NAME = "name"
    PHONE = "phone"
    ADDRESS = "address"
    BIRTH_DATE = "birth_date"
    OTHER = "other"


ColumnType = Literal["string", "integer", "float", "date"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Column(_Frozen):
    name: Code
    type: ColumnType
    title: str = ""
    pii: PiiKind = PiiKind.NONE
    # Statistics: the public domain of a group-by key (e.g. district codes,
    # age bands, months). Only columns with a declared domain can be grouped on
    # or filtered by equality.
    public_keys: tuple[str, ...] | None = None
    # Statistics: clamping bounds for sums/means/quantiles on numeric columns
    # (finite: YAML's .inf and .nan would pass here and fail every query later).
    bounds: tuple[FiniteFloat, FiniteFloat] | None = None

    @model_validator(mode="after")
    def _check(self) -> Column:
        if self.bounds is not None:
            lo, hi = self.bounds
            if not lo < hi:
                raise ValueError(
                    f"bounds must be [lower, upper] with lower < upper, got {self.bounds}"
                )
            if self.type not in ("integer", "float"):
                raise ValueError(f"bounds need a numeric column, {self.name} is {self.type}")
        if self.public_keys is not None and len(set(self.public_keys)) != len(self.public_keys):
            raise ValueError(f"public_keys of {self.name} repeat a value")
        return self


class PrivacyUnit(_Frozen):
    """How many rows one person may contribute (statistics)."""

    # Column identifying the person (rows are truncated per person).
    column: Code
    # At most this many rows per person enter a statistic.
    max_rows: Annotated[int, Field(ge=1, le=10_000)] = 1


# A table, view or column name in a bureau's database (any case; schema-qualified tables
# as "schema.table"). Names are quoted by SQLAlchemy, never spliced into SQL text.
DB_NAME_RE = r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$"
DB_TABLE_RE = r"^[A-Za-z_][A-Za-z0-9_$]{0,62}(\.[A-Za-z_][A-Za-z0-9_$]{0,62})?$"


class SourceMapping(_Frozen):
    """Where a dataset's rows live when they are not in the embedded SQLite file.

    ``url`` is a SQLAlchemy URL (``postgresql+psycopg://reader@db.bj/si``,
    ``mysql+pymysql://reader@db.hb/ent``); ``${VAR}`` parts are read from the
    gateway's environment when it starts, so passwords stay out of policy files.
    """

    url: Annotated[str, Field(min_length=1, max_length=2048)]
    # Table or view, optionally "schema.table".
    table: Annotated[str, Field(pattern=DB_TABLE_RE)]
    # Catalogue column -> database column; unmapped columns keep their names.
    columns: dict[Code, Annotated[str, Field(pattern=DB_NAME_RE)]] = Field(default_factory=dict)
    # Catalogue columns giving bulk transfers a stable order (resumable); declare a
    # unique key when there is one. Default: the subject column, then every column.
    order_by: tuple[Code, ...] = ()

    def db_column(self, name: str) -> str:
        return self.columns.get(name, name)


class Dataset(_Frozen):
    code: Code
    title: str
    sharing_class: SharingClass
    grade: DataGrade
    # Column naming the data subject (what GetRecordsRequest.subject_ids match).
    subject_column: Code
    columns: Annotated[tuple[Column, ...], Field(min_length=1)]
    privacy_unit: PrivacyUnit | None = None
    # Read from a database (SQLAlchemy) instead of the gateway's SQLite file.
    source: SourceMapping | None = None

    @model_validator(mode="after")
    def _check(self) -> Dataset:
        names = [c.name for c in self.columns]
        if self.source is not None:
            for what, cols in (
                ("source.columns", tuple(self.source.columns)),
                ("source.order_by", self.source.order_by),
            ):
                extra = [c for c in cols if c not in names]
                if extra:
                    raise ValueError(
                        f"dataset {self.code}: {what} names {', '.join(extra)}, not in its columns"
                    )
        if len(set(names)) != len(names):
            raise ValueError(f"dataset {self.code}: column names repeat")
        if self.subject_column not in names:
            raise ValueError(
                f"dataset {self.code}: subject_column {self.subject_column!r} is not a column"
            )
        if self.privacy_unit and self.privacy_unit.column not in names:
            raise ValueError(
                f"dataset {self.code}: privacy_unit.column {self.privacy_unit.column!r} is not a column"
            )
        return self

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise NotFound(f"dataset {self.code} has no column {clip(repr(name))}")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


class SubjectAccessSettings(_Frozen):
    """Whether this holder answers subject-access requests ("who read my data")
    from citizen portals across the federation (``gateway.subject``)."""

    participate: bool = False


class Catalogue(_Frozen):
    kind: Literal["dataset-catalogue"]
    holder: JurisdictionCode
    datasets: tuple[Dataset, ...]
    subject_access: SubjectAccessSettings = SubjectAccessSettings()

    @model_validator(mode="after")
    def _check(self) -> Catalogue:
        codes = [d.code for d in self.datasets]
        if len(set(codes)) != len(codes):
            raise ValueError("dataset codes repeat")
        return self

    def dataset(self, code: str) -> Dataset:
        for d in self.datasets:
            if d.code == code:
                return d
        raise NotFound(f"jurisdiction {self.holder} holds no dataset {clip(repr(code))}")


CATALOGUE_FILE = "catalogue.yaml"


def load_catalogue(path: Path, limits: Limits = DEFAULT_LIMITS) -> Catalogue:
    """Load and validate a catalogue file (or ``<dir>/catalogue.yaml``).

    Raises PolicyFileError naming the file, line and field on any problem.
    """
    if path.is_dir():
        path = path / CATALOGUE_FILE
    return load_model(path, Catalogue, limits)
