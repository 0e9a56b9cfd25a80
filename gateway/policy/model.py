"""The schema of a sharing-agreement file (``kind: sharing-agreement``).

Owns: the pydantic models one agreement file is validated against, on its
own (types, required keys, unknown keys refused, per-field transform
parameters, date order). Does not own: checks that need the catalogue
(dataset codes, field names, column types; ``gateway.policy.loader``),
checks across files (overlaps; ``gateway.policy.lint``) or evaluation
(``gateway.policy.engine``).

One file holds one agreement, e.g.::

    kind: sharing-agreement
    id: bj-si-to-hebei-housing-fund
    holder: "110000"
    dataset: si_contributions
    sharing_class: conditional      # must agree with the catalogue
    grade: general                  # must agree with the catalogue
    requesters:
      - {jurisdiction: "130000", service_systems: [hebei-housing-fund]}
    purposes: [housing_fund_transfer]
    legal_basis: 《住房公积金管理条例》
    fields:
      - {name: person_id, transform: mask, keep_first: 6, keep_last: 4}
      - {name: birth_date, transform: generalise, to: year}
      - {name: employer, transform: pass}
    row_scope: named                # named | bulk
    max_records_per_request: 10
    quota_per_day: 1000             # units a day: a subject asked (named), a record (bulk)
    valid_from: 2025-01-01          # inclusive, China Standard Time (UTC+8)
    valid_until: 2028-12-31         # inclusive through 23:59:59.999 UTC+8
    approval: {id: 京数共审〔2025〕017号, approver: 北京市大数据中心}
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from gateway.catalogue import DataGrade, SharingClass
from gateway.identifiers import (
    ApprovalId,
    Code,
    JurisdictionCode,
    Purpose,
    ServiceSystemId,
    SharingAgreementId,
)

AGREEMENT_KIND = "sharing-agreement"
# Validity dates are read in China Standard Time.
CST = dt.timezone(dt.timedelta(hours=8), "CST")

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _one_line(text: str) -> str:
    # The legal basis goes into every ledger entry, which refuses control characters:
    # refused here, with the file and line, not at each exchange's ledger append.
    if _CONTROL.search(text):
        raise ValueError(
            "expected one line of text without control characters (a YAML `|` block "
            "keeps its line breaks: write it on one line, or use `>`)"
        )
    return text


def _whole_number(value: object) -> object:
    # YAML reads yes/no/on/off/true as booleans, which pydantic would take as 1 and 0.
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {str(value).lower()} (a YAML boolean)")
    return value


def _calendar_day(value: object) -> object:
    # pydantic would read a number as Unix time (0 -> 1970-01-01, 1861920000 ->
    # 2029-01-01) and a date with a time zone as the date in that zone, not China's.
    if isinstance(value, bool | int | float):
        raise ValueError(f"expected a calendar date like 2028-12-31, got the number {value!r}")
    if isinstance(value, dt.datetime):
        raise ValueError(
            f"expected a calendar date like 2028-12-31 (read in China Standard Time), "
            f"got a date and time {value.isoformat()}"
        )
    return value


_Count = Annotated[int, BeforeValidator(_whole_number), Field(ge=1, le=100_000_000)]
_Keep = Annotated[int, BeforeValidator(_whole_number), Field(ge=0, le=32)]
_Day = Annotated[dt.date, BeforeValidator(_calendar_day)]

_Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
    AfterValidator(_one_line),
]


class Transform(StrEnum):
    PASS = "pass"  # noqa: S105 - not a password
    MASK = "mask"
    PSEUDONYMISE = "pseudonymise"
    GENERALISE = "generalise"
    DROP = "drop"  # declared, never released (documents a deliberate exclusion)


class Generalisation(StrEnum):
    YEAR = "year"  # date -> "1990"
    MONTH = "month"  # date -> "1990-03"
    DISTRICT = "district"  # address -> province/prefecture/county prefix


class RowScope(StrEnum):
    NAMED = "named"  # only the subjects named in the request
    BULK = "bulk"  # named subjects or a bulk request


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FieldSpec(_Frozen):
    name: Code
    transform: Transform
    # mask only: how many leading / trailing characters stay visible.
    keep_first: _Keep | None = None
    keep_last: _Keep | None = None
    # generalise only: to what level.
    to: Generalisation | None = None

    @model_validator(mode="after")
    def _params(self) -> FieldSpec:
        is_mask = self.transform is Transform.MASK
        if not is_mask and (self.keep_first is not None or self.keep_last is not None):
            raise ValueError(
                f"field {self.name}: keep_first/keep_last apply to transform mask, "
                f"not {self.transform.value}"
            )
        if self.transform is Transform.GENERALISE and self.to is None:
            raise ValueError(
                f"field {self.name}: transform generalise needs `to` (year, month, district)"
            )
        if self.transform is not Transform.GENERALISE and self.to is not None:
            raise ValueError(
                f"field {self.name}: `to` applies to transform generalise, "
                f"not {self.transform.value}"
            )
        return self


class Requester(_Frozen):
    jurisdiction: JurisdictionCode
    service_systems: Annotated[tuple[ServiceSystemId, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique(self) -> Requester:
        if len(set(self.service_systems)) != len(self.service_systems):
            raise ValueError(f"requester {self.jurisdiction}: service_systems repeat")
        return self


class Approval(_Frozen):
    id: ApprovalId
    approver: _Text


class AgreementFile(_Frozen):
    kind: Literal["sharing-agreement"]
    id: SharingAgreementId
    title: str = ""
    holder: JurisdictionCode
    dataset: Code
    sharing_class: SharingClass
    grade: DataGrade
    requesters: Annotated[tuple[Requester, ...], Field(min_length=1)]
    purposes: Annotated[tuple[Purpose, ...], Field(min_length=1)]
    legal_basis: _Text
    fields: Annotated[tuple[FieldSpec, ...], Field(min_length=1)]
    row_scope: RowScope = RowScope.NAMED
    max_records_per_request: _Count
    quota_per_day: _Count
    valid_from: _Day
    valid_until: _Day
    approval: Approval | None = None

    @model_validator(mode="after")
    def _check(self) -> AgreementFile:
        if self.valid_from > self.valid_until:
            raise ValueError(
                f"valid_from {self.valid_from} is after valid_until {self.valid_until}"
            )
        names = [f.name for f in self.fields]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"fields listed more than once: {', '.join(dup)}")
        juris = [r.jurisdiction for r in self.requesters]
        dupj = sorted({j for j in juris if juris.count(j) > 1})
        if dupj:
            raise ValueError(f"requesters listed more than once: {', '.join(dupj)}")
        if len(set(self.purposes)) != len(self.purposes):
            raise ValueError("purposes repeat")
        if all(f.transform is Transform.DROP for f in self.fields):
            raise ValueError("every field is dropped: the agreement releases nothing")
        return self


def valid_from_ms(day: dt.date) -> int:
    """First millisecond of ``day`` in China Standard Time, as Unix ms."""
    start = dt.datetime(day.year, day.month, day.day, tzinfo=CST)
    return int(start.timestamp()) * 1000


def valid_until_ms(day: dt.date) -> int:
    """Last millisecond of ``day`` in China Standard Time, as Unix ms (9999-12-31,
    "until further notice", has no next day to count back from)."""
    return valid_from_ms(day) + 86_400_000 - 1
