"""Statistics agreements: who may ask a holder which DP statistics, at what cost.

Owns: the ``policies/<code>/statistics.yaml`` format (``kind:
statistics-agreement``), loading it (file:line:field errors via
``gateway.yamlfile``), cross-checking it against the dataset catalogue
(``validate_file``, used by ``gateway policy check``), and deciding whether a
requester may ask a given query (``StatisticsPolicy.authorise``). Refuses by
default: no agreement entry, no statistics.

Does not own: budgets (``gateway.stats.budget`` stores spends; the caps are
declared here), computing releases (``gateway.stats.engine``).

File format (one file per holder; every field is required unless noted)::

    kind: statistics-agreement
    id: stats-120000-2026            # identifier recorded in ledgers
    holder: "120000"                 # must equal the catalogue's holder
    datasets:
      - dataset: si_contributions    # catalogue dataset code
        statistics: [count, sum, mean, quantile, median, histogram]
        group_by: [age_band, ...]    # columns with catalogue public_keys
        filters: [status, ...]       # columns with catalogue public_keys
        measures: [monthly_base]     # numeric columns with catalogue bounds
        confidence_levels: [0.9, 0.95, 0.99]
        max_rows: 10000000           # public upper bound on the dataset's rows
        truncate_by_identifier: true # optional, default true (see below)
        max_epsilon_per_query: 1.0   # optional, default epsilon_per_requester
        budget:
          epsilon_per_requester: 3.0 # per requester (jurisdiction + service system)
          epsilon_total: 10.0        # all requesters together
        requesters:
          - jurisdiction: "110000"
            service_systems: [beijing-planning]

``truncate_by_identifier: true`` makes OpenDP keep at most
``privacy_unit.max_rows`` rows per person (identified by the catalogue's
``privacy_unit.column``) inside the measured plan; ``false`` trusts the
catalogue's ``max_rows`` as a guarantee of the source (e.g. a primary key) and
skips the per-person window, which is much cheaper on large tables.
``max_rows`` is a public, declared bound (e.g. the population), never read
from data for calibration; OpenDP needs it to bound floating-point and
overflow error and does not check it, so a holder whose data hold more rows
refuses the query before spending any budget (``gateway.stats.holder``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.catalogue import Catalogue, Dataset
from gateway.crypto import sha256_hex
from gateway.errors import GatewayError, NotFound, PolicyDenied, PolicyFileError, clip
from gateway.identifiers import (
    ApprovalId,
    Code,
    JurisdictionCode,
    Purpose,
    ServiceSystemId,
    StatsAgreementId,
)
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.stats.model import Statistic
from gateway.yamlfile import load_model

STATISTICS_FILE = "statistics.yaml"
# A rule for agreement files, not a deployment limit (so not in ``Limits``):
# an epsilon above 100 offers no meaningful privacy, so such a file is a mistake.
MAX_EPSILON = 100.0


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Requester(_Frozen):
    jurisdiction: JurisdictionCode
    service_systems: Annotated[tuple[ServiceSystemId, ...], Field(min_length=1)]


class Budget(_Frozen):
    epsilon_per_requester: Annotated[float, Field(gt=0, le=MAX_EPSILON)]
    epsilon_total: Annotated[float, Field(gt=0, le=MAX_EPSILON)]
    # Pure-DP statistics only today: delta budgets exist so the ledger and the
    # store carry them, and must be 0 until an approximate-DP statistic exists.
    delta_per_requester: Annotated[float, Field(ge=0, le=0)] = 0.0
    delta_total: Annotated[float, Field(ge=0, le=0)] = 0.0

    @model_validator(mode="after")
    def _check(self) -> Budget:
        if self.epsilon_per_requester > self.epsilon_total:
            raise ValueError("epsilon_per_requester exceeds epsilon_total")
        return self


class DatasetTerms(_Frozen):
    dataset: Code
    # Declared purpose codes; a query for any other purpose is refused.
    purposes: Annotated[tuple[Purpose, ...], Field(min_length=1)]
    statistics: Annotated[
        tuple[Literal["count", "sum", "mean", "quantile", "median", "histogram"], ...],
        Field(min_length=1),
    ]
    group_by: tuple[Code, ...] = ()
    filters: tuple[Code, ...] = ()
    measures: tuple[Code, ...] = ()
    confidence_levels: Annotated[
        tuple[Annotated[float, Field(gt=0, lt=1)], ...], Field(min_length=1)
    ]
    max_rows: Annotated[int, Field(ge=1, le=4_000_000_000)]
    truncate_by_identifier: bool = True
    max_epsilon_per_query: Annotated[float, Field(gt=0, le=MAX_EPSILON)] | None = None
    budget: Budget
    requesters: Annotated[tuple[Requester, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _check(self) -> DatasetTerms:
        for name, items in (
            ("statistics", self.statistics),
            ("group_by", self.group_by),
            ("filters", self.filters),
            ("measures", self.measures),
            ("confidence_levels", self.confidence_levels),
        ):
            if len(set(items)) != len(items):
                raise ValueError(f"{name} repeat a value")
        js = [r.jurisdiction for r in self.requesters]
        if len(set(js)) != len(js):
            raise ValueError("requesters: a jurisdiction appears twice")
        if (
            self.max_epsilon_per_query is not None
            and self.max_epsilon_per_query > self.budget.epsilon_per_requester
        ):
            raise ValueError("max_epsilon_per_query exceeds budget.epsilon_per_requester")
        return self

    @property
    def per_query_cap(self) -> float:
        return self.max_epsilon_per_query or self.budget.epsilon_per_requester

    def allows_statistic(self, s: Statistic) -> bool:
        return s.value in self.statistics

    def allows_requester(self, jurisdiction: str, service_system: str) -> bool:
        return any(
            r.jurisdiction == jurisdiction and service_system in r.service_systems
            for r in self.requesters
        )


class StatisticsApproval(_Frozen):
    id: ApprovalId
    approver: Annotated[str, Field(min_length=1, max_length=256)]


class StatisticsAgreement(_Frozen):
    kind: Literal["statistics-agreement"]
    id: StatsAgreementId
    holder: JurisdictionCode
    # Why releasing these statistics is lawful; recorded in every ledger entry.
    legal_basis: Annotated[
        str, Field(min_length=1, max_length=1000, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")
    ]
    approval: StatisticsApproval | None = None
    datasets: tuple[DatasetTerms, ...]

    @model_validator(mode="after")
    def _check(self) -> StatisticsAgreement:
        codes = [d.dataset for d in self.datasets]
        if len(set(codes)) != len(codes):
            raise ValueError("a dataset appears twice")
        return self

    def terms(self, dataset: str) -> DatasetTerms | None:
        for t in self.datasets:
            if t.dataset == dataset:
                return t
        return None


@dataclass(frozen=True)
class LoadedAgreement:
    agreement: StatisticsAgreement
    digest: str  # hex SHA-256 of the file's exact bytes
    path: Path


def load_agreement(path: Path, limits: Limits = DEFAULT_LIMITS) -> LoadedAgreement:
    """Load ``path`` (or ``<dir>/statistics.yaml``); PolicyFileError on any problem."""
    if path.is_dir():
        path = path / STATISTICS_FILE
    agreement = load_model(path, StatisticsAgreement, limits)
    return LoadedAgreement(agreement, sha256_hex(path.read_bytes()), path)


def cross_check(agreement: StatisticsAgreement, catalogue: Catalogue) -> list[str]:
    """Problems between an agreement and the holder's catalogue (empty if fine)."""
    problems: list[str] = []
    if agreement.holder != catalogue.holder:
        problems.append(
            f"holder {agreement.holder} differs from the catalogue's holder {catalogue.holder}"
        )
    for t in agreement.datasets:
        where = f"dataset {t.dataset}"
        try:
            ds = catalogue.dataset(t.dataset)
        except NotFound:
            problems.append(f"{where}: not in the catalogue")
            continue
        problems += [f"{where}: {p}" for p in _check_terms(t, ds)]
    return problems


def _check_terms(t: DatasetTerms, ds: Dataset) -> list[str]:
    out: list[str] = []
    names = set(ds.column_names)
    for kind, cols in (("group_by", t.group_by), ("filters", t.filters)):
        for c in cols:
            if c not in names:
                out.append(f"{kind}: {c} is not a column")
            elif ds.column(c).public_keys is None:
                out.append(f"{kind}: {c} has no declared public_keys in the catalogue")
    for c in t.measures:
        if c not in names:
            out.append(f"measures: {c} is not a column")
        elif ds.column(c).bounds is None:
            out.append(f"measures: {c} has no declared bounds in the catalogue")
    needs_measure = {"sum", "mean", "quantile", "median"} & set(t.statistics)
    if needs_measure and not t.measures:
        out.append(f"statistics {sorted(needs_measure)} need at least one measure")
    if ds.privacy_unit is None:
        out.append("the catalogue declares no privacy_unit for this dataset")
    return out


def validate_file(path: Path, catalogue: Catalogue, limits: Limits = DEFAULT_LIMITS) -> list[str]:
    """Validate one statistics agreement file against ``catalogue``.

    Returns a list of problems (empty if the file is fine); each names the file.
    """
    try:
        loaded = load_agreement(path, limits)
    except GatewayError as exc:
        return [str(exc)]
    return [f"{loaded.path}: {p}" for p in cross_check(loaded.agreement, catalogue)]


@dataclass(frozen=True)
class Authorised:
    """A query's requester is allowed by these terms."""

    terms: DatasetTerms
    dataset: Dataset
    agreement_id: str
    agreement_digest: str
    legal_basis: str = ""
    approval_id: str = ""


class StatisticsPolicy:
    """A holder's statistics agreement bound to its catalogue."""

    def __init__(self, loaded: LoadedAgreement, catalogue: Catalogue) -> None:
        problems = cross_check(loaded.agreement, catalogue)
        if problems:
            raise PolicyFileError(f"{loaded.path}: " + "; ".join(problems))
        self._loaded = loaded
        self._catalogue = catalogue

    @classmethod
    def from_dir(
        cls, policies_dir: Path, catalogue: Catalogue, limits: Limits = DEFAULT_LIMITS
    ) -> StatisticsPolicy:
        return cls(load_agreement(policies_dir / STATISTICS_FILE, limits), catalogue)

    @property
    def holder(self) -> str:
        return self._loaded.agreement.holder

    @property
    def agreement(self) -> StatisticsAgreement:
        return self._loaded.agreement

    @property
    def digest(self) -> str:
        return self._loaded.digest

    @property
    def path(self) -> Path:
        """The agreement file (named in operators' messages)."""
        return self._loaded.path

    def authorise(
        self, dataset: str, jurisdiction: str, service_system: str, purpose: str
    ) -> Authorised:
        """Terms allowing ``service_system`` at ``jurisdiction`` to query ``dataset``
        for ``purpose``.

        Raises NotFound for an unknown dataset, PolicyDenied when no agreement
        entry names this requester, or this purpose, for this dataset.
        """
        ds = self._catalogue.dataset(dataset)
        terms = self._loaded.agreement.terms(dataset)
        if terms is None:
            raise PolicyDenied(f"no statistics agreement of {self.holder} covers dataset {dataset}")
        if not terms.allows_requester(jurisdiction, service_system):
            raise PolicyDenied(
                f"statistics agreement {self._loaded.agreement.id} does not allow "
                f"{service_system} at {jurisdiction} to query {dataset}"
            )
        if purpose not in terms.purposes:
            raise PolicyDenied(
                f"statistics agreement {self._loaded.agreement.id} does not allow purpose "
                f"{clip(repr(purpose))} for {dataset}; declared purposes: {', '.join(terms.purposes)}"
            )
        a = self._loaded.agreement
        return Authorised(
            terms,
            ds,
            a.id,
            self._loaded.digest,
            a.legal_basis,
            a.approval.id if a.approval else "",
        )
