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
from tests.ledger.ledger_testkit import ORIGIN, ledger_key, make_event, write_trust_bundle


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
