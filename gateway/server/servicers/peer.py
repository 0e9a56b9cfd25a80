"""gRPC servicer of the gateway-to-gateway ``PeerExchange`` API (peer.proto).

Owns: ``PeerExchangeServicer``: hands each signed envelope and the
authenticated member (``caller()``, from its mutual-TLS certificate) to the
record holder, the streamed bulk holder, the statistics holder, the witness or the
subject-access holder. Authentication and error
mapping happen in ``gateway.server.interceptor``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc

from gateway._proto.dataexchange.gateway.v1 import peer_pb2, peer_pb2_grpc
from gateway.errors import NotFound
from gateway.exchange.bulk_holder import BulkHolder
from gateway.exchange.holder import RecordHolder
from gateway.server.interceptor import caller

PeerHandler = Callable[[peer_pb2.SignedEnvelope, str], peer_pb2.SignedEnvelope]


class PeerExchangeServicer(peer_pb2_grpc.PeerExchangeServicer):
    def __init__(
        self,
        holder: RecordHolder,
        statistics: PeerHandler | None = None,
        witness: PeerHandler | None = None,
        subject: PeerHandler | None = None,
        receipts: PeerHandler | None = None,
        bulk: BulkHolder | None = None,
    ) -> None:
        self._holder = holder
        self._bulk = bulk
        self._statistics = statistics
        self._witness = witness
        self._subject = subject
        self._receipts = receipts

    def FetchRecords(
        self, request: peer_pb2.SignedEnvelope, context: grpc.ServicerContext
    ) -> peer_pb2.SignedEnvelope:
        return self._holder.fetch_records(request, caller())

    def ComputeStatistic(
        self, request: peer_pb2.SignedEnvelope, context: grpc.ServicerContext
    ) -> peer_pb2.SignedEnvelope:
        if self._statistics is None:
            raise NotFound("this gateway does not answer statistics queries")
        return self._statistics(request, caller())

    def Witness(
        self, request: peer_pb2.SignedEnvelope, context: grpc.ServicerContext
    ) -> peer_pb2.SignedEnvelope:
        if self._witness is None:
            raise NotFound("this gateway does not witness checkpoints")
        return self._witness(request, caller())

    def SubjectHistory(
        self, request: peer_pb2.SignedEnvelope, context: grpc.ServicerContext
    ) -> peer_pb2.SignedEnvelope:
        if self._subject is None:
            raise NotFound("this gateway does not answer subject-access requests")
        return self._subject(request, caller())

    def Acknowledge(
        self, request: peer_pb2.SignedEnvelope, context: grpc.ServicerContext
    ) -> peer_pb2.SignedEnvelope:
        if self._receipts is None:
            raise NotFound("this gateway does not accept receipts")
        return self._receipts(request, caller())

    def StreamRecords(
        self, request: peer_pb2.SignedEnvelope, context: grpc.ServicerContext
    ) -> Iterator[peer_pb2.PeerStreamMessage]:
        if self._bulk is None:
            raise NotFound("this gateway does not stream bulk transfers")
        yield from self._bulk.stream_records(request, caller())
