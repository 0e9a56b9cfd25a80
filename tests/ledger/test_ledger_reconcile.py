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


def test_release_hidden_behind_a_refusal_for_the_same_request_is_a_discrepancy() -> None:
    """The holder's ledger records a refusal and then a release for one request; the
    requester recorded the refusal. Pairing only the first holder entry matched the
    refusal and never looked at the release."""
    from gateway.ledger.reconcile import reconcile

    refusal = make_event(
        1, kind="refusal", decision="deny", record_count=0, payload_digest="",
        holder_signature="", reason="no agreement",
    )  # fmt: skip
    released = make_event(1, record_count=5)  # same request id, data released
    asked = requester_view(
        1, kind="refusal", decision="deny", holder_signature="", reason="holder refused"
    )
    r = reconcile([(0, refusal), (1, released)], [(0, asked)])
    assert not r.ok and r.matched == 0
    assert [(d.request_id, d.fields) for d in r.differing] == [("req-000001", ("entry count",))]
    r = reconcile([(0, released), (1, make_event(1, record_count=9))], [], "110000", "120000")
    assert not r.ok and r.differing[0].fields == ("entry count",)  # not one "unacknowledged"


# --------------------------------------------------------------------------
# Streamed bulk transfers: the holder's started + closing entries, one requester entry.
# --------------------------------------------------------------------------

START_SIG_DIGEST, END_SIG_DIGEST = "1" * 64, "2" * 64


def _started(i: int) -> object:
    return make_event(
        i, record_count=0, payload_digest="", response_digest=START_SIG_DIGEST,
        details=(("stream", "true"), ("stream_phase", "started")),
    )  # fmt: skip


def _closing(i: int, rows: int, complete: bool) -> object:
    return make_event(
        i, record_count=rows, payload_digest="c" * 64,
        response_digest=END_SIG_DIGEST if complete else "3" * 64,
        details=(("complete", "true" if complete else "false"), ("stream", "true"),
                 ("stream_phase", "closed")),
    )  # fmt: skip


def _asked(i: int, rows: int, complete: bool) -> object:
    """The requester holds the signed end when complete, else only the signed start."""
    return requester_view(
        i, record_count=rows, payload_digest="c" * 64 if complete else "f" * 64,
        response_digest=END_SIG_DIGEST if complete else START_SIG_DIGEST,
        details=(("complete", "true" if complete else "false"), ("stream", "true")),
    )  # fmt: skip


def test_completed_stream_pairs_the_requester_entry_with_the_holder_closing_entry() -> None:
    from gateway.ledger.reconcile import reconcile

    r = reconcile([(0, _started(1)), (1, _closing(1, 50, True))], [(0, _asked(1, 50, True))])
    assert (r.ok, r.matched, r.interrupted, r.unacknowledged) == (True, 1, (), ())


def test_holder_killed_mid_stream_is_an_interrupted_transfer_not_a_discrepancy() -> None:
    """A started entry without a closing one (kill -9 of the holder)."""
    from gateway.ledger.reconcile import reconcile

    r = reconcile([(7, _started(1))], [(3, _asked(1, 40, False))])
    assert r.ok and r.discrepancies == 0 and r.matched == 0
    [t] = r.interrupted
    assert (t.request_id, t.index, t.rows_sent, t.rows_received) == ("req-000001", 7, None, 40)
    assert "no closing entry" in t.reason
    # Also when the requester died too and has no entry at all.
    alone = reconcile([(7, _started(1))], [], "110000", "120000")
    assert alone.ok and alone.interrupted[0].rows_received is None


def test_stream_cut_between_the_gateways_is_interrupted_on_both_sides() -> None:
    from gateway.ledger.reconcile import reconcile

    held = [(0, _started(1)), (1, _closing(1, 80, False))]
    r = reconcile(held, [(0, _asked(1, 40, False))])
    assert r.ok and [(t.rows_sent, t.rows_received) for t in r.interrupted] == [(80, 40)]
    # The holder finished (rows buffered in flight) but the requester gave up: interrupted too.
    held = [(0, _started(1)), (1, _closing(1, 80, True))]
    assert reconcile(held, [(0, _asked(1, 40, False))]).interrupted[0].rows_sent == 80


def test_requester_claiming_more_rows_than_the_holder_sent_is_a_discrepancy() -> None:
    from gateway.ledger.reconcile import reconcile

    held = [(0, _started(1)), (1, _closing(1, 40, False))]
    r = reconcile(held, [(0, _asked(1, 80, False))])
    assert not r.ok and r.differing[0].fields == ("record_count",)


def test_requester_holding_a_signed_end_the_holder_never_closed_with_is_a_discrepancy() -> None:
    from gateway.ledger.reconcile import reconcile

    r = reconcile([(0, _started(1))], [(5, _asked(1, 50, True))])
    assert not r.ok and r.missing_in_a == (("req-000001", 5),)


def test_stream_closing_entry_disagreeing_with_its_started_entry_is_a_discrepancy() -> None:
    from dataclasses import replace

    from gateway.ledger.reconcile import reconcile

    closing = replace(_closing(1, 50, True), agreement_digest="9" * 64)  # type: ignore[type-var]
    r = reconcile([(0, _started(1)), (1, closing)], [(0, _asked(1, 50, True))])
    assert not r.ok and "agreement_digest" in r.differing[0].fields


def test_reconcile_cli_lists_an_interrupted_stream_and_exits_0(
    new_ledger: NewLedger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = new_ledger(name="a.db", origin=BJ)
    b = new_ledger(name="b.db", origin=TJ)
    a.append(_started(1))  # type: ignore[arg-type]
    b.append(_asked(1, 40, False))  # type: ignore[arg-type]
    a.close()
    b.close()
    assert main(["audit", "reconcile", str(tmp_path / "a.db"), str(tmp_path / "b.db")]) == 0
    out = capsys.readouterr().out
    assert "1 interrupted streamed transfers" in out and "request req-000001" in out
    assert "0 true discrepancies" in out
