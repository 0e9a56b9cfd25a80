"""gRPC servicer of the ``Ledger`` API (ledger.proto): checkpoints, proofs, entry pages.

Owns: translating Ledger API requests into calls on a ``Ledger`` and the
bounds on what one call may return (``Limits``). Raises the error tree (a
missing entry is ``NotFound``); the one interceptor maps it to a status. Does
not own: server construction, TLS or authentication (``gateway.server.app``
mounts ``LedgerServicer`` on both of the gateway's servers), or any ledger
logic (``gateway.ledger``).
"""

from __future__ import annotations

import grpc

from gateway._proto.dataexchange.gateway.v1 import ledger_pb2, ledger_pb2_grpc
from gateway.errors import InvalidArgument, NotFound
from gateway.ledger.ledger import Ledger
from gateway.ledger.witness import WitnessStore
from gateway.limits import DEFAULT_LIMITS, Limits


class LedgerServicer(ledger_pb2_grpc.LedgerServicer):
    def __init__(
        self,
        ledger: Ledger,
        limits: Limits = DEFAULT_LIMITS,
        witnessed: WitnessStore | None = None,
    ) -> None:
        self._ledger = ledger
        self._limits = limits
        self._witnessed = witnessed

    def GetWitnessedCheckpoint(
        self, request: ledger_pb2.GetWitnessedCheckpointRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.GetWitnessedCheckpointResponse:
        if len(request.origin) > 255:
            raise InvalidArgument.expected("origin length", "<= 255", len(request.origin))
        state = self._witnessed.latest(request.origin) if self._witnessed else None
        if state is None:
            raise NotFound(f"this gateway never cosigned a checkpoint of {request.origin!r}")
        return ledger_pb2.GetWitnessedCheckpointResponse(
            checkpoint=state.note, tree_size=state.size, cosigned_ms=state.updated_ms
        )

    def _latest_size(self, need: int = 0) -> int:
        cp = self._ledger.latest_checkpoint()
        have = cp.checkpoint.size if cp else 0
        if have < need and self._ledger.public_key is not None:
            # Entries newer than the last checkpoint: sign one now (at most one
            # signature per new entry, so not a signing oracle).
            have = self._ledger.checkpoint_now().checkpoint.size
        return have

    def GetCheckpoint(
        self, request: ledger_pb2.GetCheckpointRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.GetCheckpointResponse:
        cp = self._ledger.latest_checkpoint()
        if cp is None:
            raise NotFound("no checkpoint issued yet")
        return ledger_pb2.GetCheckpointResponse(
            checkpoint=cp.note,
            tree_size=cp.checkpoint.size,
            root_hash=cp.checkpoint.root,
            origin=cp.checkpoint.origin,
        )

    def GetInclusionProof(
        self, request: ledger_pb2.GetInclusionProofRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.GetInclusionProofResponse:
        which = request.WhichOneof("leaf")
        if which == "request_id":
            if len(request.request_id) > self._limits.max_identifier_len:
                raise InvalidArgument.expected(
                    "request_id length",
                    f"<= {self._limits.max_identifier_len}",
                    len(request.request_id),
                )
            found = self._ledger.find(request.request_id)
            if not found:
                raise NotFound("no ledger entry for that request id")
            index = found[0].index
        elif which == "index":
            index = request.index
        else:
            raise InvalidArgument.expected("leaf", "index or request_id", "neither")
        size = request.tree_size or self._latest_size(index + 1)
        if index >= size:
            raise InvalidArgument.expected("index", f"< tree size {size}", index)
        proof = self._ledger.inclusion_proof(index, size)
        record = self._ledger.store.entries(index, index + 1)[0]
        cps = [c for c in self._ledger.checkpoints() if c.checkpoint.size == size]
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
        second = request.second_size or self._latest_size()
        proof = self._ledger.consistency_proof(request.first_size, second)
        return ledger_pb2.GetConsistencyProofResponse(
            first_size=request.first_size, second_size=second, proof=proof
        )

    def GetEntries(
        self, request: ledger_pb2.GetEntriesRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.GetEntriesResponse:
        cap = min(self._limits.max_page_entries, self._limits.max_proof_entries)
        limit = min(request.limit or cap, cap)
        size = self._ledger.store.size()
        rows = self._ledger.store.entries(request.start, min(request.start + limit, size))
        return ledger_pb2.GetEntriesResponse(
            entries=[
                ledger_pb2.LedgerEntry(index=r.index, entry=r.entry, entry_hash=r.entry_hash)
                for r in rows
            ],
            tree_size=size,
        )


def add_to_server(
    server: grpc.Server,
    ledger: Ledger,
    limits: Limits = DEFAULT_LIMITS,
    witnessed: WitnessStore | None = None,
) -> None:
    ledger_pb2_grpc.add_LedgerServicer_to_server(LedgerServicer(ledger, limits, witnessed), server)
