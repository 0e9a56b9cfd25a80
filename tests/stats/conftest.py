"""Fixtures for the statistics tests: seeded SQLite sources, agreements, holders."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from gateway.catalogue import Catalogue, load_catalogue
from gateway.demo.seed import seed_database
from gateway.ledger.events import AppendReceipt, LedgerEvent
from gateway.sources import SqliteSource
from gateway.stats.agreements import StatisticsPolicy, load_agreement
from gateway.stats.budget import SqliteBudgetStore
from gateway.stats.holder import RequestContext, StatsHolder

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
CODES = ("110000", "120000", "130000")
SYSTEMS = {"110000": "beijing-planning", "120000": "tianjin-planning", "130000": "hebei-planning"}
ROWS = 400


class MemoryLedger:
    """In-memory LedgerWriter (append-only list)."""

    def __init__(self) -> None:
        self.events: list[LedgerEvent] = []
        self._lock = threading.Lock()

    def append(self, event: LedgerEvent, rider: object | None = None) -> AppendReceipt:
        with self._lock:
            self.events.append(event)
            return AppendReceipt(len(self.events) - 1, f"{len(self.events):064x}")

    def of_kind(self, kind: str) -> list[LedgerEvent]:
        return [e for e in self.events if e.kind == kind]


@pytest.fixture(scope="session")
def catalogues() -> dict[str, Catalogue]:
    return {c: load_catalogue(POLICIES / c) for c in CODES}


@pytest.fixture(scope="session")
def sources(
    tmp_path_factory: pytest.TempPathFactory, catalogues: dict[str, Catalogue]
) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("stats-sources")
    out = {}
    for i, c in enumerate(CODES):
        path = base / f"{c}.db"
        seed_database(path, catalogues[c], rows=ROWS, seed=1000 + i)
        out[c] = path
    return out


def write_agreement(path: Path, code: str, **terms: object) -> Path:
    """A test agreement for ``code`` (shipped file with overridden dataset terms)."""
    doc = yaml.safe_load((POLICIES / code / "statistics.yaml").read_text("utf-8"))
    doc["datasets"][0].update(terms)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), "utf-8")
    return path


BIG_BUDGET = {"epsilon_per_requester": 100.0, "epsilon_total": 100.0}


HolderFactory = Callable[..., tuple[StatsHolder, MemoryLedger, SqliteBudgetStore]]


@pytest.fixture
def make_holder(
    tmp_path: Path, catalogues: dict[str, Catalogue], sources: dict[str, Path]
) -> HolderFactory:
    def make(
        code: str = "120000",
        *,
        shipped: bool = False,
        budget_path: Path | None = None,
        **terms: object,
    ) -> tuple[StatsHolder, MemoryLedger, SqliteBudgetStore]:
        if shipped:
            agreement = POLICIES / code / "statistics.yaml"
        else:
            terms.setdefault("budget", BIG_BUDGET)
            # The general path by default; tests of the declared unit pass False.
            terms.setdefault("truncate_by_identifier", True)
            agreement = write_agreement(
                tmp_path / f"agreements-{uuid.uuid4()}/{code}.yaml", code, **terms
            )
        ledger = MemoryLedger()
        budget = SqliteBudgetStore(budget_path or tmp_path / f"budget-{code}-{uuid.uuid4()}.db")
        holder = StatsHolder(
            policy=StatisticsPolicy(load_agreement(agreement), catalogues[code]),
            source=SqliteSource(sources[code]),
            budget=budget,
            ledger=ledger,
        )
        return holder, ledger, budget

    return make


def ctx(requester: str = "110000", system: str | None = None) -> RequestContext:
    return RequestContext(
        requester=requester,
        service_system=system or SYSTEMS[requester],
        request_id=str(uuid.uuid4()),
        now_ms=1_767_225_600_000,
    )


@pytest.fixture
def new_ctx() -> Callable[..., RequestContext]:
    return ctx


@pytest.fixture
def ledger_cls() -> type[MemoryLedger]:
    return MemoryLedger
