"""gRPC servicer of the service-system ``RecordExchange`` API (service.proto).

Owns: ``RecordExchangeServicer``: protobuf <-> ``RecordsQuery`` /
``RecordsResult``, the caller from ``caller()``. Authentication and error
mapping happen in ``gateway.server.interceptor``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc

from gateway._proto.dataexchange.gateway.v1 import (
    common_pb2,
    service_pb2,
    service_pb2_grpc,
)
from gateway.errors import NotFound
from gateway.exchange.bulk import BulkQuery
from gateway.exchange.bulk_requester import BulkChunk, BulkCompleted, BulkRequester, BulkStarted
from gateway.exchange.records import RecordsQuery
from gateway.exchange.requester import RecordRequester
from gateway.ledger.events import AppendReceipt
from gateway.server.interceptor import caller
from gateway.trust import TrustBundle


def _receipt(jurisdiction: str, receipt: AppendReceipt) -> common_pb2.LedgerReceipt:
    """Where the caller's gateway ledgered the exchange."""
    return common_pb2.LedgerReceipt(
        jurisdiction=jurisdiction, index=receipt.index, entry_hash=receipt.entry_hash
    )


class RecordExchangeServicer(service_pb2_grpc.RecordExchangeServicer):
    def __init__(
        self,
        requester: RecordRequester,
        bundle: Callable[[], TrustBundle],
        bulk: BulkRequester | None = None,
    ) -> None:
        self._requester = requester
        self._bundle = bundle
        self._bulk = bulk

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
            records=result.records,
            decision=result.decision,
            receipt=_receipt(result.local, result.receipt),
            truncated=result.truncated,
        )

    def StreamRecords(
        self, request: service_pb2.StreamRecordsRequest, context: grpc.ServicerContext
    ) -> Iterator[service_pb2.StreamRecordsResponse]:
        if self._bulk is None:
            raise NotFound("this gateway does not stream bulk transfers")
        query = BulkQuery(
            holder=request.holder_jurisdiction,
            dataset=request.dataset,
            purpose=request.purpose,
            fields=tuple(request.fields),
            client_reference=request.client_reference,
            cursor=request.cursor,
            max_rows=request.max_rows,
        )
        for event in self._bulk.stream_records(caller(), query):
            if isinstance(event, BulkChunk):
                chunk = service_pb2.RecordChunk(
                    index=event.index, first_row=event.first_row, cursor=event.cursor
                )
                if request.columnar:
                    chunk.columns.CopyFrom(event.columns)
                else:
                    add = chunk.records.add
                    for row in event.rows():
                        add().fields.update(row)  # half the cost of Record(fields=row)
                yield service_pb2.StreamRecordsResponse(chunk=chunk)
            elif isinstance(event, BulkStarted):
                yield service_pb2.StreamRecordsResponse(
                    started=service_pb2.StreamStarted(
                        request_id=event.request_id,
                        holder_jurisdiction=event.holder,
                        dataset=event.dataset,
                        decision=event.decision,
                        start_row=event.start_row,
                        max_rows=event.max_rows,
                    )
                )
            elif isinstance(event, BulkCompleted):
                yield service_pb2.StreamRecordsResponse(
                    completed=service_pb2.StreamCompleted(
                        row_count=event.row_count,
                        chunk_count=event.chunk_count,
                        commitment=event.commitment,
                        truncated=event.truncated,
                        truncated_reason=event.truncated_reason,
                        cursor=event.cursor,
                        receipt=_receipt(event.local, event.receipt),
                    )
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
