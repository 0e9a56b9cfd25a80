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

class StreamRecordsRequest(_message.Message):
    __slots__ = ("holder_jurisdiction", "dataset", "purpose", "fields", "client_reference", "cursor", "columnar", "max_rows")
    HOLDER_JURISDICTION_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    COLUMNAR_FIELD_NUMBER: _ClassVar[int]
    MAX_ROWS_FIELD_NUMBER: _ClassVar[int]
    holder_jurisdiction: str
    dataset: str
    purpose: str
    fields: _containers.RepeatedScalarFieldContainer[str]
    client_reference: str
    cursor: str
    columnar: bool
    max_rows: int
    def __init__(self, holder_jurisdiction: _Optional[str] = ..., dataset: _Optional[str] = ..., purpose: _Optional[str] = ..., fields: _Optional[_Iterable[str]] = ..., client_reference: _Optional[str] = ..., cursor: _Optional[str] = ..., columnar: _Optional[bool] = ..., max_rows: _Optional[int] = ...) -> None: ...

class StreamRecordsResponse(_message.Message):
    __slots__ = ("started", "chunk", "completed")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    started: StreamStarted
    chunk: RecordChunk
    completed: StreamCompleted
    def __init__(self, started: _Optional[_Union[StreamStarted, _Mapping]] = ..., chunk: _Optional[_Union[RecordChunk, _Mapping]] = ..., completed: _Optional[_Union[StreamCompleted, _Mapping]] = ...) -> None: ...

class StreamStarted(_message.Message):
    __slots__ = ("request_id", "holder_jurisdiction", "dataset", "decision", "start_row", "max_rows")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    HOLDER_JURISDICTION_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    START_ROW_FIELD_NUMBER: _ClassVar[int]
    MAX_ROWS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    holder_jurisdiction: str
    dataset: str
    decision: _common_pb2.PolicyDecision
    start_row: int
    max_rows: int
    def __init__(self, request_id: _Optional[str] = ..., holder_jurisdiction: _Optional[str] = ..., dataset: _Optional[str] = ..., decision: _Optional[_Union[_common_pb2.PolicyDecision, _Mapping]] = ..., start_row: _Optional[int] = ..., max_rows: _Optional[int] = ...) -> None: ...

class RecordChunk(_message.Message):
    __slots__ = ("index", "first_row", "records", "cursor", "columns")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    FIRST_ROW_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    index: int
    first_row: int
    records: _containers.RepeatedCompositeFieldContainer[_common_pb2.Record]
    cursor: str
    columns: _common_pb2.ColumnBatch
    def __init__(self, index: _Optional[int] = ..., first_row: _Optional[int] = ..., records: _Optional[_Iterable[_Union[_common_pb2.Record, _Mapping]]] = ..., cursor: _Optional[str] = ..., columns: _Optional[_Union[_common_pb2.ColumnBatch, _Mapping]] = ...) -> None: ...

class StreamCompleted(_message.Message):
    __slots__ = ("row_count", "chunk_count", "commitment", "truncated", "truncated_reason", "cursor", "receipt")
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    COMMITMENT_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_REASON_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    row_count: int
    chunk_count: int
    commitment: str
    truncated: bool
    truncated_reason: str
    cursor: str
    receipt: _common_pb2.LedgerReceipt
    def __init__(self, row_count: _Optional[int] = ..., chunk_count: _Optional[int] = ..., commitment: _Optional[str] = ..., truncated: _Optional[bool] = ..., truncated_reason: _Optional[str] = ..., cursor: _Optional[str] = ..., receipt: _Optional[_Union[_common_pb2.LedgerReceipt, _Mapping]] = ...) -> None: ...
