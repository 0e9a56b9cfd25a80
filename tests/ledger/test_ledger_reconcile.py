"""Cross-ledger reconciliation finds missing and differing transfers (core and CLI)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.crypto import SigningKey
from gateway.ledger.ledger import SqliteLedger
from tests.ledger.ledger_testkit import make_event

NewLedger = Callable[..., SqliteLedger]
BJ = "110000.gateway.dataexchange.cn/ledger"
TJ = "120000.gateway.dataexchange.cn/ledger"


def requester_view(i: int, **kw):  # type: ignore[no-untyped-def]
    return make_event(i, role="requester", local="120000", counterparty="110000", **kw)


@pytest.fixture
def pair(new_ledger: NewLedger, tmp_path: Path) -> tuple[Path, Path]:
    holder = new_ledger(name="bj.db", origin=BJ)
    requester = new_ledger(name="tj.db", origin=TJ, signer=SigningKey(bytes([3]) * 32))
    holder.append_many(make_event(i) for i in range(6))
    requester.append_many(requester_view(i, timestamp_ms=1_800_000_000_000 + i) for i in range(6))
    # Holder recorded a transfer the requester never did, and vice versa.
    holder.append(make_event(100))
    requester.append(requester_view(200))
    # Same request, different payload digest on the requester's side.
    holder.append(make_event(300))
    requester.append(requester_view(300, payload_digest="e" * 64))
    holder.close()
    requester.close()
    return tmp_path / "bj.db", tmp_path / "tj.db"


def test_reconcile_reports_missing_and_different(pair: tuple[Path, Path]) -> None:
    from gateway.cli.audit import read_side
    from gateway.ledger.reconcile import reconcile

    r = reconcile(read_side(str(pair[0])), read_side(str(pair[1])))
    assert (r.jurisdiction_a, r.jurisdiction_b) == ("110000", "120000")
    assert r.matched == 6
    # The holder released req-000100 but the requester has no entry: it was lost, not forged.
    assert [(u.request_id, u.kind) for u in r.unacknowledged] == [("req-000100", "transfer")]
    assert "requester lost" in r.unacknowledged[0].reason
    assert not r.missing_in_b
    # The requester holds the holder's signed answer to req-000200; the holder lacks it.
    assert [rid for rid, _ in r.missing_in_a] == ["req-000200"]
    assert [(d.request_id, d.fields) for d in r.differing] == [("req-000300", ("payload_digest",))]


def test_reconcile_cli_exits_1_and_names_transfers(
    pair: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "reconcile", str(pair[0]), str(pair[1])]) == 1
    out = capsys.readouterr().out
    assert "entry 6 (transfer), request req-000100: requester lost" in out
    assert "DISCREPANCY missing in 110000: request req-000200" in out
    assert "differs: request req-000300" in out and "payload_digest" in out


def test_matching_ledgers_reconcile_cleanly(new_ledger: NewLedger, tmp_path: Path) -> None:
    a = new_ledger(name="a.db", origin=BJ)
    b = new_ledger(name="b.db", origin=TJ)
    a.append_many(make_event(i) for i in range(3))
    b.append_many(requester_view(i) for i in range(3))
    a.close()
    b.close()
    assert main(["audit", "reconcile", str(tmp_path / "a.db"), str(tmp_path / "b.db")]) == 0


def test_same_role_on_both_sides_is_a_difference(new_ledger: NewLedger, tmp_path: Path) -> None:
    from gateway.ledger.reconcile import reconcile

    a = [(0, make_event(1))]
    b = [(0, make_event(1, local="120000", counterparty="110000"))]  # both claim "holder"
    r = reconcile(a, b)
    assert r.differing and "role" in r.differing[0].fields


def test_attempt_the_holder_never_answered_is_not_reported_missing(
    new_ledger: NewLedger, tmp_path: Path
) -> None:
    a = new_ledger(name="a.db", origin=BJ)
    b = new_ledger(name="b.db", origin=TJ)
    a.append_many(make_event(i) for i in range(2))
    b.append_many(requester_view(i) for i in range(2))
    # Holder down: the requester records its failed attempt, unsigned by the holder.
    b.append(
        requester_view(
            9, kind="refusal", decision="deny", holder_signature="", reason="exchange failed: down"
        )
    )
    a.close()
    b.close()
    assert main(["audit", "reconcile", str(tmp_path / "a.db"), str(tmp_path / "b.db")]) == 0


def test_release_the_requester_recorded_as_failed_is_unacknowledged_with_the_reason() -> None:
    """Connection reset after the holder released: not a discrepancy, and said why."""
    from gateway.ledger.reconcile import reconcile

    held = [(0, make_event(1))]
    failed = requester_view(
        1, kind="refusal", decision="deny", holder_signature="", reason="exchange failed: reset"
    )
    r = reconcile(held, [(4, failed)])
    assert r.ok and r.matched == 0
    (u,) = r.unacknowledged
    assert u.index == 0 and "connection reset or timeout" in u.reason and "entry 4" in u.reason


def test_receipt_for_another_answer_is_a_discrepancy() -> None:
    from gateway.ledger.reconcile import reconcile

    receipt = make_event(1, kind="receipt", response_digest="f" * 64, requester_signature="",
                         holder_signature="")  # fmt: skip
    r = reconcile([(0, make_event(1)), (1, receipt)], [(0, requester_view(1))])
    assert not r.ok and r.differing[0].fields == ("receipt",)
