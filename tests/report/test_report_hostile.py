"""`gateway audit report` against hostile ledgers: what it says verified must be what
`ledger verify --bundle` verifies, and no ledger value can break the report.

Lightweight: ledgers written with the ledger tests' federation keys and trust bundle,
no running gateways."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.ledger.ledger import SqliteLedger
from tests.ledger.ledger_testkit import (
    ORIGIN,
    ledger_key,
    make_event,
    witness_round,
    write_trust_bundle,
)


def _ledger(path: Path, *events: Any) -> Path:
    ledger = SqliteLedger(path, ledger_key("110000", "intl"), ORIGIN)
    ledger.append_many(events)
    ledger.checkpoint_now()
    ledger.close()
    return path


def _report(tmp_path: Path, ledger: Path) -> tuple[int, str]:
    trust = write_trust_bundle(tmp_path / "trust")
    out = tmp_path / "r.html"
    rc = main(["audit", "report", str(ledger), "--bundle", str(trust), "-o", str(out)])
    return rc, out.read_text(encoding="utf-8")


def test_report_fails_a_ledger_whose_entry_carries_a_forged_requester_signature(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The log's operator (it holds the ledger key) records a transfer 120000 never asked
    # for: the chain, tree and checkpoint are sound, the requester's signature is not
    # over the request digest the entry records.
    genuine = make_event(0)
    forged = make_event(1, request_digest="c" * 64, requester_signature=genuine.requester_signature)
    path = _ledger(tmp_path / "l.sqlite", genuine, forged)
    trust = write_trust_bundle(tmp_path / "trust")
    assert main(["ledger", "verify", str(path), "--bundle", str(trust)]) == 1
    capsys.readouterr()
    rc, html = _report(tmp_path, path)
    assert rc == 1
    assert "ledger(s) 110000 do not verify" in capsys.readouterr().err
    assert "every ledger verifies" not in html
    assert '<span class="bad">FAILED</span>: entry-signature-invalid: entry 1:' in html


def test_report_draws_a_peers_refusal_reason_holding_mathtext_as_plain_text(
    tmp_path: Path,
) -> None:
    # A reason is the holder's text, ledgered by the requester too: "$...$" must not be
    # parsed by the chart library (an unbalanced \frac made the whole report fail).
    reason = r"quota of $\frac{a}{b$ used"
    path = _ledger(
        tmp_path / "l.sqlite", make_event(0, kind="refusal", decision="deny", reason=reason)
    )
    rc, html = _report(tmp_path, path)
    assert rc == 0
    assert r"quota of $\frac{a}{b$ used" in html  # the table, and the chart's alt text


def test_report_counts_a_witness_that_rotated_its_key_since_it_cosigned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """120000 cosigned the newest checkpoint, then rotated its witness key: its
    cosignature verifies with the key the bundle lists for that time (the retired one),
    as `ledger verify --bundle` checks it; the report used to try only the current key
    and showed "1 of 2"."""
    ledger = SqliteLedger(tmp_path / "l.sqlite", ledger_key("110000", "intl"), ORIGIN)
    ledger.append_many([make_event(0), make_event(1)])
    ledger.checkpoint_now()
    for j in ("120000", "130000"):
        witness_round(ledger, j, tmp_path / f"w{j}.db")
    ledger.close()
    trust = write_trust_bundle(tmp_path / "trust", rotated_witnesses=("120000",))
    assert main(["ledger", "verify", str(tmp_path / "l.sqlite"), "--bundle", str(trust)]) == 0
    assert "cosigned by 120000, 130000" in capsys.readouterr().out
    out = tmp_path / "r.html"
    rc = main(["audit", "report", str(tmp_path / "l.sqlite"), "--bundle", str(trust),
               "-o", str(out)])  # fmt: skip
    assert rc == 0
    html = out.read_text(encoding="utf-8")
    assert '<span class="ok">2 of 2</span> 120000 (' in html


def test_report_refuses_two_ledgers_of_one_jurisdiction_instead_of_dropping_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two files of 110000's ledger (a copy, a backup): the pairing kept only the last,
    so the other was silently left out of the reconciliation."""
    first = _ledger(tmp_path / "a.sqlite", make_event(0))
    second = _ledger(tmp_path / "b.sqlite", make_event(0), make_event(1))
    trust = write_trust_bundle(tmp_path / "trust")
    out = tmp_path / "r.html"
    rc = main(["audit", "report", str(first), str(second), "--bundle", str(trust),
               "-o", str(out)])  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert str(first) in err and str(second) in err and "one ledger per jurisdiction" in err
    assert len(err.splitlines()) == 1 and not out.exists()


def test_report_leaves_the_entries_of_a_ledger_that_fails_out_of_its_figures_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """110000's ledger carries a forged requester signature: its entries are marked
    UNVERIFIED and not counted; 120000's ledger verifies and is counted."""
    genuine = make_event(0)
    forged = make_event(1, request_digest="c" * 64, requester_signature=genuine.requester_signature)
    bad = _ledger(tmp_path / "bj.sqlite", genuine, forged)
    tj = SqliteLedger(
        tmp_path / "tj.sqlite",
        ledger_key("120000", "intl"),
        "120000.gateway.dataexchange.cn/ledger",
    )
    tj.append(make_event(7, local="120000", counterparty="130000"))
    tj.checkpoint_now()
    tj.close()
    trust = write_trust_bundle(tmp_path / "trust")
    out = tmp_path / "r.html"
    rc = main(["audit", "report", str(bad), str(tmp_path / "tj.sqlite"), "--bundle", str(trust),
               "-o", str(out)])  # fmt: skip
    assert rc == 1
    printed = capsys.readouterr().out
    assert "3 entries (2 of them in ledgers that do not verify" in printed, printed
    html = out.read_text(encoding="utf-8")
    assert '<div class="card"><b>1</b>exchanges</div>' in html  # 120000's only
    assert "Not counted: the 2 entries of 110000, whose ledger does not verify" in html
    assert html.count("<span class='bad'>UNVERIFIED</span>") == 2
    assert "110000's ledger does not verify: its side of this comparison is unverified" in html
