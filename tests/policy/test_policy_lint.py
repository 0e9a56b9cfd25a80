"""Loading and `gateway policy check`: every kind of mistake is caught, with
file, line and field; a bad file never loads partly; shipped policies pass."""

from __future__ import annotations

import datetime as dt
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.cli import main as cli_main
from gateway.errors import PolicyFileError
from gateway.policy.lint import check_path
from gateway.policy.loader import load_policy_set, policy_set_digest
from tests.policy.policy_testkit import NOW_MS, POLICIES, HolderDir, base_agreement, dump


def findings(root: Path) -> list[str]:
    rep = check_path(root, now_ms=NOW_MS)
    return [str(f) for h in rep.holders for f in h.findings]


def only(lines: list[str], fragment: str) -> str:
    hits = [line for line in lines if fragment in line]
    assert hits, f"{fragment!r} not in {lines}"
    return hits[0]


def test_shipped_policies_pass_check() -> None:
    rep = check_path(POLICIES, now_ms=NOW_MS)
    assert rep.ok, [str(f) for h in rep.holders for f in h.findings]
    assert sorted(h.root.name for h in rep.holders) == ["110000", "120000", "130000"]
    assert all(h.digest for h in rep.holders)


def test_cli_check_passes_on_shipped_policies(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["policy", "check", str(POLICIES), "--at", "2026-06-15"]) == 0
    assert "policy check passed" in capsys.readouterr().out


def test_policy_set_digest_is_over_sorted_paths_and_file_digests() -> None:
    import hashlib
    import json

    ps = load_policy_set(POLICIES / "110000")
    pairs = sorted(
        [p.relative_to(POLICIES / "110000").as_posix(), hashlib.sha256(p.read_bytes()).hexdigest()]
        for p in [
            POLICIES / "110000" / "catalogue.yaml",
            *sorted((POLICIES / "110000" / "agreements").glob("*.yaml")),
        ]
    )
    body = json.dumps(pairs, ensure_ascii=False, separators=(",", ":")).encode()
    assert ps.digest == hashlib.sha256(b"gateway-policy-set/v1\n" + body).hexdigest()
    assert ps.digest == policy_set_digest(ps.files)


# (case, file text builder, fragment expected, level, expected line or None)
def _unknown_key() -> str:
    return dump(base_agreement()) + "colour: blue\n"


def _wrong_type() -> str:
    return dump(base_agreement(max_records_per_request="ten"))


MISTAKES: list[tuple[str, Callable[[], str], str, str]] = [
    ("unknown-key", _unknown_key, "field colour: unknown key", "error"),
    (
        "field-not-in-schema",
        lambda: dump(base_agreement(fields=[{"name": "salary", "transform": "pass"}])),
        "field fields.0.name: 'salary' is not a field of dataset si_contributions",
        "error",
    ),
    (
        "unknown-dataset",
        lambda: dump(base_agreement(dataset="tax_records")),
        "dataset 'tax_records' is not in the catalogue",
        "error",
    ),
    ("wrong-type", _wrong_type, "field max_records_per_request:", "error"),
    (
        "unknown-transform",
        lambda: dump(base_agreement(fields=[{"name": "name", "transform": "encrypt"}])),
        "field fields.0.transform:",
        "error",
    ),
    (
        "transform-unfit-for-column",
        lambda: dump(
            base_agreement(fields=[{"name": "employer", "transform": "generalise", "to": "year"}])
        ),
        "generalise to year needs a date column",
        "error",
    ),
    (
        "mask-params-on-pass",
        lambda: dump(
            base_agreement(fields=[{"name": "name", "transform": "pass", "keep_first": 1}])
        ),
        "keep_first/keep_last apply to transform mask",
        "error",
    ),
    (
        "dates-reversed",
        lambda: dump(
            base_agreement(valid_from=dt.date(2027, 1, 1), valid_until=dt.date(2026, 1, 1))
        ),
        "valid_from 2027-01-01 is after valid_until",
        "error",
    ),
    (
        "holder-mismatch",
        lambda: dump(base_agreement(holder="120000")),
        "agreement names holder 120000",
        "error",
    ),
    ("yaml-syntax", lambda: "kind: sharing-agreement\nid: [unclosed\n", "YAML error", "error"),
    (
        "duplicate-key",
        lambda: dump(base_agreement()) + "quota_per_day: 5\n",
        "duplicate key 'quota_per_day'",
        "error",
    ),
    (
        "wrong-kind",
        lambda: dump(base_agreement(kind="sharing-agrement")),
        "expected 'sharing-agreement'",
        "error",
    ),
    (
        "unquoted-jurisdiction",
        lambda: dump(base_agreement(holder=110000)),
        "field holder:",
        "error",
    ),
    (
        "expired",
        lambda: dump(base_agreement(valid_until=dt.date(2025, 12, 31))),
        "expired after 2025-12-31",
        "warning",
    ),
    (
        "core-offered",
        lambda: dump(
            base_agreement(
                dataset="population_core",
                fields=[{"name": "person_id", "transform": "pseudonymise"}],
            )
        ),
        "core data (核心数据); core data never leaves",
        "warning",
    ),
    (
        "not-shared-offered",
        lambda: dump(
            base_agreement(
                dataset="population_core",
                fields=[{"name": "person_id", "transform": "pseudonymise"}],
            )
        ),
        "classed not_shared",
        "warning",
    ),
    (
        "conditional-without-approval",
        lambda: dump(base_agreement(approval=None)),
        "rule: conditional sharing (有条件共享) needs an approval",
        "warning",
    ),
    (
        "class-upgraded",
        lambda: dump(base_agreement(sharing_class="unconditional")),
        "agreement states unconditional, the catalogue classes si_contributions conditional",
        "warning",
    ),
    (
        "grade-mismatch",
        lambda: dump(base_agreement(grade="important")),
        "agreement states important",
        "warning",
    ),
]


@pytest.mark.parametrize(
    ("make", "fragment", "level"), [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES]
)
def test_check_catches_each_mistake(
    holder_dir: Callable[..., HolderDir], make: Callable[[], str], fragment: str, level: str
) -> None:
    h = holder_dir("110000")
    path = h.write("bad.yaml", make())
    line = only(findings(h.root), fragment)
    assert line.startswith(str(path)), line
    assert f": {level}: " in line
    rep = check_path(h.root, now_ms=NOW_MS)
    assert not rep.ok
    if level == "error":  # never loads partly: the whole set is refused
        with pytest.raises(PolicyFileError, match="not loaded"):
            load_policy_set(h.root)
    else:  # loads; evaluation refuses at run time
        load_policy_set(h.root)


def test_errors_name_file_line_and_field(holder_dir: Callable[..., HolderDir]) -> None:
    h = holder_dir("110000")
    text = _unknown_key()
    path = h.write("bad.yaml", text)
    n = text.count("\n")  # the unknown key is on the last line
    assert (
        only(findings(h.root), "unknown key")
        == f"{path}:{n}: error: field colour: unknown key 'colour'"
    )
    wrong = _wrong_type()
    path2 = h.write("bad.yaml", wrong)
    line = next(i for i, t in enumerate(wrong.splitlines(), 1) if t.startswith("max_records"))
    assert only(findings(h.root), "max_records_per_request").startswith(f"{path2}:{line}: error")
    with pytest.raises(PolicyFileError, match=rf"bad\.yaml:{line}: error: field max_records"):
        load_policy_set(h.root)


def test_every_problem_is_listed_not_only_the_first(holder_dir: Callable[..., HolderDir]) -> None:
    h = holder_dir("110000")
    h.write(
        "a.yaml",
        dump(
            base_agreement(
                id="a",
                fields=[
                    {"name": "salary", "transform": "pass"},
                    {"name": "bonus", "transform": "pass"},
                ],
            )
        ),
    )
    h.write("b.yaml", _unknown_key().replace("test-agreement", "b"))
    lines = findings(h.root)
    only(lines, "'salary'")
    only(lines, "'bonus'")
    only(lines, "unknown key")


def test_overlapping_and_contradictory_agreements(holder_dir: Callable[..., HolderDir]) -> None:
    h = holder_dir("110000")
    h.write("a.yaml", base_agreement(id="a"))
    h.write("b.yaml", base_agreement(id="b"))  # same terms
    h.write(
        "c.yaml", base_agreement(id="c", fields=[{"name": "person_id", "transform": "pass"}])
    )  # different terms
    lines = findings(h.root)
    only(lines, "overlapping: agreements a and b both cover 130000/hebei-housing-fund")
    only(lines, "contradictory: agreements a and c")
    assert "fields" in only(lines, "contradictory: agreements a and c")


def test_consecutive_agreements_do_not_overlap(holder_dir: Callable[..., HolderDir]) -> None:
    h = holder_dir("110000")
    h.write("a.yaml", base_agreement(id="a", valid_until=dt.date(2026, 12, 31)))
    h.write("b.yaml", base_agreement(id="b", valid_from=dt.date(2027, 1, 1)))
    assert not any("overlapping" in x or "contradictory" in x for x in findings(h.root))


def test_duplicate_agreement_ids_refused(holder_dir: Callable[..., HolderDir]) -> None:
    h = holder_dir("110000")
    h.write("a.yaml", base_agreement())
    h.write("b.yaml", base_agreement())
    only(findings(h.root), "agreement id 'test-agreement' is also used by")
    with pytest.raises(PolicyFileError):
        load_policy_set(h.root)


def test_not_yet_valid_and_clear_personal_data_are_notes_only(
    holder_dir: Callable[..., HolderDir],
) -> None:
    h = holder_dir("110000")
    h.write(
        "a.yaml",
        base_agreement(
            valid_from=dt.date(2027, 1, 1), fields=[{"name": "phone", "transform": "pass"}]
        ),
    )
    rep = check_path(h.root, now_ms=NOW_MS)
    assert rep.ok
    lines = findings(h.root)
    only(lines, "note: field valid_from: agreement test-agreement is not in force until")
    only(lines, "personal data (phone) phone passed in clear")


def test_oversized_and_non_utf8_files_refused(holder_dir: Callable[..., HolderDir]) -> None:
    h = holder_dir("110000")
    (h.root / "agreements" / "big.yaml").write_bytes(b"#" * (1024 * 1024 + 1))
    (h.root / "agreements" / "latin.yaml").write_bytes(b"kind: \xff\n")
    lines = findings(h.root)
    only(lines, "limit 1048576")
    only(lines, "not UTF-8")


def test_statistics_files_skipped_by_loader_and_delegated_by_check(
    holder_dir: Callable[..., HolderDir], monkeypatch: pytest.MonkeyPatch
) -> None:
    h = holder_dir("110000")
    h.write("a.yaml", base_agreement())
    stats = h.root / "statistics.yaml"
    stats.write_text("kind: statistics-agreement\nid: s\n", encoding="utf-8")
    ps = load_policy_set(h.root)
    assert [f for f, _ in ps.files] == ["agreements/a.yaml", "catalogue.yaml"]
    # Module absent: said so, not an error.
    monkeypatch.setitem(sys.modules, "gateway.stats.agreements", None)
    rep = check_path(h.root, now_ms=NOW_MS)
    assert rep.ok and any("statistics files not checked" in n for n in rep.holders[0].notes)
    # Module present: its problems fail the check.
    seen: list[Path] = []
    fake = types.ModuleType("gateway.stats.agreements")

    def validate_file(path: Path, catalogue: object) -> list[str]:
        seen.append(path)
        return ["epsilon must be positive"]

    fake.validate_file = validate_file  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gateway.stats.agreements", fake)
    rep = check_path(h.root, now_ms=NOW_MS)
    assert seen == [stats] and not rep.ok
    only(findings(h.root), "epsilon must be positive")


def test_cli_check_fails_and_prints_reason(
    holder_dir: Callable[..., HolderDir], capsys: pytest.CaptureFixture[str]
) -> None:
    h = holder_dir("110000")
    h.write("a.yaml", base_agreement(valid_until=dt.date(2025, 12, 31)))
    assert cli_main(["policy", "check", str(h.root), "--at", "2026-06-15"]) == 1
    out = capsys.readouterr().out
    assert "expired after 2025-12-31" in out and "policy check FAILED" in out


def test_cli_check_on_folder_without_catalogue(tmp_path: Path) -> None:
    assert cli_main(["policy", "check", str(tmp_path)]) == 1


def test_cli_decide_and_digest(capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "policy",
        "decide",
        str(POLICIES / "110000"),
        "--requester",
        "120000",
        "--service-system",
        "tianjin-planning",
        "--dataset",
        "si_contributions",
        "--purpose",
        "marketing",
        "--at",
        "2026-06-15",
    ]
    assert cli_main(args) == 1
    assert (
        "no agreement allows requester 120000/tianjin-planning to read si_contributions "
        "for purpose marketing"
    ) in capsys.readouterr().out
    assert cli_main(["policy", "digest", str(POLICIES / "110000")]) == 0
    assert capsys.readouterr().out.strip() == load_policy_set(POLICIES / "110000").digest


def test_cli_digest_of_bad_folder_exits_2(
    holder_dir: Callable[..., HolderDir], capsys: pytest.CaptureFixture[str]
) -> None:
    h = holder_dir("110000")
    h.write("a.yaml", "kind: sharing-agreement\n")
    assert cli_main(["policy", "digest", str(h.root)]) == 2
    assert "not loaded" in capsys.readouterr().err


def _id_mask(keep_first: int, keep_last: int) -> dict[str, object]:
    return {
        "name": "person_id",
        "transform": "mask",
        "keep_first": keep_first,
        "keep_last": keep_last,
    }


def _check_digit(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character of an 18-character resident ID number."""
    weights = [2 ** (17 - i) % 11 for i in range(17)]
    return "10X98765432"[sum(int(c) * w for c, w in zip(first17, weights, strict=True)) % 11]


@pytest.mark.parametrize(
    ("keep_first", "keep_last", "hidden", "check_visible"),
    [(6, 11, 1, True), (6, 10, 2, True), (16, 0, 2, False), (17, 0, 1, False), (0, 16, 2, True)],
)
def test_id_number_mask_reversible_through_its_check_digit_is_a_warning(
    holder_dir: Callable[..., HolderDir],
    keep_first: int,
    keep_last: int,
    hidden: int,
    check_visible: bool,
) -> None:
    # The attack: with the check digit visible, one hidden digit has one solution.
    pid = "11010519491231002"
    pid += _check_digit(pid)
    from gateway.policy.transforms import mask

    shown = mask(pid, keep_first, keep_last)
    assert shown.count("*") == hidden
    if hidden == 1 and check_visible:
        i = shown.index("*")
        guesses = [
            d
            for d in "0123456789"
            if _check_digit((shown[:i] + d + shown[i + 1 :])[:17]) == shown[17]
        ]
        assert guesses == [pid[i]]
    h = holder_dir("110000")
    h.write(
        "weak.yaml",
        base_agreement(
            id="weak-mask",
            fields=[_id_mask(keep_first, keep_last)],
        ),
    )
    line = only(findings(h.root), "agreement weak-mask: the mask of ID-number field person_id")
    assert ": warning: field fields.0: " in line
    assert f"hides only {hidden} of" in line and "MOD 11-2" in line
    assert ("check digit stays visible" in line) is check_visible
    assert not check_path(h.root, now_ms=NOW_MS).ok
    load_policy_set(h.root)  # a warning: the set still loads


@pytest.mark.parametrize(("keep_first", "keep_last"), [(6, 4), (6, 9), (0, 0), (18, 0), (10, 10)])
def test_id_number_mask_hiding_three_or_more_characters_is_not_flagged(
    holder_dir: Callable[..., HolderDir], keep_first: int, keep_last: int
) -> None:
    h = holder_dir("110000")
    h.write(
        "ok.yaml",
        base_agreement(
            fields=[_id_mask(keep_first, keep_last)],
        ),
    )
    assert not any("ID-number field" in x for x in findings(h.root))
    assert check_path(h.root, now_ms=NOW_MS).ok
