from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Record(_message.Message):
    __slots__ = ("fields",)
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    fields: _containers.ScalarMap[str, str]
    def __init__(self, fields: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ColumnBatch(_message.Message):
    __slots__ = ("row_count", "columns")
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    row_count: int
    columns: _containers.RepeatedCompositeFieldContainer[Column]
    def __init__(self, row_count: _Optional[int] = ..., columns: _Optional[_Iterable[_Union[Column, _Mapping]]] = ...) -> None: ...

class Column(_message.Message):
    __slots__ = ("name", "values")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    name: str
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., values: _Optional[_Iterable[str]] = ...) -> None: ...

class FieldRelease(_message.Message):
    __slots__ = ("name", "transform")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    name: str
    transform: str
    def __init__(self, name: _Optional[str] = ..., transform: _Optional[str] = ...) -> None: ...

class PolicyDecision(_message.Message):
    __slots__ = ("allowed", "reason", "agreement_id", "agreement_digest", "policy_set_digest", "fields", "legal_basis", "approval_id")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    POLICY_SET_DIGEST_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    LEGAL_BASIS_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    reason: str
    agreement_id: str
    agreement_digest: str
    policy_set_digest: str
    fields: _containers.RepeatedCompositeFieldContainer[FieldRelease]
    legal_basis: str
    approval_id: str
    def __init__(self, allowed: _Optional[bool] = ..., reason: _Optional[str] = ..., agreement_id: _Optional[str] = ..., agreement_digest: _Optional[str] = ..., policy_set_digest: _Optional[str] = ..., fields: _Optional[_Iterable[_Union[FieldRelease, _Mapping]]] = ..., legal_basis: _Optional[str] = ..., approval_id: _Optional[str] = ...) -> None: ...

class LedgerReceipt(_message.Message):
    __slots__ = ("jurisdiction", "index", "entry_hash")
    JURISDICTION_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ENTRY_HASH_FIELD_NUMBER: _ClassVar[int]
    jurisdiction: str
    index: int
    entry_hash: str
    def __init__(self, jurisdiction: _Optional[str] = ..., index: _Optional[int] = ..., entry_hash: _Optional[str] = ...) -> None: ...
