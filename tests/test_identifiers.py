"""gateway.identifiers: every valid value round-trips; garbage is refused with a bounded message."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from gateway import identifiers
from gateway.errors import InvalidArgument

Parser = Callable[[object, str], str]

RULES: list[tuple[str, Parser, Callable[[object], bool], str, object]] = [
    (
        "jurisdiction",
        identifiers.jurisdiction,
        identifiers.is_jurisdiction,
        identifiers.JURISDICTION_PATTERN,
        identifiers.JurisdictionCode,
    ),
    (
        "service_system",
        identifiers.service_system,
        identifiers.is_service_system,
        identifiers.SERVICE_SYSTEM_PATTERN,
        identifiers.ServiceSystemId,
    ),
    ("code", identifiers.code, identifiers.is_code, identifiers.CODE_PATTERN, identifiers.Code),
    (
        "purpose",
        identifiers.purpose,
        identifiers.is_purpose,
        identifiers.PURPOSE_PATTERN,
        identifiers.Purpose,
    ),
    (
        "request_id",
        identifiers.request_id,
        identifiers.is_request_id,
        identifiers.REQUEST_ID_PATTERN,
        identifiers.RequestId,
    ),
]
IDS = [r[0] for r in RULES]


@pytest.mark.parametrize(("kind", "parse", "is_valid", "pattern", "model"), RULES, ids=IDS)
@given(data=st.data())
def test_every_valid_identifier_round_trips(
    kind: str,
    parse: Parser,
    is_valid: Callable[[object], bool],
    pattern: str,
    model: object,
    data: st.DataObject,
) -> None:
    value = data.draw(st.from_regex(pattern, fullmatch=True).filter(lambda v: "\n" not in v))
    assert parse(value, kind) == value
    assert is_valid(value)
    assert TypeAdapter(model).validate_python(value) == value


@pytest.mark.parametrize(("kind", "parse", "is_valid", "pattern", "model"), RULES, ids=IDS)
@given(value=st.one_of(st.text(max_size=5000), st.binary(max_size=50), st.integers(), st.none()))
def test_garbage_identifier_refused_with_bounded_message(
    kind: str,
    parse: Parser,
    is_valid: Callable[[object], bool],
    pattern: str,
    model: object,
    value: object,
) -> None:
    if is_valid(value):
        return
    with pytest.raises(InvalidArgument) as exc:
        parse(value, "some_field")
    message = str(exc.value)
    assert message.startswith("some_field: expected ")
    assert len(message) <= identifiers.MAX_MESSAGE_CHARS
    # The pydantic type used by configuration and policy files agrees with the parser.
    if isinstance(value, str):
        with pytest.raises(ValidationError):
            TypeAdapter(model).validate_python(value)


@pytest.mark.parametrize(
    ("parse", "value"),
    [
        (identifiers.jurisdiction, "110000\n"),  # "$" alone would accept a final newline
        (identifiers.jurisdiction, "١١٠٠٠٠"),  # Arabic-Indic digits are not ASCII digits
        (identifiers.jurisdiction, "010000"),
        (identifiers.service_system, "x"),
        (identifiers.service_system, "Hebei-housing"),
        (identifiers.service_system, "hebei.housing"),
        (identifiers.code, "si-contributions"),
        (identifiers.code, "a" * 65),
        (identifiers.purpose, "x\n; allowed by agreement"),
        (identifiers.purpose, "planning.v2"),
        (identifiers.request_id, "00000000-0000-1000-8000-000000000000"),  # UUIDv1
        (identifiers.request_id, "3F2504E0-4F89-41D3-9A0C-0305E82C3301"),  # upper case
    ],
)
def test_near_miss_identifier_refused(parse: Parser, value: str) -> None:
    with pytest.raises(InvalidArgument, match="expected"):
        parse(value, "field")


def test_overlong_garbage_is_quoted_truncated_not_echoed_whole() -> None:
    secret_like = "x" * 10_000 + "TAIL"
    for parse in (identifiers.purpose, identifiers.service_system, identifiers.request_id):
        with pytest.raises(InvalidArgument) as exc:
            parse(secret_like, "w" * 500)
        assert "TAIL" not in str(exc.value)
        assert len(str(exc.value)) <= identifiers.MAX_MESSAGE_CHARS


def test_purpose_rule_is_the_same_for_records_statistics_and_agreements() -> None:
    """One rule: what a records query refuses, a statistics query and an agreement refuse."""
    from gateway.exchange.records import RecordsQuery
    from gateway.limits import DEFAULT_LIMITS
    from gateway.stats.agreements import DatasetTerms
    from gateway.stats.model import Statistic, StatsQuery

    agreement_purposes = TypeAdapter(DatasetTerms.model_fields["purposes"].annotation)
    assert agreement_purposes.validate_python(["planning"]) == ("planning",)
    for bad in ("planning.v2", "Planning", "a-b", "x" * 65):
        with pytest.raises(InvalidArgument, match="purpose: expected"):
            RecordsQuery("110000", "si_contributions", bad, (), ()).validate(DEFAULT_LIMITS)
        with pytest.raises(InvalidArgument, match="purpose: expected"):
            StatsQuery("commuters", bad, Statistic.COUNT, 1.0, 0.95)
        with pytest.raises(ValidationError):
            agreement_purposes.validate_python([bad])


def test_client_reference_may_be_empty_but_not_spaced() -> None:
    assert identifiers.client_reference("") == ""
    assert identifiers.client_reference("case:2026/1"[:6]) == "case:2"
    with pytest.raises(InvalidArgument, match="client_reference"):
        identifiers.client_reference("two words")


def test_an_approval_id_a_file_may_declare_is_one_a_peer_answer_may_carry() -> None:
    """One rule: what the sharing- and statistics-agreement files accept as an
    approval id is what a requester records from a holder's answer, so a file
    cannot declare an id that every requester would record as ``(invalid)``."""
    from gateway.policy.model import Approval
    from gateway.stats.agreements import StatisticsApproval

    good, long, control = "京数共审〔2025〕017号", "号" * 129, "A\u0085B"
    for model in (Approval, StatisticsApproval):
        assert model(id=good, approver="北京市大数据中心").id == good
        for bad in (long, control, ""):
            with pytest.raises(ValidationError):
                model(id=bad, approver="北京市大数据中心")
    assert identifiers.is_answered_approval_id(good) and identifiers.is_answered_approval_id("")
    assert not identifiers.is_answered_approval_id(long)
    assert not identifiers.is_answered_approval_id(control)


def test_agreement_ids_of_either_file_are_accepted_in_a_peer_answer() -> None:
    sharing = TypeAdapter(identifiers.SharingAgreementId)
    stats = TypeAdapter(identifiers.StatsAgreementId)
    assert sharing.validate_python("bj-si-to-hebei-housing-fund")
    assert stats.validate_python("stats-120000-2026:V2")
    with pytest.raises(ValidationError):
        sharing.validate_python("Stats:V2")  # the sharing form is lowercase, no ':'
    for value in ("bj-si-to-hebei-housing-fund", "stats-120000-2026:V2", ""):
        assert identifiers.is_answered_agreement_id(value)
    assert not identifiers.is_answered_agreement_id("x y")
    assert not identifiers.is_answered_agreement_id("a" * 129)


def test_a_subject_id_against_a_number_column_is_the_number_it_matches() -> None:
    """``0012345`` finds person 12345 in a number column: its normal form there is
    ``12345``, the form subject access looks up; an id no number equals is refused
    without being quoted."""
    assert identifiers.subject_id_in_column("0012345", numeric=True) == "12345"
    assert identifiers.subject_id_in_column("0", numeric=True) == "0"
    assert identifiers.subject_id_in_column("0012345", numeric=False) == "0012345"
    assert identifiers.subject_id_in_column("11010119900307851x", numeric=False).endswith("X")
    for bad in ("12345A", "99999999999999999999", "１２３"):
        with pytest.raises(InvalidArgument, match="by number") as err:
            identifiers.subject_id_in_column(bad, numeric=True)
        assert bad not in str(err.value)


def test_a_subject_value_as_a_source_returns_it_has_the_normal_form_subject_access_uses() -> None:
    assert identifiers.subject_id_of_value(12345) == "12345"
    assert identifiers.subject_id_of_value(12345.0) == "12345"
    assert identifiers.subject_id_of_value(" 11010119900307851x ") == "11010119900307851X"
    for none in (None, -5, 1.5, True, "12-34", b"12345"):
        assert identifiers.subject_id_of_value(none) is None
