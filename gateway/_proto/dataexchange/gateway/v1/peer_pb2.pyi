from gateway._proto.dataexchange.gateway.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SignedEnvelope(_message.Message):
    __slots__ = ("payload_type", "payload", "signature", "signer")
    PAYLOAD_TYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SIGNER_FIELD_NUMBER: _ClassVar[int]
    payload_type: str
    payload: bytes
    signature: bytes
    signer: str
    def __init__(self, payload_type: _Optional[str] = ..., payload: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., signer: _Optional[str] = ...) -> None: ...

class PeerHeader(_message.Message):
    __slots__ = ("sender", "recipient", "request_id", "timestamp_ms", "request_digest", "bundle_version")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    sender: str
    recipient: str
    request_id: str
    timestamp_ms: int
    request_digest: bytes
    bundle_version: int
    def __init__(self, sender: _Optional[str] = ..., recipient: _Optional[str] = ..., request_id: _Optional[str] = ..., timestamp_ms: _Optional[int] = ..., request_digest: _Optional[bytes] = ..., bundle_version: _Optional[int] = ...) -> None: ...

class PeerRecordRequest(_message.Message):
    __slots__ = ("header", "service_system", "dataset", "purpose", "fields", "subject_count", "sealed_query", "client_reference", "reply_seal_key")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    SERVICE_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_COUNT_FIELD_NUMBER: _ClassVar[int]
    SEALED_QUERY_FIELD_NUMBER: _ClassVar[int]
    CLIENT_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    REPLY_SEAL_KEY_FIELD_NUMBER: _ClassVar[int]
    header: PeerHeader
    service_system: str
    dataset: str
    purpose: str
    fields: _containers.RepeatedScalarFieldContainer[str]
    subject_count: int
    sealed_query: bytes
    client_reference: str
    reply_seal_key: bytes
    def __init__(self, header: _Optional[_Union[PeerHeader, _Mapping]] = ..., service_system: _Optional[str] = ..., dataset: _Optional[str] = ..., purpose: _Optional[str] = ..., fields: _Optional[_Iterable[str]] = ..., subject_count: _Optional[int] = ..., sealed_query: _Optional[bytes] = ..., client_reference: _Optional[str] = ..., reply_seal_key: _Optional[bytes] = ...) -> None: ...

class RecordQuery(_message.Message):
    __slots__ = ("subject_ids",)
    SUBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    subject_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, subject_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class PeerRecordResponse(_message.Message):
    __slots__ = ("header", "decision", "record_count", "sealed_records", "payload_digest", "error_code", "truncated")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    RECORD_COUNT_FIELD_NUMBER: _ClassVar[int]
    SEALED_RECORDS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_DIGEST_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    header: PeerHeader
    decision: _common_pb2.PolicyDecision
    record_count: int
    sealed_records: bytes
    payload_digest: bytes
    error_code: str
    truncated: bool
    def __init__(self, header: _Optional[_Union[PeerHeader, _Mapping]] = ..., decision: _Optional[_Union[_common_pb2.PolicyDecision, _Mapping]] = ..., record_count: _Optional[int] = ..., sealed_records: _Optional[bytes] = ..., payload_digest: _Optional[bytes] = ..., error_code: _Optional[str] = ..., truncated: _Optional[bool] = ...) -> None: ...

class RecordBatch(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[_common_pb2.Record]
    def __init__(self, records: _Optional[_Iterable[_Union[_common_pb2.Record, _Mapping]]] = ...) -> None: ...

class ExchangeReceipt(_message.Message):
    __slots__ = ("request_id", "request_digest", "response_digest", "signature")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    request_digest: bytes
    response_digest: bytes
    signature: bytes
    def __init__(self, request_id: _Optional[str] = ..., request_digest: _Optional[bytes] = ..., response_digest: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class PeerReceiptBatch(_message.Message):
    __slots__ = ("header", "receipts")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    RECEIPTS_FIELD_NUMBER: _ClassVar[int]
    header: PeerHeader
    receipts: _containers.RepeatedCompositeFieldContainer[ExchangeReceipt]
    def __init__(self, header: _Optional[_Union[PeerHeader, _Mapping]] = ..., receipts: _Optional[_Iterable[_Union[ExchangeReceipt, _Mapping]]] = ...) -> None: ...

class PeerReceiptAck(_message.Message):
    __slots__ = ("header", "recorded", "refused")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    header: PeerHeader
    recorded: int
    refused: int
    def __init__(self, header: _Optional[_Union[PeerHeader, _Mapping]] = ..., recorded: _Optional[int] = ..., refused: _Optional[int] = ...) -> None: ...

class PeerStreamRequest(_message.Message):
    __slots__ = ("header", "service_system", "dataset", "purpose", "fields", "client_reference", "start_row", "resume_of", "max_rows")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    SERVICE_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    START_ROW_FIELD_NUMBER: _ClassVar[int]
    RESUME_OF_FIELD_NUMBER: _ClassVar[int]
    MAX_ROWS_FIELD_NUMBER: _ClassVar[int]
    header: PeerHeader
    service_system: str
    dataset: str
    purpose: str
    fields: _containers.RepeatedScalarFieldContainer[str]
    client_reference: str
    start_row: int
    resume_of: str
    max_rows: int
    def __init__(self, header: _Optional[_Union[PeerHeader, _Mapping]] = ..., service_system: _Optional[str] = ..., dataset: _Optional[str] = ..., purpose: _Optional[str] = ..., fields: _Optional[_Iterable[str]] = ..., client_reference: _Optional[str] = ..., start_row: _Optional[int] = ..., resume_of: _Optional[str] = ..., max_rows: _Optional[int] = ...) -> None: ...

class PeerStreamMessage(_message.Message):
    __slots__ = ("start", "chunk", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: SignedEnvelope
    chunk: SealedChunk
    end: SignedEnvelope
    def __init__(self, start: _Optional[_Union[SignedEnvelope, _Mapping]] = ..., chunk: _Optional[_Union[SealedChunk, _Mapping]] = ..., end: _Optional[_Union[SignedEnvelope, _Mapping]] = ...) -> None: ...

class PeerStreamStart(_message.Message):
    __slots__ = ("header", "decision", "error_code", "start_row", "max_rows")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    START_ROW_FIELD_NUMBER: _ClassVar[int]
    MAX_ROWS_FIELD_NUMBER: _ClassVar[int]
    header: PeerHeader
    decision: _common_pb2.PolicyDecision
    error_code: str
    start_row: int
    max_rows: int
    def __init__(self, header: _Optional[_Union[PeerHeader, _Mapping]] = ..., decision: _Optional[_Union[_common_pb2.PolicyDecision, _Mapping]] = ..., error_code: _Optional[str] = ..., start_row: _Optional[int] = ..., max_rows: _Optional[int] = ...) -> None: ...

class SealedChunk(_message.Message):
    __slots__ = ("index", "first_row", "row_count", "sealed_rows")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    FIRST_ROW_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    SEALED_ROWS_FIELD_NUMBER: _ClassVar[int]
    index: int
    first_row: int
    row_count: int
    sealed_rows: bytes
    def __init__(self, index: _Optional[int] = ..., first_row: _Optional[int] = ..., row_count: _Optional[int] = ..., sealed_rows: _Optional[bytes] = ...) -> None: ...

class PeerStreamEnd(_message.Message):
    __slots__ = ("header", "chunk_count", "row_count", "commitment", "truncated", "truncated_reason", "next_row")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    COMMITMENT_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_REASON_FIELD_NUMBER: _ClassVar[int]
    NEXT_ROW_FIELD_NUMBER: _ClassVar[int]
    header: PeerHeader
    chunk_count: int
    row_count: int
    commitment: bytes
    truncated: bool
    truncated_reason: str
    next_row: int
    def __init__(self, header: _Optional[_Union[PeerHeader, _Mapping]] = ..., chunk_count: _Optional[int] = ..., row_count: _Optional[int] = ..., commitment: _Optional[bytes] = ..., truncated: _Optional[bool] = ..., truncated_reason: _Optional[str] = ..., next_row: _Optional[int] = ...) -> None: ...
