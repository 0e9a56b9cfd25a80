"""`gateway audit report`: verification status with witnesses, refusal of forged ledgers, escaping."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.identity import load_keys
from gateway.ledger.ledger import SqliteLedger, default_origin
from tests.conftest import RunningFederation
from tests.ledger.ledger_testkit import make_event
from tests.report.conftest import ledgers


def test_report_shows_each_ledger_verified_and_cosigned_by_both_witnesses(
    audited: RunningFederation, tmp_path: Path
) -> None:
    out = tmp_path / "r.html"
    assert (
        main(
            [
                "audit",
                "report",
                *map(str, ledgers(audited)),
                "--bundle",
                str(audited.fed.bundle),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    html = out.read_text()
    assert html.count('<span class="ok">verified</span>') == 3
    assert html.count('<span class="ok">2 of 2</span>') == 3
    assert "all " in html and "paired transfers match" in html
    assert "si_contributions" in html and "120000/tianjin-planning" in html
    assert (
        "http://" not in html.replace("http-equiv", "") and "https://" not in html
    )  # self-contained
    # No personal data: the commuter's id is nowhere in the report.
    assert audited.commuter() not in html


def test_report_of_a_tampered_ledger_says_failed_names_the_entry_and_exits_1(
    audited: RunningFederation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = ledgers(audited)[0]
    copy = tmp_path / "ledger.sqlite"
    with sqlite3.connect(src) as a, sqlite3.connect(copy) as b:
        a.backup(b)
    with sqlite3.connect(copy) as c:
        (entry,) = c.execute("SELECT entry FROM ledger_entries WHERE idx = 1").fetchone()
        c.execute(
            "UPDATE ledger_entries SET entry = ? WHERE idx = 1",
            (entry[:-1] + bytes([entry[-1] ^ 1]),),
        )
    out = tmp_path / "r.html"
    assert (
        main(["audit", "report", str(copy), "--bundle", str(audited.fed.bundle), "-o", str(out)])
        == 1
    )
    assert "ledger(s) 110000 do not verify" in capsys.readouterr().err
    html = out.read_text()
    assert '<span class="bad">FAILED</span>: entry-hash-mismatch: entry 1:' in html


def test_report_refuses_a_ledger_whose_origin_is_not_in_the_trust_bundle(
    audited: RunningFederation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.crypto import SigningKey

    stranger = SqliteLedger(tmp_path / "l.sqlite", SigningKey.generate(), default_origin("310000"))
    stranger.append(make_event(0, local="310000"))
    stranger.close()
    assert (
        main(
            [
                "audit",
                "report",
                str(tmp_path / "l.sqlite"),
                "--bundle",
                str(audited.fed.bundle),
                "-o",
                str(tmp_path / "r.html"),
            ]
        )
        == 1
    )
    assert "not a member of the trust bundle" in capsys.readouterr().err


def test_report_escapes_markup_a_peer_put_in_a_ledgered_reason(
    audited: RunningFederation, tmp_path: Path
) -> None:
    keys = load_keys(audited.site("110000").root / "keys")
    path = tmp_path / "l.sqlite"
    ledger = SqliteLedger(path, keys.ledger, default_origin("110000"))
    evil = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    # Unsigned (as a refusal before sending is): the testkit's signatures are by keys
    # this federation's bundle does not list, and the report checks them.
    ledger.append(
        make_event(
            0, kind="refusal", decision="deny", reason=evil,
            requester_signature="", holder_signature="",
        )
    )  # fmt: skip
    ledger.checkpoint_now()
    ledger.close()
    out = tmp_path / "r.html"
    assert (
        main(["audit", "report", str(path), "--bundle", str(audited.fed.bundle), "-o", str(out)])
        == 0
    )
    html = out.read_text()
    assert evil not in html and "<img src=x" not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&lt;script&gt;" in html
    shutil.rmtree(tmp_path, ignore_errors=True)


def _copy_db(src: Path, dst: Path) -> Path:
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    return dst


def test_report_catches_a_truncated_ledger_against_the_checkpoint_a_witness_holds(
    audited: RunningFederation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bj = ledgers(audited)[0]
    old = _copy_db(bj, tmp_path / "old-ledger.sqlite")  # what someone hands over later
    with audited.client("130000", "hebei-housing-fund") as c:
        c.get_records(
            holder_jurisdiction="110000", dataset="si_contributions",
            purpose="housing_fund_transfer", subject_ids=[audited.commuter()],
        )  # fmt: skip
    for gw in audited.gateways.values():
        gw.checkpoint_and_witness()
    witness = audited.site("120000").root / "data" / "witness.sqlite"
    out = tmp_path / "r.html"
    args = [
        "audit",
        "report",
        "--bundle",
        str(audited.fed.bundle),
        "-o",
        str(out),
        "--witness",
        f"120000={witness}",
    ]
    assert main([*args, str(bj)]) == 0
    assert "<td>120000: size" in out.read_text()
    capsys.readouterr()
    assert main([*args, str(old)]) == 1
    assert "ledger(s) 110000 do not verify" in capsys.readouterr().err
    assert '<span class="bad">FAILED</span>' in out.read_text()


def test_report_shows_fork_evidence_a_witness_holds_and_exits_1(
    audited: RunningFederation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.ledger.witness import Evidence, SqliteWitnessStore

    store_path = _copy_db(
        audited.site("120000").root / "data" / "witness.sqlite", tmp_path / "w.sqlite"
    )
    store = SqliteWitnessStore(store_path)
    store.record_evidence(
        Evidence(
            default_origin("110000"),
            "fork",
            "held note",
            "shown note",
            "two different roots at size 3",
            1_700_000_000_000,
        )
    )
    store.close()
    out = tmp_path / "r.html"
    rc = main(["audit", "report", *map(str, ledgers(audited)), "--bundle", str(audited.fed.bundle),
               "--witness", f"120000={store_path}", "-o", str(out)])  # fmt: skip
    assert rc == 1
    assert "120000 hold fork or rollback evidence" in capsys.readouterr().err
    html = out.read_text()
    assert "1 piece(s) of fork or rollback evidence held" in html
    assert "two different roots at size 3" in html
