"""`gateway ledger show`: an officer reads decoded entries, filtered, without base64 or source code."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.ledger.ledger import SqliteLedger
from gateway.ledger.show import EntryFilter, shown, shown_entries
from tests.ledger.ledger_testkit import make_event

NewLedger = Callable[..., SqliteLedger]


@pytest.fixture
def path(new_ledger: NewLedger, tmp_path: Path) -> Path:
    ledger = new_ledger(n=0)
    ledger.append_many(
        make_event(
            i,
            counterparty="130000" if i % 3 == 0 else "120000",
            kind="refusal" if i % 2 else "transfer",
            decision="deny" if i % 2 else "allow",
            legal_basis="《住房公积金管理条例》第二十条",
            approval_id="京数共审〔2025〕017号",
        )
        for i in range(12)
    )
    ledger.close()
    return tmp_path / "ledger.db"


def test_json_lines_decode_every_field_and_filters_combine(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ledger", "show", str(path), "--json", "--counterparty", "130000",
                 "--kind", "refusal"]) == 0  # fmt: skip
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["index"] for x in lines] == [3, 9]
    first = lines[0]
    assert first["counterparty"] == "130000" and first["decision"] == "deny"
    assert first["legal_basis"] == "《住房公积金管理条例》第二十条"
    assert first["details"] == {"fields": "name,dob"}
    assert first["time_utc"].startswith("2023-11-14T22:13:23")
    assert first["time_cst"].endswith("+08:00")


def test_time_range_and_limit(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ledger", "show", str(path), "--json", "--since", "2023-11-14T22:13:25Z",
                 "--until", "2023-11-14T22:13:30Z", "--limit", "3"]) == 0  # fmt: skip
    assert [json.loads(x)["index"] for x in capsys.readouterr().out.splitlines()] == [5, 6, 7]


def test_table_shows_the_approval_and_reason(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ledger", "show", str(path), "--dataset", "household_register"]) == 0
    out = capsys.readouterr().out
    assert "12 entries" in out and "京数共审〔2025〕017号" in out and "bj-tj-007" in out


def test_decoding_function_is_reusable_and_pure(path: Path) -> None:
    from gateway.ledger.storage import SqliteLedgerStore

    store = SqliteLedgerStore(path, readonly=True)
    rows = [(r.index, r.entry) for r in store.iter_entries()]
    store.close()
    assert shown(*rows[4]).event.request_id == "req-000004"
    kept = list(shown_entries(rows, EntryFilter(role="holder", kind="transfer")))
    assert [s.index for s in kept] == [0, 2, 4, 6, 8, 10]


def test_evidence_bundle_is_shown_decoded_after_verification(
    new_ledger: NewLedger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.ledger.ledger_testkit import witness_round, write_trust_bundle

    ledger = new_ledger("ev.db", n=12, every=4)
    witness_round(ledger, "120000", tmp_path / "w.db")
    ledger.close()
    trust = write_trust_bundle(tmp_path / "trust")
    out = tmp_path / "e.json"
    assert main(["ledger", "export", "--ledger", str(tmp_path / "ev.db"), "--bundle", str(trust),
                 "--request-id", "req-000005", "-o", str(out)]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["ledger", "show", str(out), "--bundle", str(trust), "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["request_id"] == "req-000005"
    bad = bytearray(out.read_bytes())
    bad[len(bad) // 2] ^= 1
    out.write_bytes(bytes(bad))
    assert main(["ledger", "show", str(out), "--bundle", str(trust)]) == 1  # refused, not shown


def test_ledger_shown_with_a_trust_bundle_is_verified_first_and_a_forged_one_not_shown(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    from tests.ledger.ledger_testkit import write_trust_bundle

    trust = write_trust_bundle(tmp_path / "trust")
    assert main(["ledger", "show", str(path), "--bundle", str(trust), "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 12
    with sqlite3.connect(path) as c:  # a rewritten entry: the chain no longer holds
        (entry,) = c.execute("SELECT entry FROM ledger_entries WHERE idx = 5").fetchone()
        c.execute(
            "UPDATE ledger_entries SET entry = ? WHERE idx = 5",
            (entry[:-1] + bytes([entry[-1] ^ 1]),),
        )
    assert main(["ledger", "show", str(path), "--bundle", str(trust), "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # refused, not shown
    assert "does not verify, nothing shown" in captured.err and "first bad entry: 5" in captured.err


def test_ledger_shown_without_a_trust_bundle_says_it_was_not_verified(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ledger", "show", str(path), "--json"]) == 0
    assert "shown without verification" in capsys.readouterr().err
