from gateway._proto.dataexchange.gateway.v1 import common_pb2 as _common_pb2
from gateway._proto.dataexchange.gateway.v1 import peer_pb2 as _peer_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AccessHistoryRequest(_message.Message):
    __slots__ = ("subject_id", "jurisdictions", "client_reference")
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    JURISDICTIONS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    jurisdictions: _containers.RepeatedScalarFieldContainer[str]
    client_reference: str
    def __init__(self, subject_id: _Optional[str] = ..., jurisdictions: _Optional[_Iterable[str]] = ..., client_reference: _Optional[str] = ...) -> None: ...

class AccessHistoryResponse(_message.Message):
    __slots__ = ("request_id", "events", "jurisdictions")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    JURISDICTIONS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    events: _containers.RepeatedCompositeFieldContainer[AccessEvent]
    jurisdictions: _containers.RepeatedCompositeFieldContainer[JurisdictionAnswer]
    def __init__(self, request_id: _Optional[str] = ..., events: _Optional[_Iterable[_Union[AccessEvent, _Mapping]]] = ..., jurisdictions: _Optional[_Iterable[_Union[JurisdictionAnswer, _Mapping]]] = ...) -> None: ...

class AccessEvent(_message.Message):
    __slots__ = ("timestamp_ms", "holder_jurisdiction", "requester_jurisdiction", "service_system", "dataset", "purpose", "legal_basis", "fields", "agreement_id", "kind", "reason", "record_count", "request_id", "proof")
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    HOLDER_JURISDICTION_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_JURISDICTION_FIELD_NUMBER: _ClassVar[int]
    SERVICE_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    LEGAL_BASIS_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RECORD_COUNT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    timestamp_ms: int
    holder_jurisdiction: str
    requester_jurisdiction: str
    service_system: str
    dataset: str
    purpose: str
    legal_basis: str
    fields: _containers.RepeatedCompositeFieldContainer[_common_pb2.FieldRelease]
    agreement_id: str
    kind: str
    reason: str
    record_count: int
    request_id: str
    proof: EntryProof
    def __init__(self, timestamp_ms: _Optional[int] = ..., holder_jurisdiction: _Optional[str] = ..., requester_jurisdiction: _Optional[str] = ..., service_system: _Optional[str] = ..., dataset: _Optional[str] = ..., purpose: _Optional[str] = ..., legal_basis: _Optional[str] = ..., fields: _Optional[_Iterable[_Union[_common_pb2.FieldRelease, _Mapping]]] = ..., agreement_id: _Optional[str] = ..., kind: _Optional[str] = ..., reason: _Optional[str] = ..., record_count: _Optional[int] = ..., request_id: _Optional[str] = ..., proof: _Optional[_Union[EntryProof, _Mapping]] = ...) -> None: ...

class EntryProof(_message.Message):
    __slots__ = ("index", "entry_hash", "tree_size", "cosigned_by")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ENTRY_HASH_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    COSIGNED_BY_FIELD_NUMBER: _ClassVar[int]
    index: int
    entry_hash: str
    tree_size: int
    cosigned_by: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, index: _Optional[int] = ..., entry_hash: _Optional[str] = ..., tree_size: _Optional[int] = ..., cosigned_by: _Optional[_Iterable[str]] = ...) -> None: ...

class JurisdictionAnswer(_message.Message):
    __slots__ = ("jurisdiction", "name", "status", "reason", "events", "truncated")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[JurisdictionAnswer.Status]
        ANSWERED: _ClassVar[JurisdictionAnswer.Status]
        MISSING: _ClassVar[JurisdictionAnswer.Status]
        NOT_PARTICIPATING: _ClassVar[JurisdictionAnswer.Status]
        FAILED_VERIFICATION: _ClassVar[JurisdictionAnswer.Status]
    STATUS_UNSPECIFIED: JurisdictionAnswer.Status
    ANSWERED: JurisdictionAnswer.Status
    MISSING: JurisdictionAnswer.Status
    NOT_PARTICIPATING: JurisdictionAnswer.Status
    FAILED_VERIFICATION: JurisdictionAnswer.Status
    JURISDICTION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    jurisdiction: str
    name: str
    status: JurisdictionAnswer.Status
    reason: str
    events: int
    truncated: bool
    def __init__(self, jurisdiction: _Optional[str] = ..., name: _Optional[str] = ..., status: _Optional[_Union[JurisdictionAnswer.Status, str]] = ..., reason: _Optional[str] = ..., events: _Optional[int] = ..., truncated: _Optional[bool] = ...) -> None: ...

class PeerSubjectRequest(_message.Message):
    __slots__ = ("header", "service_system", "sealed_query")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    SERVICE_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    SEALED_QUERY_FIELD_NUMBER: _ClassVar[int]
    header: _peer_pb2.PeerHeader
    service_system: str
    sealed_query: bytes
    def __init__(self, header: _Optional[_Union[_peer_pb2.PeerHeader, _Mapping]] = ..., service_system: _Optional[str] = ..., sealed_query: _Optional[bytes] = ...) -> None: ...

class SubjectQuery(_message.Message):
    __slots__ = ("subject_id",)
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    subject_id: str
    def __init__(self, subject_id: _Optional[str] = ...) -> None: ...

class PeerSubjectResponse(_message.Message):
    __slots__ = ("header", "participating", "entry_count", "sealed_history", "truncated", "error_code", "reason")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PARTICIPATING_FIELD_NUMBER: _ClassVar[int]
    ENTRY_COUNT_FIELD_NUMBER: _ClassVar[int]
    SEALED_HISTORY_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    header: _peer_pb2.PeerHeader
    participating: bool
    entry_count: int
    sealed_history: bytes
    truncated: bool
    error_code: str
    reason: str
    def __init__(self, header: _Optional[_Union[_peer_pb2.PeerHeader, _Mapping]] = ..., participating: _Optional[bool] = ..., entry_count: _Optional[int] = ..., sealed_history: _Optional[bytes] = ..., truncated: _Optional[bool] = ..., error_code: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SubjectHistoryProofs(_message.Message):
    __slots__ = ("blind_index", "checkpoints", "entries")
    BLIND_INDEX_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    blind_index: bytes
    checkpoints: _containers.RepeatedScalarFieldContainer[str]
    entries: _containers.RepeatedCompositeFieldContainer[ProvenEntry]
    def __init__(self, blind_index: _Optional[bytes] = ..., checkpoints: _Optional[_Iterable[str]] = ..., entries: _Optional[_Iterable[_Union[ProvenEntry, _Mapping]]] = ...) -> None: ...

class ProvenEntry(_message.Message):
    __slots__ = ("index", "entry", "tree_size", "inclusion_proof", "set_position", "set_proof", "fields", "legal_basis")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    INCLUSION_PROOF_FIELD_NUMBER: _ClassVar[int]
    SET_POSITION_FIELD_NUMBER: _ClassVar[int]
    SET_PROOF_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    LEGAL_BASIS_FIELD_NUMBER: _ClassVar[int]
    index: int
    entry: bytes
    tree_size: int
    inclusion_proof: _containers.RepeatedScalarFieldContainer[bytes]
    set_position: int
    set_proof: _containers.RepeatedScalarFieldContainer[bytes]
    fields: _containers.RepeatedCompositeFieldContainer[_common_pb2.FieldRelease]
    legal_basis: str
    def __init__(self, index: _Optional[int] = ..., entry: _Optional[bytes] = ..., tree_size: _Optional[int] = ..., inclusion_proof: _Optional[_Iterable[bytes]] = ..., set_position: _Optional[int] = ..., set_proof: _Optional[_Iterable[bytes]] = ..., fields: _Optional[_Iterable[_Union[_common_pb2.FieldRelease, _Mapping]]] = ..., legal_basis: _Optional[str] = ...) -> None: ...
