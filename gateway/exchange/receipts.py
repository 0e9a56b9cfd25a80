"""Signed receipts: the requester acknowledges each answer it received; the holder ledgers it.

Owns: the requester's ``ReceiptSender`` (after the requester has ledgered an
answer, one signed receipt per exchange is queued and sent to the holder in
batches by one background thread, so an exchange costs no extra round trip;
receipts for an unreachable holder are kept and retried, up to a bound), and
the holder's ``ReceiptAcceptor`` (open the signed batch, check every receipt's
own signature against the sender's signing key, match it to the holder's own
entry for that exchange, and ledger one ``receipt`` entry per exchange).

Each receipt is signed over the request id, request digest and response digest
(``gateway.envelope.sign_receipt``), all of which the holder's ``receipt``
entry records: it verifies offline from the entry alone, which gives the
holder non-repudiation of receipt.

Does not own: envelopes and transport (``gateway.exchange.peer``), the ledger,
reconciliation (``gateway.ledger.reconcile``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway import crypto, domains, identifiers
from gateway._proto.dataexchange.gateway.v1 import peer_pb2
from gateway.envelope import sign_receipt, verify_receipt
from gateway.errors import CryptoFailure, GatewayError, InvalidArgument, status_name
from gateway.exchange.peer import PeerCaller, PeerResponder, without_reconnect_wait
from gateway.ledger.events import AppendReceipt, LedgerEvent
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.trust import TrustBundle

log = logging.getLogger("gateway.receipts")


@dataclass(frozen=True)
class Answered:
    """One answer the requester received and ledgered."""

    holder: str
    request_id: str
    request_digest: bytes
    response_digest: bytes


class ReceiptSender:
    """Requester side: queue, sign and send receipts in batches off the request path."""

    def __init__(
        self,
        caller: PeerCaller,
        signing_key: crypto.AnySigningKey,
        interval_seconds: float = 0.5,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self._limits = limits
        self._caller = caller
        self._key = signing_key
        self._interval = interval_seconds
        self._lock = threading.Condition()
        self._pending: dict[str, list[peer_pb2.ExchangeReceipt]] = {}
        self._count = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acknowledge(self, a: Answered) -> None:
        """Queue a receipt (called after the requester's entry is committed; cheap)."""
        receipt = peer_pb2.ExchangeReceipt(
            request_id=a.request_id,
            request_digest=a.request_digest,
            response_digest=a.response_digest,
            signature=sign_receipt(self._key, a.request_id, a.request_digest, a.response_digest),
        )
        with self._lock:
            if self._count >= self._limits.max_pending_receipts:
                log.warning("receipt queue full; receipt for request %s dropped", a.request_id)
                return
            self._pending.setdefault(a.holder, []).append(receipt)
            self._count += 1
            if self._count >= self._limits.max_receipt_batch:
                self._lock.notify()

    def pending(self) -> int:
        with self._lock:
            return self._count

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="receipts", daemon=True)
        self._thread.start()

    def stop(self, flush: bool = True) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if flush:
            self.flush()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                self._lock.wait(self._interval)
            self.flush()

    def flush(self) -> int:
        """Send every queued receipt, a batch per holder; returns how many were recorded.
        Receipts for a holder that cannot be reached stay queued for the next flush."""
        with self._lock:
            batches, self._pending, self._count = self._pending, {}, 0
        with without_reconnect_wait():  # queued receipts are retried anyway
            return self._send(batches)

    def _send(self, batches: dict[str, list[peer_pb2.ExchangeReceipt]]) -> int:
        recorded = 0
        for holder, receipts in batches.items():
            step = self._limits.max_receipt_batch
            for start in range(0, len(receipts), step):
                chunk = receipts[start : start + step]
                try:
                    reply = self._caller.call(
                        holder,
                        "Acknowledge",
                        peer_pb2.PeerReceiptBatch(receipts=chunk),
                        domains.PEER_RECEIPT_BATCH,
                        domains.PEER_RECEIPT_ACK,
                        peer_pb2.PeerReceiptAck,
                    )
                    recorded += reply.response.recorded
                except GatewayError as exc:
                    log.info(
                        "receipts to %s not delivered yet (%s); will retry",
                        holder,
                        status_name(exc),
                    )
                    with self._lock:
                        rest = receipts[start:]
                        self._pending.setdefault(holder, []).extend(rest)
                        self._count += len(rest)
                    break
        return recorded


class BatchWriter(Protocol):
    def append_many(self, events: Iterable[LedgerEvent]) -> list[AppendReceipt]:
        """Durably append events in one transaction."""
        ...


class ReceiptAcceptor:
    """Holder side: verify each receipt and ledger it once."""

    def __init__(
        self,
        me: str,
        responder: PeerResponder,
        bundle: Callable[[], TrustBundle],
        ledger: BatchWriter,
        answered: Callable[[Sequence[str]], Mapping[str, Sequence[LedgerEvent]]],
        clock_ms: Callable[[], int],
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self._limits = limits
        self._me = me
        self._responder = responder
        self._bundle = bundle
        self._ledger = ledger
        self._answered = answered  # request ids -> this ledger's entries for each
        self._clock = clock_ms
        self._lock = threading.Lock()

    def handle(
        self, envelope: peer_pb2.SignedEnvelope, tls_identity: str
    ) -> peer_pb2.SignedEnvelope:
        request = self._responder.open(
            envelope, domains.PEER_RECEIPT_BATCH, peer_pb2.PeerReceiptBatch, tls_identity
        )
        sender = request.sender
        n = len(request.message.receipts)
        if n > self._limits.max_receipt_batch:
            raise InvalidArgument.expected(
                "receipts per batch", f"<= {self._limits.max_receipt_batch}", n
            )
        # The sender's envelope keys valid now: during a rotation's overlap a gateway
        # not yet restarted still signs its receipts with the retired one.
        keys = self._bundle().member(sender).ring("envelope").at(self._clock())
        signed = [r for r in request.message.receipts if _well_signed(keys, r)]
        refused = n - len(signed)
        recorded = 0
        with self._lock:  # one receipt entry per exchange, even for concurrent batches
            # This ledger's entries for every signed receipt, in one lookup.
            answered = self._answered([r.request_id for r in signed])
            events: list[LedgerEvent] = []
            seen: set[str] = set()
            for r in signed:
                outcome = self._accept(sender, r, answered.get(r.request_id, ()), seen)
                if isinstance(outcome, LedgerEvent):
                    events.append(outcome)
                    seen.add(outcome.request_id)
                recorded += outcome is not False
                refused += outcome is False
            if events:
                self._ledger.append_many(events)  # one transaction, one fsync per batch
        ack = peer_pb2.PeerReceiptAck(recorded=recorded, refused=refused)
        return self._responder.respond(request, ack, domains.PEER_RECEIPT_ACK)

    def _accept(
        self,
        sender: str,
        r: peer_pb2.ExchangeReceipt,
        entries: Sequence[LedgerEvent],
        seen: set[str],
    ) -> LedgerEvent | bool:
        """The receipt entry to append for a well-signed receipt, given this
        ledger's ``entries`` for its request id; True: already recorded; False:
        refused (no answer of ours to ``sender`` to acknowledge)."""
        # The answer the receipt acknowledges: same request and response digests
        # as this ledger recorded (a receipt for an answer never given is refused).
        mine = [
            e
            for e in entries
            if e.role == "holder"
            and e.counterparty == sender
            and e.kind != "receipt"
            and e.request_digest == r.request_digest.hex()
            and e.response_digest == r.response_digest.hex()
        ]
        if not mine:
            return False
        if r.request_id in seen or any(
            e.kind == "receipt" and e.counterparty == sender for e in entries
        ):
            return True
        answer = mine[0]
        return LedgerEvent(
            kind="receipt",
            role="holder",
            request_id=r.request_id,
            timestamp_ms=self._clock(),
            local=self._me,
            counterparty=sender,
            service_system=answer.service_system,
            dataset=answer.dataset,
            purpose=answer.purpose,
            decision=answer.decision,
            reason=f"receipt from {sender} for its {answer.kind} entry",
            record_count=answer.record_count,
            agreement_id=answer.agreement_id,
            request_digest=r.request_digest.hex(),
            response_digest=r.response_digest.hex(),
            requester_signature=crypto.b64(r.signature),
        )


def _well_signed(keys: Sequence[crypto.AnyVerifyKey], r: peer_pb2.ExchangeReceipt) -> bool:
    """A receipt's shape and its own signature by one of the sending member's keys."""
    if (
        len(r.request_digest) != 32
        or len(r.response_digest) != 32
        or not identifiers.is_request_id(r.request_id)
    ):
        return False
    for key in keys:
        try:
            verify_receipt(key, r.request_id, r.request_digest, r.response_digest, r.signature)
        except CryptoFailure:
            continue
        return True
    return False
