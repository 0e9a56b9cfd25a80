from gateway._proto.dataexchange.gateway.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetRecordsRequest(_message.Message):
    __slots__ = ("holder_jurisdiction", "dataset", "purpose", "subject_ids", "fields", "client_reference")
    HOLDER_JURISDICTION_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    holder_jurisdiction: str
    dataset: str
    purpose: str
    subject_ids: _containers.RepeatedScalarFieldContainer[str]
    fields: _containers.RepeatedScalarFieldContainer[str]
    client_reference: str
    def __init__(self, holder_jurisdiction: _Optional[str] = ..., dataset: _Optional[str] = ..., purpose: _Optional[str] = ..., subject_ids: _Optional[_Iterable[str]] = ..., fields: _Optional[_Iterable[str]] = ..., client_reference: _Optional[str] = ...) -> None: ...

class GetRecordsResponse(_message.Message):
    __slots__ = ("request_id", "holder_jurisdiction", "dataset", "records", "decision", "receipt", "truncated")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    HOLDER_JURISDICTION_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    holder_jurisdiction: str
    dataset: str
    records: _containers.RepeatedCompositeFieldContainer[_common_pb2.Record]
    decision: _common_pb2.PolicyDecision
    receipt: _common_pb2.LedgerReceipt
    truncated: bool
    def __init__(self, request_id: _Optional[str] = ..., holder_jurisdiction: _Optional[str] = ..., dataset: _Optional[str] = ..., records: _Optional[_Iterable[_Union[_common_pb2.Record, _Mapping]]] = ..., decision: _Optional[_Union[_common_pb2.PolicyDecision, _Mapping]] = ..., receipt: _Optional[_Union[_common_pb2.LedgerReceipt, _Mapping]] = ..., truncated: _Optional[bool] = ...) -> None: ...

class ListDatasetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDatasetsResponse(_message.Message):
    __slots__ = ("members",)
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[MemberDatasets]
    def __init__(self, members: _Optional[_Iterable[_Union[MemberDatasets, _Mapping]]] = ...) -> None: ...

class MemberDatasets(_message.Message):
    __slots__ = ("jurisdiction", "name", "datasets")
    JURISDICTION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    jurisdiction: str
    name: str
    datasets: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, jurisdiction: _Optional[str] = ..., name: _Optional[str] = ..., datasets: _Optional[_Iterable[str]] = ...) -> None: ...
