"""`gateway policy check` messages an author can act on: every error at once, with file:line,
the nearest valid name for a typo, and the rule an approval warning comes from."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.cli import main as cli_main
from tests.policy.policy_testkit import HolderDir, base_agreement, dump
from tests.policy.test_policy_lint import findings, only


def _line_of(text: str, prefix: str) -> int:
    return next(i for i, t in enumerate(text.splitlines(), 1) if t.startswith(prefix))


def test_every_mistake_of_one_file_is_reported_in_one_run_each_with_its_line(
    holder_dir: Callable[..., HolderDir], capsys: pytest.CaptureFixture[str]
) -> None:
    h = holder_dir("110000")
    text = dump(base_agreement(max_records_per_request="ten"))
    text = text.replace("purposes:", "purpses:").replace(
        "valid_until: 2028-12-31", "valid_until: 2028-13-45"
    )
    text = text.replace("transform: mask", "transform: masc", 1)
    assert "2028-13-45" in text and "masc" in text
    path = h.write("bad.yaml", text)
    lines = findings(h.root)
    bad_date = only(lines, "valid_until")
    assert bad_date.startswith(f"{path}:{_line_of(text, 'valid_until')}: error: field valid_until:")
    assert "month value is outside expected range" in bad_date
    assert only(lines, "field purpses").startswith(f"{path}:{_line_of(text, 'purpses')}: error")
    assert only(lines, "max_records_per_request").startswith(
        f"{path}:{_line_of(text, 'max_records')}:"
    )
    assert "did you mean 'mask'?" in only(lines, "transform")
    # The CLI prints the same, all in one run.
    assert cli_main(["policy", "check", str(h.root)]) == 1
    out = capsys.readouterr().out
    assert out.count(f"{path}:") >= 5


def test_misspelt_key_gets_the_nearest_valid_name_and_the_missing_key_points_at_it(
    holder_dir: Callable[..., HolderDir],
) -> None:
    h = holder_dir("110000")
    text = dump(base_agreement()).replace("purposes:", "purpses:")
    path = h.write("bad.yaml", text)
    n = _line_of(text, "purpses")
    lines = findings(h.root)
    assert only(lines, "field purpses") == (
        f"{path}:{n}: error: field purpses: unknown key 'purpses'; did you mean 'purposes'?"
    )
    assert only(lines, "field purposes") == (
        f"{path}:{n}: error: field purposes: Field required; is 'purpses' (line {n}) a misspelling of it?"
    )


def test_misspelt_nested_key_and_field_name_get_suggestions(
    holder_dir: Callable[..., HolderDir],
) -> None:
    h = holder_dir("110000")
    agreement = base_agreement()
    agreement["approval"] = {"id": "京数共审〔2025〕017号", "aprover": "北京市大数据中心"}
    agreement["fields"] = [{"name": "employr", "transform": "pass"}]
    h.write("bad.yaml", dump(agreement))
    lines = findings(h.root)
    assert "unknown key 'aprover'; did you mean 'approver'?" in only(
        lines, "field approval.aprover"
    )
    # (fields are checked against the catalogue once the file's schema is valid)
    agreement["approval"] = {"id": "京数共审〔2025〕017号", "approver": "北京市大数据中心"}
    h.write("bad.yaml", dump(agreement))
    assert "'employr' is not a field of dataset si_contributions; did you mean 'employer'?" in only(
        findings(h.root), "employr"
    )


def test_unknown_dataset_suggests_the_nearest_catalogue_code(
    holder_dir: Callable[..., HolderDir],
) -> None:
    h = holder_dir("110000")
    h.write("bad.yaml", dump(base_agreement(dataset="si_contribution")))
    assert "did you mean 'si_contributions'?" in only(findings(h.root), "si_contribution'")


def test_approval_warning_names_the_rule_and_sits_on_its_line_not_on_the_id(
    holder_dir: Callable[..., HolderDir],
) -> None:
    h = holder_dir("110000")
    text = dump(base_agreement(approval=None))
    path = h.write("bad.yaml", text)
    line = only(findings(h.root), "needs an approval")
    assert line.startswith(f"{path}:{_line_of(text, 'sharing_class')}: warning: field approval: ")
    assert (
        "rule: conditional sharing (有条件共享) needs an approval; this agreement's sharing_class: conditional"
        in line
    )
    assert "field id" not in line
