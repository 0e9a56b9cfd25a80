"""gRPC servicer of the service-system ``RecordExchange`` API (service.proto).

Owns: ``RecordExchangeServicer``: protobuf <-> ``RecordsQuery`` /
``RecordsResult``, the caller from ``caller()``. Authentication and error
mapping happen in ``gateway.server.interceptor``.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

from gateway._proto.dataexchange.gateway.v1 import (
    common_pb2,
    service_pb2,
    service_pb2_grpc,
)
from gateway.exchange.records import RecordsQuery
from gateway.exchange.requester import RecordRequester
from gateway.server.interceptor import caller
from gateway.trust import TrustBundle


class RecordExchangeServicer(service_pb2_grpc.RecordExchangeServicer):
    def __init__(self, requester: RecordRequester, bundle: Callable[[], TrustBundle]) -> None:
        self._requester = requester
        self._bundle = bundle

    def GetRecords(
        self, request: service_pb2.GetRecordsRequest, context: grpc.ServicerContext
    ) -> service_pb2.GetRecordsResponse:
        query = RecordsQuery(
            holder=request.holder_jurisdiction,
            dataset=request.dataset,
            purpose=request.purpose,
            subject_ids=tuple(request.subject_ids),
            fields=tuple(request.fields),
            client_reference=request.client_reference,
        )
        result = self._requester.get_records(caller(), query)
        return service_pb2.GetRecordsResponse(
            request_id=result.request_id,
            holder_jurisdiction=result.holder,
            dataset=result.dataset,
            records=[common_pb2.Record(fields=r) for r in result.records],
            decision=result.decision,
            receipt=common_pb2.LedgerReceipt(
                jurisdiction=result.local,
                index=result.receipt.index,
                entry_hash=result.receipt.entry_hash,
            ),
            truncated=result.truncated,
        )

    def ListDatasets(
        self, request: service_pb2.ListDatasetsRequest, context: grpc.ServicerContext
    ) -> service_pb2.ListDatasetsResponse:
        bundle = self._bundle()
        return service_pb2.ListDatasetsResponse(
            members=[
                service_pb2.MemberDatasets(
                    jurisdiction=m.jurisdiction, name=m.name, datasets=list(m.datasets)
                )
                for m in bundle.members
            ]
        )
