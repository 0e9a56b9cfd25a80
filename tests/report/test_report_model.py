"""The audit report's figures (pure): both sides counted once, budget from holders' entries."""

from __future__ import annotations

from gateway.report.model import (
    Entry,
    breakdown,
    budget_series,
    exchanges,
    reason_category,
    refusals_by_reason,
)
from tests.ledger.ledger_testkit import make_event


def _both_sides(i: int, **kw: object) -> list[Entry]:
    holder = make_event(i, role="holder", local="110000", counterparty="120000", **kw)
    requester = make_event(i, role="requester", local="120000", counterparty="110000", **kw)
    return [Entry("110000", i, holder), Entry("120000", i, requester)]


def test_an_exchange_recorded_on_both_sides_is_counted_once_from_the_holder() -> None:
    entries = _both_sides(1) + _both_sides(2, kind="refusal", decision="deny", reason="no")
    items = exchanges(entries)
    assert [(x.kind, x.requester, x.holder) for x in items] == [
        ("transfer", "120000", "110000"),
        ("refusal", "120000", "110000"),
    ]
    b = breakdown(items, "pair")
    assert b.categories == ("120000→110000",)
    assert b.counts["transfer"] == {"120000→110000": 1}
    assert b.counts["refusal"] == {"120000→110000": 1}


def test_a_requester_only_entry_still_counts_when_the_holder_ledger_is_absent() -> None:
    e = make_event(3, role="requester", local="130000", counterparty="110000")
    [x] = exchanges([Entry("130000", 0, e)])
    assert (x.requester, x.holder) == ("130000", "110000")


def test_refusal_reasons_differing_only_in_ids_and_numbers_are_grouped() -> None:
    a = "quota exceeded: 120000/x has used 1000 of 1000 records on 2026-12-01"
    b = "quota exceeded: 120000/x has used 998 of 1000 records on 2026-12-02"
    assert reason_category(a) == reason_category(b)
    entries = [
        Entry("110000", i, make_event(i, kind="refusal", decision="deny", reason=r))
        for i, r in enumerate((a, b, "purpose marketing is not declared"))
    ]
    assert [n for _, n in refusals_by_reason(exchanges(entries))] == [2, 1]


def test_budget_series_counts_charged_holder_entries_once_and_ignores_uncharged_refusals() -> None:
    def stat(i: int, kind: str, eps: str, charged: str = "", **kw: object) -> Entry:
        details = (("charged", charged), ("epsilon", eps)) if charged else (("epsilon", eps),)
        return Entry("110000", i, make_event(i, kind=kind, details=details, **kw))

    entries = [
        stat(1, "stats_release", "0.5"),
        stat(2, "stats_refusal", "0.25", charged="true"),
        stat(3, "stats_refusal", "0", charged="false"),
        stat(4, "stats_release", "0.5", role="requester"),  # the requester's copy: not a charge
        stat(1, "stats_release", "0.5"),  # the same release given twice
    ]
    [s] = budget_series(entries)
    assert (s.holder, s.dataset, s.requester) == (
        "110000",
        "household_register",
        "120000/tj-social-security",
    )
    assert [v for _, v in s.points] == [0.5, 0.75]


def test_entry_kinds_that_are_not_exchange_outcomes_are_not_counted_as_exchanges() -> None:
    import dataclasses

    ev = dataclasses.replace(make_event(5), kind="transfer")
    other = dataclasses.replace(make_event(6), kind="transfer")
    object.__setattr__(other, "kind", "receipt")  # a later entry kind, e.g. acknowledgements
    items = exchanges([Entry("110000", 0, ev), Entry("110000", 1, other)])
    assert [x.kind for x in items] == ["transfer"]
