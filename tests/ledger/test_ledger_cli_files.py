"""A file the officer names that is missing, a folder or unwritable: one line naming
it and exit 2, never a traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.ledger.ledger import SqliteLedger
from tests.ledger.ledger_testkit import write_trust_bundle

NewLedger = Callable[..., SqliteLedger]


@pytest.fixture
def files(new_ledger: NewLedger, tmp_path: Path) -> tuple[Path, Path]:
    new_ledger(n=4, every=4).close()
    return tmp_path / "ledger.db", write_trust_bundle(tmp_path / "trust")


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str], names: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("gateway: error: ") and names in err
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_verify_of_a_folder_says_so(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, trust = files
    _refused(capsys, ["ledger", "verify", str(tmp_path), "--bundle", str(trust)],
             f"{tmp_path}: Is a directory")  # fmt: skip


def test_verify_with_a_missing_checkpoint_note_names_it(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger, trust = files
    note = tmp_path / "seen-by-120000.note"
    _refused(capsys, ["ledger", "verify", str(ledger), "--bundle", str(trust),
                      "--checkpoint", str(note)], f"{note}: No such file or directory")  # fmt: skip


def test_report_into_a_missing_folder_names_it(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger, trust = files
    out = tmp_path / "no-such-folder" / "r.html"
    _refused(capsys, ["audit", "report", str(ledger), "--bundle", str(trust), "-o", str(out)],
             f"{out}: No such file or directory")  # fmt: skip


def test_subject_audit_with_a_missing_id_file_names_it(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger, trust = files
    id_file = tmp_path / "subject-id.txt"
    _refused(capsys, ["audit", "subject", "--ledger", str(ledger), "--index-store",
                      str(tmp_path / "i.db"), "--keys", str(tmp_path), "--bundle", str(trust),
                      "--id-file", str(id_file)], f"{id_file}: No such file or directory")  # fmt: skip
