"""`gateway stats` commands read the real budget file an operator points them at."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.stats.budget import Caps, Spend, SqliteBudgetStore

ROOT = Path(__file__).resolve().parents[2]


def test_budget_shows_spent_and_remaining(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "budget.db"
    store = SqliteBudgetStore(db)
    store.reserve(
        Spend("si_contributions", "110000/beijing-planning", 1.0, 0.0, "r1", "d", 0),
        Caps(3.0, 10.0),
    )
    assert (
        main(["stats", "budget", "--db", str(db), "--policies", str(ROOT / "policies/120000")]) == 0
    )
    out = capsys.readouterr().out
    assert "110000/beijing-planning" in out and "2 of 3" in out and "9 of 10" in out
    assert main(["stats", "spends", "--db", str(db)]) == 0
    assert "epsilon=1\t" in capsys.readouterr().out


def test_budget_lists_every_agreement_requester_before_its_first_release(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A new gateway: no release yet. With --policies the operator must still see each
    # requester the statistics agreement names, with its whole budget left (the table
    # used to be empty until a first spend, and to list only requesters that spent).
    db = tmp_path / "budget.db"
    SqliteBudgetStore(db)
    policies = str(ROOT / "policies/120000")
    assert main(["stats", "budget", "--db", str(db), "--policies", policies]) == 0
    out = capsys.readouterr().out
    for requester in ("110000/beijing-planning", "130000/hebei-planning"):
        assert requester in out
    assert "3 of 3" in out and "10 of 10" in out
    SqliteBudgetStore(db).reserve(
        Spend("si_contributions", "110000/beijing-planning", 1.0, 0.0, "r1", "d", 0),
        Caps(3.0, 10.0),
    )
    assert main(["stats", "budget", "--db", str(db), "--policies", policies]) == 0
    lines = capsys.readouterr().out.splitlines()
    (unspent,) = [line for line in lines if "130000/hebei-planning" in line]
    assert "3 of 3" in unspent and "9 of 10" in unspent


def test_budget_on_a_missing_file_fails_without_creating_it(tmp_path: Path) -> None:
    db = tmp_path / "typo.db"
    assert main(["stats", "budget", "--db", str(db)]) == 2
    assert not db.exists()


def test_check_validates_shipped_agreement(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "check", str(ROOT / "policies/130000")]) == 0
    assert "ok" in capsys.readouterr().out
