"""gRPC servicer of the service-system ``SubjectAccess`` API (subject.proto).

Owns: ``SubjectAccessServicer``: protobuf <-> ``SubjectQuery`` /
``AccessHistory``, the caller from ``caller()``. Who may call it (the
``subject_access`` role), authentication and error mapping happen around it
(``gateway.server.interceptor``). The subject id is never logged or echoed.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

from gateway._proto.dataexchange.gateway.v1 import common_pb2, subject_pb2, subject_pb2_grpc
from gateway.subject.model import AccessHistory, AccessItem
from gateway.subject.requester import SubjectAccessCoordinator, SubjectQuery

_STATUS = {
    "answered": subject_pb2.JurisdictionAnswer.ANSWERED,
    "missing": subject_pb2.JurisdictionAnswer.MISSING,
    "not_participating": subject_pb2.JurisdictionAnswer.NOT_PARTICIPATING,
    "failed_verification": subject_pb2.JurisdictionAnswer.FAILED_VERIFICATION,
}


def item_to_proto(i: AccessItem) -> subject_pb2.AccessEvent:
    return subject_pb2.AccessEvent(
        timestamp_ms=i.timestamp_ms,
        holder_jurisdiction=i.holder,
        requester_jurisdiction=i.requester,
        service_system=i.service_system,
        dataset=i.dataset,
        purpose=i.purpose,
        legal_basis=i.legal_basis,
        fields=[common_pb2.FieldRelease(name=n, transform=t) for n, t in i.fields],
        agreement_id=i.agreement_id,
        kind=i.kind,
        reason=i.reason,
        record_count=i.record_count,
        request_id=i.request_id,
        proof=subject_pb2.EntryProof(
            index=i.entry_index,
            entry_hash=i.entry_hash,
            tree_size=i.tree_size,
            cosigned_by=i.cosigned_by,
        ),
    )


def history_to_proto(h: AccessHistory) -> subject_pb2.AccessHistoryResponse:
    return subject_pb2.AccessHistoryResponse(
        request_id=h.request_id,
        events=[item_to_proto(i) for i in h.items],
        jurisdictions=[
            subject_pb2.JurisdictionAnswer(
                jurisdiction=j.jurisdiction,
                name=j.name,
                status=_STATUS[j.status],
                reason=j.reason,
                events=len(j.items),
                truncated=j.truncated,
            )
            for j in h.jurisdictions
        ],
    )


class SubjectAccessServicer(subject_pb2_grpc.SubjectAccessServicer):
    def __init__(self, coordinator: SubjectAccessCoordinator, identify: Callable[[], str]) -> None:
        self._core = coordinator
        self._identify = identify

    def GetAccessHistory(
        self, request: subject_pb2.AccessHistoryRequest, context: grpc.ServicerContext
    ) -> subject_pb2.AccessHistoryResponse:
        query = SubjectQuery(
            subject_id=request.subject_id,
            jurisdictions=tuple(request.jurisdictions),
            client_reference=request.client_reference,
        )
        return history_to_proto(self._core.history(self._identify(), query))
