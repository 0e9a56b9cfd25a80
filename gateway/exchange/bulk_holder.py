"""The holding gateway's side of a streamed bulk transfer.

Owns: authenticating the peer's stream request (``PeerResponder``), the same
identifier checks and policy decision as a record request (through
``RecordHolder.judge``), reading the source in column batches from the
requested row (at most the agreement's per-transfer cap, or the rows the
requester asked for, ``max_rows``, if fewer), transforming each batch column by column and charging it (the
daily quota is charged chunk by chunk, so concurrent transfers cannot
overspend it), sealing each chunk (a ``ColumnBatch``) to the requester bound
to request and position, the hash chain, the signed first and last messages,
and the transfer's ledger entries.

Ledgering (before release): a refused request is one ``refusal`` entry. An
allowed transfer is two ``transfer`` entries with its request id: the
*started* entry (``stream_phase=started``: the request digest and requester's
signature, the decision, the holder's signed start) is durable before the
signed start or any chunk leaves, so a holder killed mid-stream still has the
transfer on record; the *closing* entry (``stream_phase=closed``) when it ends,
before the signed end leaves: complete (rows, chunks, commitment, the holder's
signed end) or interrupted (rows sent so far, the chain head so far,
``complete=false``, the holder's signature over an end message made for the
ledger, never sent). A started entry without a closing one is a transfer cut
short by a holder crash (``gateway audit reconcile`` lists it as interrupted).
The started entry (and a refusal) goes through the holder's subject indexer
(``RecordHolder.append``): a streamed transfer appears in every person's
history as covering the whole dataset or a pseudonymised extract, like a
unary bulk read.

Memory is bounded by one batch: gRPC pulls the next chunk only when the
previous one was sent (flow control), and the source reads through a cursor.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator

from gateway import crypto, domains, identifiers
from gateway._proto.dataexchange.gateway.v1 import peer_pb2
from gateway.catalogue import Catalogue
from gateway.errors import InvalidArgument, QuotaExceeded
from gateway.exchange.bulk import ChunkChain, chunk_context, column_batch
from gateway.exchange.holder import RecordHolder
from gateway.exchange.peer import PeerRequest, PeerResponder
from gateway.exchange.records import decision_to_proto, refusal_from
from gateway.ledger.events import (
    STREAM_CLOSED,
    STREAM_PHASE,
    STREAM_STARTED,
    LedgerWriter,
    safe_identifier,
)
from gateway.limits import Limits
from gateway.policy.api import AccessRequest, Decision, PolicyGate
from gateway.sources import DataSource, RowBatch
from gateway.trust import TrustBundle

log = logging.getLogger(__name__)


class BulkHolder:
    """Holding gateway's side of a streamed bulk transfer."""

    def __init__(
        self,
        records: RecordHolder,
        responder: PeerResponder,
        bundle: Callable[[], TrustBundle],
        catalogue: Callable[[], Catalogue],
        policy: PolicyGate,
        source: DataSource,
        ledger: LedgerWriter,
        clock_ms: Callable[[], int],
        limits: Limits,
        rng: crypto.Rng = os.urandom,
    ) -> None:
        self._records = records
        self._responder = responder
        self._bundle = bundle
        self._catalogue = catalogue
        self._policy = policy
        self._source = source
        self._ledger = ledger
        self._clock = clock_ms
        self._limits = limits
        self._rng = rng
        self._slots = threading.BoundedSemaphore(limits.max_concurrent_streams)

    def stream_records(
        self, envelope: peer_pb2.SignedEnvelope, tls_identity: str | None
    ) -> Iterator[peer_pb2.PeerStreamMessage]:
        # Unauthenticated input: errors propagate as gRPC statuses, nothing is ledgered.
        request = self._responder.open(
            envelope, domains.PEER_STREAM_REQUEST, peer_pb2.PeerStreamRequest, tls_identity
        )
        msg = request.message

        def stream_problem() -> InvalidArgument | None:
            if msg.start_row > self._limits.max_stream_start_row:
                return InvalidArgument.expected(
                    "start_row", f"at most {self._limits.max_stream_start_row}", msg.start_row
                )
            if msg.resume_of and not identifiers.is_request_id(msg.resume_of):
                return InvalidArgument(
                    "resume_of: expected the request id (UUID) of the interrupted transfer"
                )
            return None

        # The same identifier checks and decision as a record request (no subjects).
        access, decision = self._records.judge(request, 0, stream_problem)
        if decision.allowed and not self._slots.acquire(blocking=False):
            decision = refusal_from(
                decision,
                QuotaExceeded(
                    f"this gateway already serves {self._limits.max_concurrent_streams} bulk "
                    "transfers; retry later"
                ),
            )
        if not decision.allowed:
            yield self._refuse(request, decision)
            return
        try:
            yield from self._transfer(request, access, decision)
        finally:
            self._slots.release()

    def _refuse(
        self, request: PeerRequest[peer_pb2.PeerStreamRequest], decision: Decision
    ) -> peer_pb2.PeerStreamMessage:
        start = peer_pb2.PeerStreamStart(
            decision=decision_to_proto(decision),
            error_code=decision.error_code or "PERMISSION_DENIED",
            start_row=request.message.start_row,
        )
        signed = self._responder.respond(request, start, domains.PEER_STREAM_START)
        self._append(request, decision, signed, rows=0, chain=None)
        return peer_pb2.PeerStreamMessage(start=signed)

    def _transfer(
        self,
        request: PeerRequest[peer_pb2.PeerStreamRequest],
        access: AccessRequest,
        decision: Decision,
    ) -> Iterator[peer_pb2.PeerStreamMessage]:
        msg = request.message
        me, requester = self._responder.me, request.sender
        cap = min(decision.max_records, self._limits.max_stream_rows_per_request)
        # The requester accepts no more than it asked for (0: no cap of its own).
        cap_reason = f"the agreement's cap of {cap} rows per transfer"
        if 0 < msg.max_rows < cap:
            cap, cap_reason = msg.max_rows, f"the request's cap of {msg.max_rows} rows"
        start = peer_pb2.PeerStreamStart(
            decision=decision_to_proto(decision), start_row=msg.start_row, max_rows=cap
        )
        signed_start = self._responder.respond(request, start, domains.PEER_STREAM_START)
        recipient_key = self._bundle().member(requester).seal_key
        chain = ChunkChain(request.opened.pae_digest, crypto.suite_of(recipient_key).digest)
        dataset = self._catalogue().dataset(msg.dataset)
        columns = [f.name for f in decision.fields]
        row = msg.start_row
        truncated_reason = ""
        closed = False
        # Ledger before release: the started entry is durable before anything leaves.
        self._append(request, decision, signed_start, rows=0, chain=None, phase=STREAM_STARTED)
        batches: Iterator[RowBatch] = iter(())
        try:
            # One row past the cap tells a capped transfer from a finished one.
            batches = self._source.stream(
                dataset, columns, msg.start_row, cap + 1, self._limits.stream_chunk_rows
            )
            yield peer_pb2.PeerStreamMessage(start=signed_start)
            for batch in batches:
                room = cap - chain.rows
                left = self._policy.quota_left(decision, access)
                if left < min(room, len(batch)):
                    room, truncated_reason = left, "the agreement's daily quota"
                rows = batch.head(room)
                if not rows:
                    truncated_reason = truncated_reason or cap_reason
                    break
                try:
                    charged = self._policy.charge(decision, access, len(rows))
                except QuotaExceeded as exc:
                    truncated_reason = f"the agreement's daily quota ({exc})"
                    break
                try:
                    released = self._policy.release_columns(
                        decision, access, rows.as_columns(), len(rows)
                    )
                except BaseException:
                    self._policy.refund(charged)  # this chunk never leaves
                    raise
                index, n = chain.next_index, len(rows)
                plaintext = column_batch(n, released)
                sealed = crypto.seal(
                    recipient_key,
                    domains.SEAL_RECORD_CHUNK,
                    plaintext,
                    chunk_context(me, requester, request.request_id, index, row, n),
                    self._rng,
                )
                chain.add(index, row, n, plaintext)
                row += n
                yield peer_pb2.PeerStreamMessage(
                    chunk=peer_pb2.SealedChunk(
                        index=index, first_row=row - n, row_count=n, sealed_rows=sealed
                    )
                )
                if len(batch) > len(rows):
                    truncated_reason = truncated_reason or cap_reason
                    break
            _close(batches)
            signed_end = self._end(request, chain, row, truncated_reason)
            # Ledger the closing entry before the signed commitment leaves.
            self._append(
                request,
                decision,
                signed_end,
                rows=chain.rows,
                chain=chain,
                phase=STREAM_CLOSED,
                extra=(("complete", "true"), ("truncated", "true" if truncated_reason else "")),
            )
            closed = True
            yield peer_pb2.PeerStreamMessage(end=signed_end)
        finally:
            _close(batches)
            if not closed:
                # Interrupted (requester went away, source failed): record what left, under
                # the holder's signature over the commitment so far (never sent).
                log.info(
                    "bulk transfer %s interrupted after %d rows", request.request_id, chain.rows
                )
                try:
                    self._append(
                        request,
                        decision,
                        self._end(request, chain, row, "interrupted"),
                        rows=chain.rows,
                        chain=chain,
                        phase=STREAM_CLOSED,
                        extra=(("complete", "false"),),
                    )
                except Exception:
                    log.exception("could not ledger interrupted transfer %s", request.request_id)

    def _end(
        self,
        request: PeerRequest[peer_pb2.PeerStreamRequest],
        chain: ChunkChain,
        next_row: int,
        truncated_reason: str,
    ) -> peer_pb2.SignedEnvelope:
        end = peer_pb2.PeerStreamEnd(
            chunk_count=chain.chunks,
            row_count=chain.rows,
            commitment=chain.head,
            truncated=bool(truncated_reason),
            truncated_reason=truncated_reason,
            next_row=next_row,
        )
        return self._responder.respond(request, end, domains.PEER_STREAM_END)

    def _append(
        self,
        request: PeerRequest[peer_pb2.PeerStreamRequest],
        decision: Decision,
        signed: peer_pb2.SignedEnvelope,
        rows: int,
        chain: ChunkChain | None,
        phase: str = "",
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        msg = request.message
        details = (
            ("stream", "true"),
            (STREAM_PHASE, phase),
            ("start_row", str(msg.start_row) if msg.start_row else ""),
            (
                "resume_of",
                safe_identifier(msg.resume_of, identifiers.is_request_id) if msg.resume_of else "",
            ),
            ("chunks", str(chain.chunks) if chain else ""),
            *extra,
        )
        event = self._records.event(
            request,
            decision,
            signed,
            record_count=rows,
            payload_digest=chain.head.hex() if chain else "",
            details=details,
        )
        if phase == STREAM_CLOSED:
            # The started entry already committed to whom the transfer concerns.
            self._ledger.append(event)
        else:
            self._records.append(event, self._records.concerned(msg.dataset, (), decision))


def _close(it: Iterator[object]) -> None:
    close = getattr(it, "close", None)
    if close is not None:
        close()
