"""The requesting gateway's side of a streamed bulk transfer.

Owns: validating a service system's bulk request and its resume cursor (a
resume is accepted only for a transfer this gateway's own ledger shows it
received for the same service system, holder, dataset and purpose, from a row
within those it received: ``bulk.vouches_for``), signing the peer request (with
the most rows it accepts: the service system's ``max_rows``, at most
``Limits.max_stream_rows_per_request``), and verifying the holder's stream as
it arrives: the signed start (holder's decision bound to this request), each
chunk in order (index and first row as expected, never past the smaller of the
holder's signed cap and the rows asked for, opened with associated data
binding request and position, its ``ColumnBatch`` holding exactly its row count
in every column, fields as signed), and the signed end (chunk count, row count
and hash-chain commitment equal to what arrived). Rows are handed on chunk by
chunk (memory stays at one chunk); the transfer is reported complete only
after the end verified. Exactly one ledger entry per transfer: complete,
interrupted (rows received so far, resumable) or failed verification (rows
received before the failure).

Does not own: the holder's side (``gateway.exchange.bulk_holder``), transport.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway import crypto, domains, identifiers
from gateway._proto.dataexchange.gateway.v1 import common_pb2, peer_pb2
from gateway.envelope import envelope_digest, new_request_id
from gateway.errors import (
    CryptoFailure,
    GatewayError,
    InvalidArgument,
    VerificationFailed,
)
from gateway.exchange.bulk import (
    BulkQuery,
    ChunkChain,
    Cursor,
    batch_rows,
    chunk_context,
    open_column_batch,
    vouches_for,
)
from gateway.exchange.peer import PeerCaller
from gateway.exchange.records import (
    HEX64_OR_EMPTY,
    offering_member,
    refusal_class,
)
from gateway.identity import SealKeys
from gateway.ledger.events import INVALID, AppendReceipt, LedgerEvent, LedgerWriter, clean_reason
from gateway.ledger.ledger import LedgerRecord
from gateway.limits import Limits
from gateway.trust import Member, TrustBundle


class TransferLedger(LedgerWriter, Protocol):
    def find(self, request_id: str) -> Sequence[LedgerRecord]:
        """Every entry of one request id, in ledger order."""
        ...


class PeerStreamTransport(Protocol):
    def stream(
        self, member: Member, method: str, envelope: peer_pb2.SignedEnvelope, timeout: float
    ) -> Iterator[peer_pb2.PeerStreamMessage]:
        """Server-streaming call over mutual TLS; closing the iterator cancels it."""
        ...


@dataclass(frozen=True)
class BulkStarted:
    request_id: str
    holder: str
    dataset: str
    decision: common_pb2.PolicyDecision
    start_row: int
    max_rows: int


@dataclass(frozen=True)
class BulkChunk:
    index: int
    first_row: int
    columns: common_pb2.ColumnBatch  # the rows, column by column (checked)
    cursor: str  # resume after this chunk

    @property
    def row_count(self) -> int:
        return self.columns.row_count

    def rows(self) -> Iterator[dict[str, str]]:
        return batch_rows(self.columns)


@dataclass(frozen=True)
class BulkCompleted:
    row_count: int
    chunk_count: int
    commitment: str  # hex
    truncated: bool
    truncated_reason: str
    cursor: str
    receipt: AppendReceipt
    local: str


BulkEvent = BulkStarted | BulkChunk | BulkCompleted


class BulkRequester:
    """Requesting gateway's side of a streamed bulk transfer."""

    def __init__(
        self,
        caller: PeerCaller,
        transport: PeerStreamTransport,
        bundle: Callable[[], TrustBundle],
        ledger: TransferLedger,
        seal_key: crypto.AnySealPrivateKey | SealKeys,
        clock_ms: Callable[[], int],
        limits: Limits,
    ) -> None:
        self._caller = caller
        self._transport = transport
        self._bundle = bundle
        self._ledger = ledger
        self._seal_keys = seal_key if isinstance(seal_key, SealKeys) else SealKeys(seal_key)
        self._clock = clock_ms
        self._limits = limits
        # Transfers being received now (request id -> service system, set once
        # ledgered): a resume may arrive before the cut transfer's entry is written.
        self._running: dict[str, tuple[str, threading.Event]] = {}
        self._running_lock = threading.Lock()

    def stream_records(self, service_system: str, query: BulkQuery) -> Iterator[BulkEvent]:
        cursor = query.validate(self._limits)
        me = self._caller.me
        member = offering_member(self._bundle(), me, query.holder, query.dataset)
        if cursor is not None:
            self._check_resume(service_system, query, cursor)
        request_id = new_request_id()
        msg = peer_pb2.PeerStreamRequest(
            service_system=service_system,
            dataset=query.dataset,
            purpose=query.purpose,
            fields=query.fields,
            client_reference=query.client_reference,
            start_row=cursor.next_row if cursor else 0,
            resume_of=cursor.request_id if cursor else "",
            max_rows=query.rows_asked(self._limits),
        )
        envelope = self._caller.prepare(query.holder, msg, domains.PEER_STREAM_REQUEST, request_id)
        run = _Run(self, service_system, query, msg, envelope, request_id, member)
        return run.events()

    def _check_resume(self, service_system: str, query: BulkQuery, cursor: Cursor) -> None:
        """A cursor is a claim by the caller: accept it only if this gateway's own
        ledger shows that transfer, received for this service system, holder,
        dataset and purpose, and the row is within what it received."""
        me = self._caller.me
        entries = self._ledger.find(cursor.request_id)
        if not entries:
            # The service system cut that transfer and resumed at once: this gateway
            # may still be ending it (its entry is written when it notices).
            with self._running_lock:
                running = self._running.get(cursor.request_id)
            if running is not None and running[0] == service_system:
                if running[1].wait(self._limits.stream_resume_wait_seconds):
                    entries = self._ledger.find(cursor.request_id)
        if not any(vouches_for(r.event, cursor, me, service_system, query) for r in entries):
            raise InvalidArgument(
                "cursor: not the cursor of a bulk transfer this gateway received for service "
                f"system {service_system} from {query.holder} ({query.dataset}, purpose "
                f"{query.purpose}); resume with the cursor of a chunk, or of the completion, "
                "of such a transfer, or leave cursor empty to start from the first row"
            )

    # Used by _Run.
    def _append(self, event: LedgerEvent) -> AppendReceipt:
        return self._ledger.append(event)

    def _begin(self, request_id: str, service_system: str) -> None:
        with self._running_lock:
            self._running[request_id] = (service_system, threading.Event())

    def _end(self, request_id: str) -> None:
        with self._running_lock:
            running = self._running.pop(request_id, None)
        if running is not None:
            running[1].set()


class _Run:
    """One transfer being received; owns its single ledger entry."""

    def __init__(
        self,
        owner: BulkRequester,
        service_system: str,
        query: BulkQuery,
        msg: peer_pb2.PeerStreamRequest,
        envelope: peer_pb2.SignedEnvelope,
        request_id: str,
        member: Member,
    ) -> None:
        self._o = owner
        self._query = query
        self._msg = msg
        self._envelope = envelope
        self._request_id = request_id
        self._member = member
        suite = owner._caller.suite
        digest = envelope_digest(envelope, suite)
        self._chain = ChunkChain(digest, suite.digest)
        self._decided: dict[str, str] = {}
        self._ledgered = False
        self._base = {
            "role": "requester",
            "request_id": request_id,
            "local": owner._caller.me,
            "counterparty": query.holder,
            "service_system": service_system,
            "dataset": query.dataset,
            "purpose": query.purpose,
            "request_digest": digest.hex(),
            "requester_signature": crypto.b64(envelope.signature),
        }
        self._details: list[tuple[str, str]] = [("stream", "true")]
        if query.client_reference:
            self._details.append(("client_reference", query.client_reference))
        if msg.start_row:
            self._details.append(("start_row", str(msg.start_row)))
        if msg.resume_of:
            self._details.append(("resume_of", msg.resume_of))

    def _ledger(
        self,
        kind: str,
        decision: str,
        reason: str,
        extra: tuple[tuple[str, str], ...] = (),
        decided: dict[str, str] | None = None,
    ) -> AppendReceipt:
        self._ledgered = True
        details = sorted({*self._details, ("chunks", str(self._chain.chunks)), *extra})
        fields = self._base | (self._decided if decided is None else decided)
        moved = kind == "transfer" or self._chain.chunks > 0
        return self._o._append(
            LedgerEvent(
                kind=kind,  # type: ignore[arg-type]
                decision=decision,  # type: ignore[arg-type]
                reason=clean_reason(reason, self._o._limits),
                timestamp_ms=self._o._clock(),
                record_count=self._chain.rows,
                payload_digest=self._chain.head.hex() if moved else "",
                details=tuple(kv for kv in details if kv[1]),
                **fields,  # type: ignore[arg-type]
            )
        )

    def _holder_signed(self, env: peer_pb2.SignedEnvelope) -> dict[str, str]:
        """The holder's signature an entry records, with the digest it is made over
        (so it verifies offline from the entry alone)."""
        return {
            "holder_signature": crypto.b64(env.signature),
            "response_digest": envelope_digest(env, self._o._caller.suite).hex(),
        }

    def events(self) -> Iterator[BulkEvent]:
        o = self._o
        o._begin(self._request_id, self._base["service_system"])
        try:
            yield from self._events()
        finally:
            o._end(self._request_id)  # after its entry is written (or could not be)

    def _events(self) -> Iterator[BulkEvent]:
        o = self._o
        stream = o._transport.stream(
            self._member, "StreamRecords", self._envelope, o._limits.stream_deadline_seconds
        )
        try:
            yield from self._receive(stream)
        except (VerificationFailed, CryptoFailure) as exc:
            if not self._ledgered:
                self._ledger("refusal", "deny", f"holder's stream failed verification: {exc}")
            raise
        except GatewayError as exc:
            reason = f"transfer interrupted after {self._chain.rows} rows: {exc}"
            if not self._ledgered:
                if self._decided:
                    self._ledger("transfer", "allow", reason, (("complete", "false"),))
                else:
                    self._ledger("refusal", "deny", f"exchange failed: {exc}")
            raise
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
            if not self._ledgered:
                # The service system went away (before or during the transfer).
                if self._decided:
                    self._ledger(
                        "transfer",
                        "allow",
                        f"transfer interrupted by the service system after {self._chain.rows} rows",
                        (("complete", "false"),),
                    )
                else:
                    self._ledger("refusal", "deny", "the service system cancelled the request")

    def _receive(self, stream: Iterator[peer_pb2.PeerStreamMessage]) -> Iterator[BulkEvent]:
        o = self._o
        me, holder, rid = o._caller.me, self._query.holder, self._request_id
        first = next(stream, None)
        if first is None or first.WhichOneof("kind") != "start":
            raise VerificationFailed("the holder's stream did not begin with its signed start")
        start = o._caller.verify(
            holder, self._envelope, rid, first.start, domains.PEER_STREAM_START,
            peer_pb2.PeerStreamStart,
        )  # fmt: skip
        d = start.decision
        if not (
            identifiers.is_answered_agreement_id(d.agreement_id)
            and HEX64_OR_EMPTY.fullmatch(d.agreement_digest)
            and HEX64_OR_EMPTY.fullmatch(d.policy_set_digest)
        ):
            raise VerificationFailed("holder's signed start is malformed (agreement id or digests)")
        decided = {
            "agreement_id": d.agreement_id,
            "agreement_digest": d.agreement_digest,
            "policy_set_digest": d.policy_set_digest,
            "legal_basis": clean_reason(d.legal_basis, o._limits),
            "approval_id": d.approval_id
            if identifiers.is_answered_approval_id(d.approval_id)
            else INVALID,
            **self._holder_signed(first.start),
        }
        if not d.allowed:
            self._ledger("refusal", "deny", d.reason, decided=decided)
            raise refusal_class(start.error_code)(f"holder {holder} refused: {d.reason}")
        if start.start_row != self._msg.start_row:
            raise VerificationFailed(
                f"holder starts at row {start.start_row}, row {self._msg.start_row} was asked for"
            )
        self._decided = decided
        allowed = {f.name for f in d.fields}
        # The holder's signed cap, and never more than this gateway asked for.
        cap = min(start.max_rows, self._msg.max_rows)
        yield BulkStarted(rid, holder, self._query.dataset, d, start.start_row, cap)
        chain = self._chain
        next_row = start.start_row
        for message in stream:
            kind = message.WhichOneof("kind")
            if kind == "end":
                end = o._caller.verify(
                    holder, self._envelope, rid, message.end, domains.PEER_STREAM_END,
                    peer_pb2.PeerStreamEnd,
                )  # fmt: skip
                if (
                    end.chunk_count != chain.chunks
                    or end.row_count != chain.rows
                    or end.next_row != next_row
                    or not crypto.digest_equal(end.commitment, chain.head)
                ):
                    raise VerificationFailed(
                        f"the holder's signed end commits to {end.chunk_count} chunks and "
                        f"{end.row_count} rows, not the {chain.chunks} chunks and {chain.rows} "
                        "rows received"
                    )
                if next(stream, None) is not None:
                    raise VerificationFailed("the holder sent more after its signed end")
                self._decided.update(self._holder_signed(message.end))
                receipt = self._ledger(
                    "transfer",
                    "allow",
                    d.reason,
                    (("complete", "true"), ("truncated", "true" if end.truncated else "")),
                )
                yield BulkCompleted(
                    chain.rows, chain.chunks, chain.head.hex(), end.truncated,
                    clean_reason(end.truncated_reason, o._limits), Cursor(rid, next_row).encode(),
                    receipt, me,
                )  # fmt: skip
                return
            if kind != "chunk":
                raise VerificationFailed("a second start in the holder's stream")
            c = message.chunk
            if c.index != chain.next_index or c.first_row != next_row:
                raise VerificationFailed(
                    f"chunk {c.index} (first row {c.first_row}) arrived where chunk "
                    f"{chain.next_index} (first row {next_row}) was due"
                )
            if chain.rows + c.row_count > cap:  # refused unopened, never handed on
                raise VerificationFailed(
                    f"the holder sent more than {cap} rows (its signed cap {start.max_rows}, "
                    f"{self._msg.max_rows} asked for): chunk {c.index} refused after "
                    f"{chain.rows} rows received"
                )
            try:
                plaintext = o._seal_keys.open(
                    domains.SEAL_RECORD_CHUNK,
                    c.sealed_rows,
                    chunk_context(holder, me, rid, c.index, c.first_row, c.row_count),
                )
            except (CryptoFailure, ValueError) as exc:
                raise VerificationFailed(f"chunk {c.index} could not be opened") from exc
            batch = open_column_batch(plaintext, c.index, c.row_count, allowed)
            chain.add(c.index, c.first_row, c.row_count, plaintext)
            next_row += c.row_count
            yield BulkChunk(c.index, c.first_row, batch, Cursor(rid, next_row).encode())
        raise VerificationFailed(
            f"the holder's stream ended after {chain.chunks} chunks without its signed end "
            "(truncated); resume with the last cursor"
        )
