"""Property: whatever the rows and the requested subset, release emits exactly
the decision's fields, in order, each transformed as the agreement says; no
other column (and no raw value of a transformed field) ever leaves. The
column-by-column release of streamed transfers gives the very same values."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.policy import AccessRequest, PolicyEngine
from gateway.policy.loader import load_policy_set
from gateway.policy.model import Transform
from gateway.policy.quota import QuotaKey
from gateway.policy.transforms import Pseudonymiser, generalise, mask, render
from tests.policy.policy_testkit import NOW_MS, POLICIES, SECRET

CASES = {
    "hebei-housing": (
        "110000",
        "si_contributions",
        "130000",
        "hebei-housing-fund",
        "housing_fund_transfer",
        "bj-si-to-hebei-housing-fund",
    ),
    "tianjin-planning": (
        "110000",
        "si_contributions",
        "120000",
        "tianjin-planning",
        "commuter_planning",
        "bj-si-to-tianjin-planning",
    ),
    "beijing-hf": (
        "120000",
        "hf_accounts",
        "110000",
        "beijing-housing-fund",
        "housing_fund_transfer",
        "tj-hf-to-beijing-housing-fund",
    ),
}

SENTINEL = "§LEAK§"
values = st.one_of(
    st.none(),
    st.text(max_size=24),
    st.integers(-(10**9), 10**9),
    st.floats(allow_nan=False, allow_infinity=False),
    st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2100, 1, 1)),
    st.sampled_from(["110101199003078515", "13812345678", "张三丰", "北京市朝阳区建国路88号"]),
)


class _Unmetered:
    """Quota is not under test here (see test_policy_engine / test_policy_quota):
    hypothesis may run more examples than any daily quota."""

    def used(self, key: QuotaKey) -> int:
        return 0

    def reading(self, key: QuotaKey) -> int:
        return 0

    def consume(self, key: QuotaKey, count: int, limit: int) -> int:
        return count


@pytest.fixture(scope="module")
def engines() -> dict[str, PolicyEngine]:
    out = {}
    for holder in ("110000", "120000"):
        quota = _Unmetered()
        out[holder] = PolicyEngine(
            load_policy_set(POLICIES / holder), quota, SECRET, clock=lambda: NOW_MS
        )
    return out


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
@pytest.mark.parametrize("case", sorted(CASES))
def test_only_allowlisted_fields_leave_and_every_transform_applies(
    engines: dict[str, PolicyEngine], case: str, data: st.DataObject
) -> None:
    holder, dataset, requester, system, purpose, agreement_id = CASES[case]
    eng = engines[holder]
    ps = eng._source.current
    agreement = ps.by_id[agreement_id]
    columns = [c.name for c in ps.datasets[dataset].columns]
    allowed = [f.name for f in agreement.released]
    subset = data.draw(
        st.one_of(
            st.just(()), st.lists(st.sampled_from(allowed), unique=True, min_size=1).map(tuple)
        )
    )
    n_rows = data.draw(st.integers(0, min(5, agreement.spec.max_records_per_request)))
    rows = []
    for _ in range(n_rows):
        row: dict[str, object] = {c: data.draw(values) for c in columns}
        # Extra, unknown columns carry a sentinel that must never leave.
        row.update({f"x_{i}": SENTINEL for i in range(data.draw(st.integers(0, 3)))})
        rows.append(row)
    req = AccessRequest(
        requester,
        system,
        holder,
        dataset,
        purpose,
        subset,
        subject_count=max(n_rows, 1),
        request_id="p",
        timestamp_ms=NOW_MS,
    )
    decision = eng.decide(req)
    assert decision.allowed, decision.reason
    expected_names = list(subset) if subset else allowed
    assert [f.name for f in decision.fields] == expected_names
    out = eng.release(decision, req, rows)
    # The streamed path's vectorised release gives exactly the same values, in order.
    given = {c: [r.get(c) for r in rows] for c in columns}
    by_column = eng.release_columns(decision, req, given, len(rows))
    assert [name for name, _ in by_column] == expected_names
    assert all(len(vals) == len(rows) for _, vals in by_column)
    rebuilt = [
        dict(zip(expected_names, r, strict=True))
        for r in zip(*(v for _, v in by_column), strict=True)
    ]
    assert rebuilt == out
    pseudo = Pseudonymiser(SECRET)
    assert len(out) == len(rows)
    for raw, got in zip(rows, out, strict=True):
        assert list(got) == expected_names  # nothing outside the allowlist, order kept
        assert all(isinstance(v, str) for v in got.values())
        assert SENTINEL not in "".join(got.values())
        for name in expected_names:
            cf = agreement.by_name[name]
            v = raw[name]
            if cf.transform is Transform.PASS:
                assert got[name] == render(v)
            elif cf.transform is Transform.MASK:
                assert got[name] == mask(render(v), cf.keep_first, cf.keep_last)
                text = render(v)
                if len(text) > cf.keep_first + cf.keep_last + 1:
                    assert got[name] != text
            elif cf.transform is Transform.PSEUDONYMISE:
                assert got[name] == pseudo.token(v, requester, system, cf.pii)
                if render(v).strip():
                    assert got[name].startswith("pn_")
            else:
                assert cf.transform is Transform.GENERALISE and cf.to is not None
                assert got[name] == generalise(v, cf.to)


def test_column_release_refuses_a_column_of_the_wrong_length_and_reads_an_absent_one_as_none(
    engines: dict[str, PolicyEngine],
) -> None:
    from gateway.errors import InvalidArgument

    holder, dataset, requester, system, purpose, _ = CASES["tianjin-planning"]
    eng = engines[holder]
    req = AccessRequest(
        requester, system, holder, dataset, purpose, ("person_id", "age_band"),
        subject_count=0, request_id="p", timestamp_ms=NOW_MS,
    )  # fmt: skip
    decision = eng.decide(req)
    assert decision.allowed, decision.reason
    with pytest.raises(InvalidArgument):
        eng.release_columns(decision, req, {"person_id": ["a", "b"], "age_band": ["1"]}, 2)
    got = eng.release_columns(decision, req, {"person_id": ["a", "b"]}, 2)
    assert got[1] == ("age_band", ["", ""])
    assert eng.release(decision, req, [{"person_id": "a"}, {"person_id": "b"}]) == [
        dict(zip(("person_id", "age_band"), r, strict=True))
        for r in zip(got[0][1], got[1][1], strict=True)
    ]
