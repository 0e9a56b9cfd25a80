"""Agreement files validate against catalogues; queries round-trip and digest canonically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from gateway.catalogue import Catalogue
from gateway.errors import InvalidArgument
from gateway.limits import DEFAULT_LIMITS
from gateway.stats.agreements import validate_file
from gateway.stats.convert import query_from_proto, query_to_proto
from gateway.stats.model import FederatedQuery, Statistic, StatsFilter, StatsQuery

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("code", ["110000", "120000", "130000"])
def test_shipped_agreements_are_valid(code: str, catalogues: dict[str, Catalogue]) -> None:
    assert validate_file(ROOT / "policies" / code / "statistics.yaml", catalogues[code]) == []


def _write(tmp_path: Path, mutate: Any) -> Path:
    doc = yaml.safe_load((ROOT / "policies/120000/statistics.yaml").read_text("utf-8"))
    mutate(doc)
    p = tmp_path / "statistics.yaml"
    p.write_text(yaml.safe_dump(doc, allow_unicode=True), "utf-8")
    return p


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (
            lambda d: d["datasets"][0].update(group_by=["employer"]),
            "employer has no declared public_keys",
        ),
        (lambda d: d["datasets"][0].update(filters=["name"]), "name has no declared public_keys"),
        (lambda d: d["datasets"][0].update(measures=["gender"]), "gender has no declared bounds"),
        (lambda d: d["datasets"][0].update(dataset="population_core"), "not in the catalogue"),
        (lambda d: d.update(holder="110000"), "differs from the catalogue"),
        (lambda d: d["datasets"][0]["budget"].update(epsilon_per_requester=20.0), "exceeds"),
        (lambda d: d["datasets"][0].update(statistics=["count", "sql"]), "statistics"),
        (lambda d: d["datasets"][0].update(unknown_field=1), "unknown_field"),
        (lambda d: d["datasets"][0]["budget"].update(delta_total=1e-6), "delta_total"),
    ],
)
def test_bad_agreements_are_reported(
    tmp_path: Path, catalogues: dict[str, Catalogue], mutate: Any, problem: str
) -> None:
    problems = validate_file(_write(tmp_path, mutate), catalogues["120000"])
    assert problems and problem in problems[0] and "statistics.yaml" in problems[0]


def test_yaml_error_names_the_line(tmp_path: Path, catalogues: dict[str, Catalogue]) -> None:
    p = tmp_path / "statistics.yaml"
    p.write_text("kind: statistics-agreement\nid: x\nid: y\n", "utf-8")
    (problem,) = validate_file(p, catalogues["120000"])
    assert "statistics.yaml:3" in problem and "duplicate key" in problem


names = st.sampled_from(["age_band", "gender", "status", "district_code"])
queries = st.builds(
    StatsQuery,
    dataset=st.just("si_contributions"),
    purpose=st.just("planning"),
    statistic=st.just(Statistic.COUNT),
    epsilon=st.floats(1e-3, 10),
    confidence=st.sampled_from([0.9, 0.95, 0.99]),
    group_by=st.lists(names, unique=True, max_size=3).map(tuple),
    filters=st.lists(
        st.builds(
            StatsFilter,
            column=names,
            values=st.lists(
                st.text(min_size=1, max_size=5), min_size=1, max_size=3, unique=True
            ).map(tuple),
        ),
        max_size=3,
        unique_by=lambda f: f.column,
    ).map(tuple),
)


@given(queries)
def test_query_protobuf_round_trip_keeps_the_digest(query: StatsQuery) -> None:
    wire = query_to_proto(query).SerializeToString()
    back = query_from_proto(type(query_to_proto(query)).FromString(wire), DEFAULT_LIMITS)
    assert back == query and back.digest == query.digest


@given(queries)
def test_digest_ignores_filter_order_but_not_content(query: StatsQuery) -> None:
    shuffled = StatsQuery(
        **{
            **query.__dict__,
            "filters": tuple(
                reversed([StatsFilter(f.column, tuple(reversed(f.values))) for f in query.filters])
            ),
        }
    )
    assert shuffled.digest == query.digest
    other = StatsQuery(**{**query.__dict__, "epsilon": query.epsilon * 2})
    assert other.digest != query.digest


@pytest.mark.parametrize(
    "kwargs",
    [
        {"epsilon": 0.0},
        {"epsilon": float("nan")},
        {"epsilon": float("inf")},
        {"confidence": 1.0},
        {"column": "x"},  # count takes no column
        {"group_by": ("a", "a")},
        {"group_by": ("DROP TABLE",)},
        {"dataset": "../etc"},
        {"candidates": (1.0,)},
        {"bin_edges": (1.0, 2.0)},
        {"filters": (StatsFilter("status", ("x",)), StatsFilter("status", ("y",)))},
    ],
)
def test_malformed_queries_are_invalid_argument(kwargs: dict[str, Any]) -> None:
    base: dict[str, Any] = {
        "dataset": "si_contributions",
        "purpose": "p",
        "statistic": Statistic.COUNT,
        "epsilon": 1.0,
        "confidence": 0.95,
    }
    with pytest.raises(InvalidArgument):
        StatsQuery(**{**base, **kwargs})


def test_federated_query_limits() -> None:
    query = StatsQuery(
        dataset="si_contributions",
        purpose="p",
        statistic=Statistic.COUNT,
        epsilon=1.0,
        confidence=0.95,
    )
    with pytest.raises(InvalidArgument, match="no repeats"):
        FederatedQuery(("110000", "110000"), query)
    with pytest.raises(InvalidArgument, match="at least one"):
        FederatedQuery((), query)
    with pytest.raises(InvalidArgument, match="six-digit"):
        FederatedQuery(("beijing",), query)
