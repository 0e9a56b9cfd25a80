"""Evaluation and release: table-driven allow/deny for every attribute, release
of transformed fields only, forged decisions, validity and quota boundaries."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.errors import PolicyDenied, PolicyFileError, QuotaExceeded
from gateway.policy import AccessRequest, Decision, FieldRule, PolicyEngine, SqliteQuotaStore
from gateway.policy.loader import load_policy_set
from gateway.policy.model import valid_from_ms, valid_until_ms
from gateway.policy.quota import QuotaKey, utc_day
from tests.policy.policy_testkit import NOW_MS, POLICIES, SECRET, HolderDir, base_agreement

DAY_MS = 86_400_000


class Clock:
    def __init__(self, ms: int = NOW_MS) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def req(**over: object) -> AccessRequest:
    base = AccessRequest(
        requester="130000",
        service_system="hebei-housing-fund",
        holder="110000",
        dataset="si_contributions",
        purpose="housing_fund_transfer",
        fields=(),
        subject_count=1,
        request_id="r-1",
        timestamp_ms=NOW_MS,
    )
    return dataclasses.replace(base, **over)  # type: ignore[arg-type]


def engine_for(root: Path, tmp_path: Path, clock: Clock | None = None) -> PolicyEngine:
    quota = SqliteQuotaStore(tmp_path / f"quota-{root.name}.sqlite")
    return PolicyEngine(load_policy_set(root), quota, SECRET, clock=clock or Clock())


# ---------------------------------------------------------------------------
# Shipped policies: one row per attribute.
# ---------------------------------------------------------------------------

TJ_PLAN = {
    "requester": "120000",
    "service_system": "tianjin-planning",
    "purpose": "commuter_planning",
}
BJ_HF = {
    "requester": "110000",
    "service_system": "beijing-housing-fund",
    "holder": "120000",
    "dataset": "hf_accounts",
}
PROC = {
    "holder": "130000",
    "dataset": "ent_qualifications",
    "purpose": "procurement_qualification_check",
}

# (case, holder folder, request overrides, allowed, error code, reason fragment)
SHIPPED_CASES: list[tuple[str, str, dict[str, object], bool, str, str]] = [
    ("allow-named-hebei-housing", "110000", {}, True, "", "bj-si-to-hebei-housing-fund"),
    ("allow-requested-subset", "110000", {"fields": ("name", "person_id")}, True, "", "allowed"),
    (
        "deny-other-requester",
        "110000",
        {"requester": "120000"},
        False,
        "PERMISSION_DENIED",
        "no agreement allows requester 120000/hebei-housing-fund to read si_contributions "
        "for purpose housing_fund_transfer",
    ),
    (
        "deny-other-service-system",
        "110000",
        {"service_system": "hebei-tax"},
        False,
        "PERMISSION_DENIED",
        "requester 130000/hebei-tax",
    ),
    (
        "deny-other-purpose",
        "110000",
        {"purpose": "marketing"},
        False,
        "PERMISSION_DENIED",
        "for purpose marketing",
    ),
    (
        "deny-tianjin-marketing",
        "110000",
        {**TJ_PLAN, "purpose": "marketing"},
        False,
        "PERMISSION_DENIED",
        "no agreement allows requester 120000/tianjin-planning to read si_contributions "
        "for purpose marketing",
    ),
    (
        "deny-unknown-dataset",
        "110000",
        {"dataset": "tax_records"},
        False,
        "NOT_FOUND",
        "holds no dataset 'tax_records'",
    ),
    ("deny-wrong-holder", "110000", {"holder": "120000"}, False, "NOT_FOUND", "not '120000'"),
    (
        "deny-not-shared-core",
        "110000",
        {"dataset": "population_core"},
        False,
        "PERMISSION_DENIED",
        "not_shared",
    ),
    (
        "deny-dropped-field",
        "110000",
        {"fields": ("person_id", "phone")},
        False,
        "PERMISSION_DENIED",
        "does not release field(s) phone (phone dropped by it)",
    ),
    (
        "deny-unlisted-fields",
        "110000",
        {"fields": ("gender", "employer", "district_code")},
        False,
        "PERMISSION_DENIED",
        "does not release field(s) gender, district_code",
    ),
    (
        "deny-bulk-when-named-only",
        "110000",
        {"subject_count": 0},
        False,
        "PERMISSION_DENIED",
        "named subjects only",
    ),
    ("allow-max-records-edge", "110000", {"subject_count": 10}, True, "", "allowed"),
    (
        "deny-over-max-records",
        "110000",
        {"subject_count": 11},
        False,
        "PERMISSION_DENIED",
        "at most 10 per request",
    ),
    ("deny-negative-count", "110000", {"subject_count": -1}, False, "INVALID_ARGUMENT", ">= 0"),
    (
        "deny-repeated-fields",
        "110000",
        {"fields": ("name", "name")},
        False,
        "INVALID_ARGUMENT",
        "repeat",
    ),
    (
        "deny-malformed-purpose",
        "110000",
        {"purpose": "x\n; allowed by agreement"},
        False,
        "INVALID_ARGUMENT",
        "purpose: expected a code",
    ),
    (
        "deny-overlong-field-name",
        "110000",
        {"fields": ("f" * 200,)},
        False,
        "INVALID_ARGUMENT",
        "field: expected a code",
    ),
    (
        "allow-bulk-planning",
        "110000",
        {**TJ_PLAN, "subject_count": 0},
        True,
        "",
        "bj-si-to-tianjin-planning",
    ),
    ("allow-planning-100", "110000", {**TJ_PLAN, "subject_count": 100}, True, "", "allowed"),
    (
        "deny-planning-101",
        "110000",
        {**TJ_PLAN, "subject_count": 101},
        False,
        "PERMISSION_DENIED",
        "at most 100",
    ),
    (
        "deny-planning-name-field",
        "110000",
        {**TJ_PLAN, "fields": ("name",)},
        False,
        "PERMISSION_DENIED",
        "does not release field(s) name",
    ),
    ("allow-tianjin-hf-important", "120000", BJ_HF, True, "", "津数共审"),
    (
        "deny-tianjin-hf-over-5",
        "120000",
        {**BJ_HF, "subject_count": 6},
        False,
        "PERMISSION_DENIED",
        "at most 5",
    ),
    (
        "deny-tianjin-hf-phone",
        "120000",
        {**BJ_HF, "fields": ("phone",)},
        False,
        "PERMISSION_DENIED",
        "phone",
    ),
    (
        "allow-hebei-proc-beijing",
        "130000",
        {**PROC, "requester": "110000", "service_system": "beijing-procurement"},
        True,
        "",
        "allowed",
    ),
    (
        "allow-hebei-proc-tianjin",
        "130000",
        {**PROC, "requester": "120000", "service_system": "tianjin-procurement"},
        True,
        "",
        "allowed",
    ),
    (
        "deny-hebei-proc-crossed-pair",
        "130000",
        {**PROC, "requester": "110000", "service_system": "tianjin-procurement"},
        False,
        "PERMISSION_DENIED",
        "110000/tianjin-procurement",
    ),
    (
        "deny-hebei-si-not-offered",
        "130000",
        {
            "holder": "130000",
            "requester": "110000",
            "service_system": "beijing-procurement",
            "purpose": "procurement_qualification_check",
        },
        False,
        "PERMISSION_DENIED",
        "no agreement allows",
    ),
]


@pytest.mark.parametrize(
    ("holder", "over", "allowed", "code", "fragment"),
    [c[1:] for c in SHIPPED_CASES],
    ids=[c[0] for c in SHIPPED_CASES],
)
def test_shipped_policy_decisions(
    tmp_path: Path, holder: str, over: dict[str, object], allowed: bool, code: str, fragment: str
) -> None:
    eng = engine_for(POLICIES / holder, tmp_path)
    d = eng.decide(req(**over))
    assert d.allowed is allowed, d.reason
    assert d.error_code == code
    assert fragment in d.reason
    assert d.policy_set_digest == eng.policy_set_digest
    if allowed:
        assert d.agreement_id and len(d.agreement_digest) == 64
        assert d.fields and d.max_records > 0
    else:
        assert d.fields == () and d.max_records == 0


def test_allowed_decision_names_agreement_digest_of_exact_file_bytes(tmp_path: Path) -> None:
    import hashlib

    d = engine_for(POLICIES / "110000", tmp_path).decide(req())
    path = POLICIES / "110000" / "agreements" / "si-contributions-to-hebei-housing-fund.yaml"
    assert d.agreement_id == "bj-si-to-hebei-housing-fund"
    assert d.agreement_digest == hashlib.sha256(path.read_bytes()).hexdigest()


def test_fields_follow_request_order_or_agreement_order(tmp_path: Path) -> None:
    eng = engine_for(POLICIES / "110000", tmp_path)
    d = eng.decide(req(fields=("employer", "person_id")))
    assert d.fields == (FieldRule("employer", "pass"), FieldRule("person_id", "mask"))
    all_fields = [f.name for f in eng.decide(req()).fields]
    assert all_fields == [
        "person_id",
        "name",
        "birth_date",
        "address",
        "employer",
        "insured_since",
        "months_contributed",
        "monthly_base",
        "status",
    ]


# ---------------------------------------------------------------------------
# Custom agreements: validity, approval, class and grade.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("clock_ms", "allowed", "fragment"),
    [
        (valid_from_ms(dt.date(2025, 1, 1)) - 1, False, "not in force until 2025-01-01"),
        (valid_from_ms(dt.date(2025, 1, 1)), True, "allowed"),
        (valid_until_ms(dt.date(2028, 12, 31)), True, "allowed"),
        (valid_until_ms(dt.date(2028, 12, 31)) + 1, False, "expired after 2028-12-31"),
    ],
    ids=["one-ms-before-from", "first-ms", "last-ms", "one-ms-after-until"],
)
def test_validity_boundaries(tmp_path: Path, clock_ms: int, allowed: bool, fragment: str) -> None:
    eng = engine_for(POLICIES / "110000", tmp_path, Clock(clock_ms))
    d = eng.decide(req())
    assert d.allowed is allowed and fragment in d.reason
    if not allowed:
        assert d.agreement_id == "bj-si-to-hebei-housing-fund"


def test_validity_is_china_standard_time() -> None:
    # 2025-01-01 00:00 UTC+8 == 2024-12-31 16:00 UTC
    start = dt.datetime(2024, 12, 31, 16, 0, tzinfo=dt.UTC)
    assert valid_from_ms(dt.date(2025, 1, 1)) == int(start.timestamp()) * 1000


APPROVAL_CASES = [
    (
        "conditional-without-approval",
        "110000",
        base_agreement(approval=None),
        {},
        False,
        "no approval id, which conditional data requires",
    ),
    ("conditional-with-approval", "110000", base_agreement(), {}, True, "APPROVAL-1"),
    (
        "important-without-approval",
        "120000",
        base_agreement(holder="120000", dataset="hf_accounts", grade="important", approval=None),
        {"holder": "120000", "dataset": "hf_accounts"},
        False,
        "no approval id",
    ),
    (
        "agreement-claims-important-on-general",
        "130000",
        base_agreement(
            holder="130000",
            dataset="ent_qualifications",
            sharing_class="unconditional",
            grade="important",
            approval=None,
            fields=[{"name": "credit_code", "transform": "pass"}],
        ),
        {"holder": "130000", "dataset": "ent_qualifications"},
        False,
        "important-grade data requires",
    ),
    (
        "unconditional-general-needs-none",
        "130000",
        base_agreement(
            holder="130000",
            dataset="ent_qualifications",
            sharing_class="unconditional",
            approval=None,
            fields=[{"name": "credit_code", "transform": "pass"}],
        ),
        {"holder": "130000", "dataset": "ent_qualifications"},
        True,
        "allowed",
    ),
    (
        "agreement-says-not-shared",
        "110000",
        base_agreement(sharing_class="not_shared"),
        {},
        False,
        "never served",
    ),
    (
        "agreement-offers-not-shared-core",
        "110000",
        base_agreement(
            dataset="population_core",
            sharing_class="conditional",
            fields=[{"name": "person_id", "transform": "pseudonymise"}],
        ),
        {"dataset": "population_core"},
        False,
        "not_shared",
    ),
]


@pytest.mark.parametrize(
    ("holder", "doc", "over", "allowed", "fragment"),
    [c[1:] for c in APPROVAL_CASES],
    ids=[c[0] for c in APPROVAL_CASES],
)
def test_approval_class_and_grade(
    tmp_path: Path,
    holder_dir: Callable[..., HolderDir],
    holder: str,
    doc: dict[str, object],
    over: dict[str, object],
    allowed: bool,
    fragment: str,
) -> None:
    h = holder_dir(holder)
    h.write("a.yaml", doc)
    d = engine_for(h.root, tmp_path).decide(req(**over))
    assert d.allowed is allowed, d.reason
    assert fragment in d.reason


def test_core_grade_never_leaves_even_if_catalogue_says_conditional(
    tmp_path: Path, holder_dir: Callable[..., HolderDir]
) -> None:
    h = holder_dir("110000")
    cat = (h.root / "catalogue.yaml").read_text(encoding="utf-8")
    (h.root / "catalogue.yaml").write_text(
        cat.replace("grade: general", "grade: core", 1), encoding="utf-8"
    )
    h.write("a.yaml", base_agreement(grade="core"))
    d = engine_for(h.root, tmp_path).decide(req())
    assert not d.allowed and "core data" in d.reason


def test_several_matching_agreements_first_allowing_wins_else_furthest_reason(
    tmp_path: Path, holder_dir: Callable[..., HolderDir]
) -> None:
    h = holder_dir("110000")
    h.write("a.yaml", base_agreement(id="a-expired", valid_until=dt.date(2025, 6, 30)))
    h.write("b.yaml", base_agreement(id="b-current", valid_from=dt.date(2025, 7, 1)))
    d = engine_for(h.root, tmp_path).decide(req())
    assert d.allowed and d.agreement_id == "b-current"
    d2 = engine_for(h.root, tmp_path).decide(req(subject_count=11))
    assert not d2.allowed and d2.agreement_id == "b-current" and "at most 10" in d2.reason


# ---------------------------------------------------------------------------
# Release
# ---------------------------------------------------------------------------

ROW = {
    "person_id": "110101199003078515",
    "name": "张三丰",
    "phone": "13812345678",
    "birth_date": "1990-03-07",
    "gender": "男",
    "district_code": "110105",
    "address": "北京市朝阳区建国路88号院3号楼",
    "residence_jurisdiction": "110000",
    "age_band": "35-44",
    "employer": "北京某某科技有限公司",
    "insured_since": dt.date(2012, 7, 1),
    "months_contributed": 152,
    "monthly_base": 12500.0,
    "status": "正常参保",
}


def test_release_carries_only_transformed_allowed_fields(tmp_path: Path) -> None:
    eng = engine_for(POLICIES / "110000", tmp_path)
    r = req()
    out = eng.release(eng.decide(r), r, [ROW])
    assert out == [
        {
            "person_id": "110101********8515",
            "name": "张**",
            "birth_date": "1990",
            "address": "北京市朝阳区",
            "employer": "北京某某科技有限公司",
            "insured_since": "2012-07-01",
            "months_contributed": "152",
            "monthly_base": "12500.0",
            "status": "正常参保",
        }
    ]


def test_release_pseudonymises_per_requester(tmp_path: Path) -> None:
    eng = engine_for(POLICIES / "110000", tmp_path)
    r = req(**TJ_PLAN, subject_count=0)  # type: ignore[arg-type]
    out = eng.release(eng.decide(r), r, [ROW, {**ROW, "person_id": "110101199003078516"}])
    assert [list(o) for o in out] == [
        ["person_id", "age_band", "district_code", "residence_jurisdiction"]
    ] * 2
    assert out[0]["person_id"].startswith("pn_") and out[0]["person_id"] != out[1]["person_id"]
    assert "110101199003078515" not in str(out)


def test_release_refuses_a_refused_decision(tmp_path: Path) -> None:
    eng = engine_for(POLICIES / "110000", tmp_path)
    r = req(purpose="marketing")
    with pytest.raises(PolicyDenied):
        eng.release(eng.decide(r), r, [ROW])


def test_release_refuses_forged_field_in_decision(tmp_path: Path) -> None:
    """A caller adding phone (or downgrading mask to pass) in a Decision gets nothing."""
    eng = engine_for(POLICIES / "110000", tmp_path)
    r = req()
    d = eng.decide(r)
    for fields in ((*d.fields, FieldRule("phone", "pass")), (FieldRule("person_id", "pass"),)):
        with pytest.raises(PolicyDenied):
            eng.release(dataclasses.replace(d, fields=fields), r, [ROW])


def test_release_refuses_wrong_agreement_digest(tmp_path: Path) -> None:
    eng = engine_for(POLICIES / "110000", tmp_path)
    r = req()
    d = dataclasses.replace(eng.decide(r), agreement_digest="0" * 64)
    with pytest.raises(PolicyDenied, match="changed or was withdrawn"):
        eng.release(d, r, [ROW])


def test_release_refuses_decision_reused_for_another_requester(tmp_path: Path) -> None:
    eng = engine_for(POLICIES / "110000", tmp_path)
    d = eng.decide(req())
    with pytest.raises(PolicyDenied, match="does not cover"):
        eng.release(d, req(requester="120000"), [ROW])


def test_release_refuses_more_rows_than_allowed_and_charges_nothing(tmp_path: Path) -> None:
    eng = engine_for(POLICIES / "110000", tmp_path)
    r = req()
    with pytest.raises(PolicyDenied, match="exceed"):
        eng.release(eng.decide(r), r, [ROW] * 11)
    assert eng.decide(req(subject_count=10)).allowed
    assert (
        eng._quota.used(
            QuotaKey(
                "110000",
                "si_contributions",
                "130000",
                "hebei-housing-fund",
                utc_day(NOW_MS),
            )
        )
        == 0
    )


def test_missing_and_none_values_release_as_empty(tmp_path: Path) -> None:
    eng = engine_for(POLICIES / "110000", tmp_path)
    r = req(fields=("name", "birth_date", "employer"))
    assert eng.release(eng.decide(r), r, [{"name": None}]) == [
        {"name": "", "birth_date": "", "employer": ""}
    ]


# ---------------------------------------------------------------------------
# Quota boundaries
# ---------------------------------------------------------------------------


def test_quota_boundary_per_requester_per_utc_day(
    tmp_path: Path, holder_dir: Callable[..., HolderDir]
) -> None:
    h = holder_dir("110000")
    h.write("a.yaml", base_agreement(quota_per_day=3))
    eng = engine_for(h.root, tmp_path)
    day_end = (NOW_MS // DAY_MS + 1) * DAY_MS - 1  # last ms of the UTC day
    r2 = req(subject_count=2, timestamp_ms=day_end)
    assert eng.charge(eng.decide(r2), r2, 2).units == 2
    assert eng.decide(req(subject_count=1, timestamp_ms=day_end)).allowed  # 2 + 1 == 3
    over = eng.decide(req(subject_count=2, timestamp_ms=day_end))
    assert not over.allowed and over.error_code == "RESOURCE_EXHAUSTED"
    assert "2 of 3" in over.reason
    # A decision made before the quota ran out cannot overspend at the charge.
    r1 = req(subject_count=1, timestamp_ms=day_end)
    d_ok = eng.decide(r1)
    assert d_ok.allowed
    eng.charge(eng.decide(r1), r1, 1)  # used == 3
    with pytest.raises(QuotaExceeded):
        eng.charge(d_ok, r1, 1)
    exhausted = eng.decide(req(subject_count=1, timestamp_ms=day_end))
    assert exhausted.error_code == "RESOURCE_EXHAUSTED"
    # Next UTC day: fresh quota. Other requesters never shared it.
    assert eng.decide(req(subject_count=1, timestamp_ms=day_end + 1)).allowed


def test_a_failed_exchange_refunds_its_charge_and_a_refused_decision_charges_nothing(
    tmp_path: Path, holder_dir: Callable[..., HolderDir]
) -> None:
    h = holder_dir("110000")
    h.write("a.yaml", base_agreement(quota_per_day=3))
    eng = engine_for(h.root, tmp_path)
    r3 = req(subject_count=3)
    charge = eng.charge(eng.decide(r3), r3, 3)
    assert eng.decide(req()).error_code == "RESOURCE_EXHAUSTED"
    eng.refund(charge)  # the exchange failed before anything left
    assert eng.decide(r3).allowed
    refused = req(purpose="marketing")
    with pytest.raises(PolicyDenied):
        eng.charge(eng.decide(refused), refused, 1)
    assert eng.quota_left(eng.decide(r3), r3) == 3


def test_quota_is_per_service_system(tmp_path: Path, holder_dir: Callable[..., HolderDir]) -> None:
    h = holder_dir("110000")
    h.write(
        "a.yaml",
        base_agreement(
            quota_per_day=1,
            requesters=[
                {"jurisdiction": "130000", "service_systems": ["hebei-housing-fund", "hebei-b"]}
            ],
        ),
    )
    eng = engine_for(h.root, tmp_path)
    r = req()
    eng.charge(eng.decide(r), r, 1)
    assert eng.decide(r).error_code == "RESOURCE_EXHAUSTED"
    assert eng.decide(req(service_system="hebei-b")).allowed


def test_refused_decision_type_is_frozen() -> None:
    d = Decision(False, "x", "PERMISSION_DENIED", "", "", "", (), 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.allowed = True  # type: ignore[misc]


@pytest.mark.parametrize("bounds", ["[0, .inf]", "[-.inf, 40000]", "[.nan, 40000]"])
def test_catalogue_bounds_that_are_not_finite_are_refused_at_load_not_at_query_time(
    holder_dir: Callable[..., HolderDir], bounds: str
) -> None:
    from gateway.catalogue import load_catalogue

    h = holder_dir("110000")
    cat = (h.root / "catalogue.yaml").read_text(encoding="utf-8")
    assert "bounds: [0, 40000]" in cat
    (h.root / "catalogue.yaml").write_text(
        cat.replace("bounds: [0, 40000]", f"bounds: {bounds}", 1), encoding="utf-8"
    )
    with pytest.raises(PolicyFileError, match=r"catalogue\.yaml:\d+: .*bounds.*finite"):
        load_catalogue(h.root)
