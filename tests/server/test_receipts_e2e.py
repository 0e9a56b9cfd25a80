"""Signed receipts: the requester acknowledges each answer; the holder ledgers it; reconcile
tells a crash from a discrepancy. Real gateways on loopback."""

from __future__ import annotations

import time

import grpc
import pytest

from gateway import domains
from gateway._proto.dataexchange.gateway.v1 import peer_pb2
from gateway.errors import GatewayError
from gateway.exchange.receipts import Answered
from gateway.ledger.reconcile import reconcile
from gateway.ledger.signatures import check_entry_signatures
from gateway.ledger.trustkeys import TrustedKeys
from gateway.trust import load_bundle
from tests.conftest import RunningFederation, start_federation, stop_federation
from tests.helpers import ledger_events

BJ, HB = "110000", "130000"


@pytest.fixture()
def fed(tmp_path):  # type: ignore[no-untyped-def]
    rf = start_federation(tmp_path, rows=40)
    yield rf
    stop_federation(rf)


def _ask(fed: RunningFederation) -> str:
    with fed.client(HB, "hebei-housing-fund") as c:
        resp = c.get_records(
            holder_jurisdiction=BJ,
            dataset="si_contributions",
            purpose="housing_fund_transfer",
            subject_ids=[fed.commuter()],
        )
    return str(resp.request_id)


def _receipts(fed: RunningFederation, rid: str) -> list:  # type: ignore[type-arg]
    return [
        e
        for e in ledger_events(fed.gateways[BJ], receipts=True)
        if e.kind == "receipt" and e.request_id == rid
    ]


def test_holder_ledgers_the_requesters_signed_receipt_off_the_request_path(
    fed: RunningFederation,
) -> None:
    rid = _ask(fed)
    assert _receipts(fed, rid) == []  # the exchange returned before any receipt was sent
    deadline = time.monotonic() + 10
    while not _receipts(fed, rid):
        assert time.monotonic() < deadline, "no receipt was ledgered"
        time.sleep(0.1)
    (receipt,) = _receipts(fed, rid)
    held = next(
        e for e in ledger_events(fed.gateways[BJ]) if e.request_id == rid and e.kind == "transfer"
    )
    assert (receipt.request_digest, receipt.response_digest) == (
        held.request_digest, held.response_digest,
    )  # fmt: skip
    keys = TrustedKeys.from_bundle(load_bundle(fed.fed.bundle))
    check = check_entry_signatures(receipt, keys)
    assert check.checked == 1 and not check.problem  # verifiable offline from the entry alone
    tampered = check_entry_signatures(
        type(receipt)(**{**receipt.__dict__, "response_digest": "0" * 64}), keys
    )
    assert tampered.problem
    r = reconcile(
        list(enumerate(ledger_events(fed.gateways[BJ], receipts=True))),
        list(enumerate(ledger_events(fed.gateways[HB]))),
    )
    assert r.ok and r.receipts >= 1


def test_forged_receipt_is_refused_and_not_ledgered(fed: RunningFederation) -> None:
    rid = _ask(fed)
    hb = fed.gateways[HB]
    batch = peer_pb2.PeerReceiptBatch(
        receipts=[peer_pb2.ExchangeReceipt(request_id=rid, request_digest=bytes(32),
                                           response_digest=bytes(32), signature=bytes(64))]
    )  # fmt: skip
    reply = hb.caller.call(
        BJ, "Acknowledge", batch, domains.PEER_RECEIPT_BATCH, domains.PEER_RECEIPT_ACK,
        peer_pb2.PeerReceiptAck,
    )  # fmt: skip
    assert reply.response.refused == 1 and reply.response.recorded == 0


def test_well_signed_receipt_for_an_answer_never_given_is_refused_and_not_ledgered(
    fed: RunningFederation,
) -> None:
    """The requester signs, with its real key, a receipt naming a real request id but
    digests of an answer the holder never gave (to claim it received something else):
    the holder compares them with its own entry and refuses it."""
    from gateway.envelope import sign_receipt

    rid = _ask(fed)
    hb = fed.gateways[HB]
    made_up = (b"\x01" * 32, b"\x02" * 32)
    receipt = peer_pb2.ExchangeReceipt(
        request_id=rid, request_digest=made_up[0], response_digest=made_up[1],
        signature=sign_receipt(hb.keys.signing, rid, *made_up),
    )  # fmt: skip
    before = [e for e in ledger_events(fed.gateways[BJ]) if e.kind == "receipt"]
    reply = hb.caller.call(
        BJ, "Acknowledge", peer_pb2.PeerReceiptBatch(receipts=[receipt]),
        domains.PEER_RECEIPT_BATCH, domains.PEER_RECEIPT_ACK, peer_pb2.PeerReceiptAck,
    )  # fmt: skip
    assert reply.response.refused == 1 and reply.response.recorded == 0
    after = [e for e in ledger_events(fed.gateways[BJ]) if e.kind == "receipt"]
    assert [e for e in after if e not in before and e.request_digest == made_up[0].hex()] == []


def test_answer_the_requester_never_ledgered_is_unacknowledged_not_a_discrepancy(
    fed: RunningFederation,
) -> None:
    """The requester dies after the holder released (its ledger append fails, as kill -9
    between answer and append would leave it): reconcile lists the release as
    unacknowledged with the reason, and reports no discrepancy."""
    hb = fed.gateways[HB]
    real = hb.ledger.append

    def crash(event):  # type: ignore[no-untyped-def]
        if event.kind == "transfer":
            raise GatewayError("simulated crash before the requester ledgered")
        return real(event)

    hb.ledger.append = crash  # type: ignore[method-assign]
    with pytest.raises(grpc.RpcError):
        _ask(fed)
    hb.ledger.append = real  # type: ignore[method-assign]
    r = reconcile(
        list(enumerate(ledger_events(fed.gateways[BJ]))),
        list(enumerate(ledger_events(hb))),
        BJ,
        HB,
    )
    assert r.ok and r.discrepancies == 0
    (u,) = r.unacknowledged
    assert u.holder == BJ and u.kind == "transfer" and "requester lost" in u.reason


def test_receipt_for_an_exchange_the_requester_ledger_lacks_is_a_discrepancy(
    fed: RunningFederation,
) -> None:
    """Non-repudiation: the requester signed a receipt, then its ledger 'lost' the entry."""
    rid = _ask(fed)
    hb = fed.gateways[HB]
    hb.receipts.flush()
    assert _receipts(fed, rid)
    events = [e for e in ledger_events(hb) if e.request_id != rid]
    held = ledger_events(fed.gateways[BJ], receipts=True)
    r = reconcile(list(enumerate(held)), list(enumerate(events)), BJ, HB)
    assert not r.ok and [x for x, _ in r.missing_in_b] == [rid]


def test_receipts_for_an_unreachable_holder_are_kept_and_retried(fed: RunningFederation) -> None:
    hb = fed.gateways[HB]
    hb.receipts.stop(flush=False)
    hb.receipts.acknowledge(Answered("120000", "00000000-0000-4000-8000-000000000000",
                                     bytes(32), bytes(32)))  # fmt: skip
    fed.gateways["120000"].stop(grace=0.1)
    del fed.gateways["120000"]
    assert hb.receipts.flush() == 0 and hb.receipts.pending() == 1


def test_oversized_receipt_batch_is_refused_with_invalid_argument(fed: RunningFederation) -> None:
    from gateway.errors import InvalidArgument

    hb = fed.gateways[HB]
    one = peer_pb2.ExchangeReceipt(request_id="00000000-0000-4000-8000-000000000000",
                                   request_digest=bytes(32), response_digest=bytes(32),
                                   signature=bytes(64))  # fmt: skip
    batch = peer_pb2.PeerReceiptBatch(receipts=[one] * (hb.config.limits.max_receipt_batch + 1))
    with pytest.raises(InvalidArgument, match="receipts per batch"):
        hb.caller.call(
            BJ, "Acknowledge", batch, domains.PEER_RECEIPT_BATCH, domains.PEER_RECEIPT_ACK,
            peer_pb2.PeerReceiptAck,
        )  # fmt: skip
