"""gRPC servicer of the ``Ledger`` API (ledger.proto): checkpoints, proofs, entry pages.

Owns: translating Ledger API requests into calls on a ``Ledger`` (errors are
raised as GatewayError for the interceptor to map to a status), range checks
on every integer field, the bounds on what one call may return (``Limits``),
and the *scope* of what a caller may read:

- ``MemberScope`` (peer port): a federation member sees checkpoints and proofs,
  and only the entries of exchanges it was party to (counterparty = the
  member): what reconciliation needs, nothing about other members.
- ``AuditScope`` (service port, role ``audit``): every entry; each read is
  itself appended to the ledger (kind ``audit_read``) before it is answered,
  so a read that cannot be ledgered is refused.
- ``UnrestrictedScope``: every entry, nothing recorded; only for a server whose
  sole caller is the operator (tests, local tools).

Does not own: server construction, TLS, authentication or roles
(``gateway.server.app`` mounts ``LedgerServicer`` on both of the gateway's
servers; the interceptor checks the caller may call the Ledger API at all), or
any ledger logic (``gateway.ledger``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Final, Protocol

import grpc

from gateway import identifiers
from gateway._proto.dataexchange.gateway.v1 import ledger_pb2, ledger_pb2_grpc
from gateway.errors import InvalidArgument, NotFound, PermissionDenied
from gateway.ledger.entry import decode_entry
from gateway.ledger.events import LedgerEvent, clean_reason
from gateway.ledger.ledger import Ledger
from gateway.ledger.storage import EntryRow
from gateway.ledger.witness import WitnessStore
from gateway.limits import DEFAULT_LIMITS, Limits

MAX_INDEX: Final = 2**63 - 1


class LedgerScope(Protocol):
    def visible(self, row: EntryRow, who: str) -> bool:
        """May ``who`` see this entry's bytes?"""
        ...

    def record_read(self, who: str, method: str, detail: str) -> None:
        """Called before a read is answered; raise to refuse it."""
        ...


class MemberScope:
    """Peer port: entries whose counterparty is the calling member."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits

    def visible(self, row: EntryRow, who: str) -> bool:
        return decode_entry(row.entry, self._limits).event.counterparty == who

    def record_read(self, who: str, method: str, detail: str) -> None:
        return None


class AuditScope:
    """Service port, role ``audit``: everything; every read is ledgered first."""

    def __init__(
        self,
        me: str,
        ledger: Ledger,
        clock_ms: Callable[[], int] | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self._me = me
        self._ledger = ledger
        self._clock = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._limits = limits

    def visible(self, row: EntryRow, who: str) -> bool:
        return True

    def record_read(self, who: str, method: str, detail: str) -> None:
        self._ledger.append(
            LedgerEvent(
                kind="audit_read",
                role="holder",
                request_id=str(uuid.uuid4()),
                timestamp_ms=self._clock(),
                local=self._me,
                counterparty=self._me,
                service_system=who,
                dataset="ledger",
                purpose=method,
                decision="allow",
                reason=clean_reason(detail, self._limits),
            )
        )


class UnrestrictedScope:
    """Every entry, nothing recorded: only where the operator is the sole caller."""

    def visible(self, row: EntryRow, who: str) -> bool:
        return True

    def record_read(self, who: str, method: str, detail: str) -> None:
        return None


def _u63(name: str, value: int) -> int:
    if not 0 <= value <= MAX_INDEX:
        raise InvalidArgument.expected(name, f"an integer in [0, {MAX_INDEX}]", value)
    return value


class LedgerServicer(ledger_pb2_grpc.LedgerServicer):
    def __init__(
        self,
        ledger: Ledger,
        scope: LedgerScope,
        limits: Limits = DEFAULT_LIMITS,
        who: Callable[[], str] = lambda: "operator",
        witnessed: WitnessStore | None = None,
    ) -> None:
        self._ledger = ledger
        self._scope = scope
        self._limits = limits
        self._who = who
        self._witnessed = witnessed

    def GetWitnessedCheckpoint(
        self, request: ledger_pb2.GetWitnessedCheckpointRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.GetWitnessedCheckpointResponse:
        identifiers.origin(request.origin)
        self._scope.record_read(self._who(), "GetWitnessedCheckpoint", request.origin)
        state = self._witnessed.latest(request.origin) if self._witnessed else None
        if state is None:
            raise NotFound(f"this gateway never cosigned a checkpoint of {request.origin!r}")
        return ledger_pb2.GetWitnessedCheckpointResponse(
            checkpoint=state.note, tree_size=state.size, cosigned_ms=state.updated_ms
        )

    def _latest_size(self, need: int = 0) -> int:
        cp = self._ledger.latest_checkpoint()
        have = cp.checkpoint.size if cp else 0
        if have < need <= self._ledger.store.size() and self._ledger.public_key is not None:
            # Entries newer than the last checkpoint: sign one now (at most one
            # signature per new entry, so not a signing oracle).
            have = self._ledger.checkpoint_now().checkpoint.size
        return have

    def GetCheckpoint(
        self, request: ledger_pb2.GetCheckpointRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.GetCheckpointResponse:
        who = self._who()
        cp = self._ledger.latest_checkpoint()
        if cp is None:
            raise NotFound("no checkpoint issued yet")
        self._scope.record_read(who, "GetCheckpoint", f"checkpoint of size {cp.checkpoint.size}")
        return ledger_pb2.GetCheckpointResponse(
            checkpoint=cp.note,
            tree_size=cp.checkpoint.size,
            root_hash=cp.checkpoint.root,
            origin=cp.checkpoint.origin,
        )

    def GetInclusionProof(
        self, request: ledger_pb2.GetInclusionProofRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.GetInclusionProofResponse:
        who = self._who()
        which = request.WhichOneof("leaf")
        _u63("tree_size", request.tree_size)
        if which == "request_id":
            if len(request.request_id) > self._limits.max_identifier_len:
                raise InvalidArgument.expected(
                    "request_id length",
                    f"<= {self._limits.max_identifier_len}",
                    len(request.request_id),
                )
            found = [
                r
                for r in self._ledger.store.find_request(request.request_id)
                if self._scope.visible(r, who)
            ]
            if not found:
                raise NotFound("no ledger entry for that request id")
            index = found[0].index
        elif which == "index":
            index = _u63("index", request.index)
        else:
            raise InvalidArgument.expected("leaf", "index or request_id", "neither")
        size = request.tree_size or self._latest_size(index + 1)
        if index >= size:
            raise InvalidArgument.expected("index", f"< tree size {size}", index)
        proof = self._ledger.inclusion_proof(index, size)
        record = self._ledger.store.entries(index, index + 1)[0]
        if not self._scope.visible(record, who):
            raise PermissionDenied(
                f"entry {index} does not record an exchange with {who}; members see "
                "only entries of their own exchanges"
            )
        cps = [c for c in self._ledger.checkpoints() if c.checkpoint.size == size]
        self._scope.record_read(who, "GetInclusionProof", f"entry {index} at size {size}")
        return ledger_pb2.GetInclusionProofResponse(
            index=index,
            tree_size=size,
            leaf_hash=record.entry_hash,
            proof=proof,
            entry=record.entry,
            checkpoint=cps[-1].note if cps else "",
        )

    def GetConsistencyProof(
        self, request: ledger_pb2.GetConsistencyProofRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.GetConsistencyProofResponse:
        who = self._who()
        first = _u63("first_size", request.first_size)
        second = _u63("second_size", request.second_size) or self._latest_size()
        proof = self._ledger.consistency_proof(first, second)
        self._scope.record_read(who, "GetConsistencyProof", f"sizes {first} to {second}")
        return ledger_pb2.GetConsistencyProofResponse(
            first_size=first, second_size=second, proof=proof
        )

    def GetEntries(
        self, request: ledger_pb2.GetEntriesRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.GetEntriesResponse:
        who = self._who()
        start = _u63("start", request.start)
        cap = min(self._limits.max_page_entries, self._limits.max_proof_entries)
        limit = min(request.limit or cap, cap)
        size = self._ledger.store.size()
        stop = min(start + limit, size)
        rows = self._ledger.store.entries(start, stop) if start < size else []
        shown = [r for r in rows if self._scope.visible(r, who)]
        self._scope.record_read(
            who, "GetEntries", f"entries [{start}, {max(start, stop)}): {len(shown)} returned"
        )
        return ledger_pb2.GetEntriesResponse(
            entries=[
                ledger_pb2.LedgerEntry(index=r.index, entry=r.entry, entry_hash=r.entry_hash)
                for r in shown
            ],
            tree_size=size,
            next_start=max(start, stop),
        )


def add_to_server(
    server: grpc.Server,
    ledger: Ledger,
    limits: Limits = DEFAULT_LIMITS,
    *,
    scope: LedgerScope,
    who: Callable[[], str] = lambda: "operator",
    witnessed: WitnessStore | None = None,
) -> None:
    """Mount the Ledger API; ``who`` names the authenticated caller of the current RPC."""
    ledger_pb2_grpc.add_LedgerServicer_to_server(
        LedgerServicer(ledger, scope, limits, who, witnessed), server
    )
