"""The officer's commands never write their output over what they read or over a store.

`audit report -o`, `ledger export -o` and `ledger witnessed --note-out` refuse a path
that is one of the command's inputs or a SQLite database (a ledger or witness store is
evidence); `--note-out` writes one log's note, so it needs `--origin`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.cli.output import is_sqlite
from gateway.ledger.ledger import SqliteLedger
from tests.ledger.ledger_testkit import ORIGIN, witness_round, write_trust_bundle

NewLedger = Callable[..., SqliteLedger]


@pytest.fixture
def ledger_file(new_ledger: NewLedger, tmp_path: Path) -> Path:
    ledger = new_ledger(n=8, every=4)
    witness_round(ledger, "120000", tmp_path / "w120.db")
    ledger.close()
    return tmp_path / "ledger.db"


def _intact(path: Path, trust: Path) -> bool:
    return is_sqlite(path) and main(["ledger", "verify", str(path), "--bundle", str(trust)]) == 0


def test_report_written_over_the_ledger_it_reads_is_refused_and_the_ledger_kept(
    ledger_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trust = write_trust_bundle(tmp_path / "trust")
    rc = main(["audit", "report", str(ledger_file), "--bundle", str(trust),
               "-o", str(ledger_file)])  # fmt: skip
    assert rc == 2
    assert "is also an input of this command: it was not overwritten" in capsys.readouterr().err
    assert _intact(ledger_file, trust)


def test_report_written_over_another_store_is_refused(
    ledger_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trust = write_trust_bundle(tmp_path / "trust")
    witness_db = tmp_path / "w120.db"
    rc = main(["audit", "report", str(ledger_file), "--bundle", str(trust),
               "-o", str(witness_db)])  # fmt: skip
    assert rc == 2
    assert "is a SQLite database" in capsys.readouterr().err
    assert is_sqlite(witness_db)


def test_evidence_exported_over_its_own_ledger_is_refused_and_the_ledger_kept(
    ledger_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trust = write_trust_bundle(tmp_path / "trust")
    rc = main(["ledger", "export", "--ledger", str(ledger_file), "--bundle", str(trust),
               "--request-id", "req-000003", "-o", str(ledger_file)])  # fmt: skip
    assert rc == 2
    assert "it was not overwritten" in capsys.readouterr().err
    assert _intact(ledger_file, trust)


def test_witnessed_note_out_over_the_witness_store_is_refused(
    ledger_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "w120.db"
    rc = main(["ledger", "witnessed", str(db), "--origin", ORIGIN, "--note-out", str(db)])
    assert rc == 2
    assert "it was not overwritten" in capsys.readouterr().err
    assert is_sqlite(db)
    note = tmp_path / "seen.note"
    assert main(["ledger", "witnessed", str(db), "--origin", ORIGIN, "--note-out", str(note)]) == 0
    assert note.read_text().startswith(ORIGIN)


def test_witnessed_note_out_without_origin_is_refused(
    ledger_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every log the witness cosigned would be written in turn to the one file, the last
    # one left there, while each was reported written.
    note = tmp_path / "seen.note"
    assert main(["ledger", "witnessed", str(tmp_path / "w120.db"), "--note-out", str(note)]) == 2
    assert "give --origin" in capsys.readouterr().err
    assert not note.exists()
