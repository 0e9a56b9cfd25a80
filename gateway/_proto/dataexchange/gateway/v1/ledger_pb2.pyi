from gateway._proto.dataexchange.gateway.v1 import peer_pb2 as _peer_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WitnessStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WITNESS_STATUS_UNSPECIFIED: _ClassVar[WitnessStatus]
    WITNESS_STATUS_COSIGNED: _ClassVar[WitnessStatus]
    WITNESS_STATUS_CONFLICT: _ClassVar[WitnessStatus]
    WITNESS_STATUS_BAD_REQUEST: _ClassVar[WitnessStatus]
    WITNESS_STATUS_INCONSISTENT: _ClassVar[WitnessStatus]
    WITNESS_STATUS_FORK: _ClassVar[WitnessStatus]
    WITNESS_STATUS_ROLLBACK: _ClassVar[WitnessStatus]
    WITNESS_STATUS_UNKNOWN_LOG: _ClassVar[WitnessStatus]
    WITNESS_STATUS_BAD_SIGNATURE: _ClassVar[WitnessStatus]
WITNESS_STATUS_UNSPECIFIED: WitnessStatus
WITNESS_STATUS_COSIGNED: WitnessStatus
WITNESS_STATUS_CONFLICT: WitnessStatus
WITNESS_STATUS_BAD_REQUEST: WitnessStatus
WITNESS_STATUS_INCONSISTENT: WitnessStatus
WITNESS_STATUS_FORK: WitnessStatus
WITNESS_STATUS_ROLLBACK: WitnessStatus
WITNESS_STATUS_UNKNOWN_LOG: WitnessStatus
WITNESS_STATUS_BAD_SIGNATURE: WitnessStatus

class GetWitnessedCheckpointRequest(_message.Message):
    __slots__ = ("origin",)
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    origin: str
    def __init__(self, origin: _Optional[str] = ...) -> None: ...

class GetWitnessedCheckpointResponse(_message.Message):
    __slots__ = ("checkpoint", "tree_size", "cosigned_ms")
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    COSIGNED_MS_FIELD_NUMBER: _ClassVar[int]
    checkpoint: str
    tree_size: int
    cosigned_ms: int
    def __init__(self, checkpoint: _Optional[str] = ..., tree_size: _Optional[int] = ..., cosigned_ms: _Optional[int] = ...) -> None: ...

class GetCheckpointRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetCheckpointResponse(_message.Message):
    __slots__ = ("checkpoint", "tree_size", "root_hash", "origin")
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ROOT_HASH_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    checkpoint: str
    tree_size: int
    root_hash: bytes
    origin: str
    def __init__(self, checkpoint: _Optional[str] = ..., tree_size: _Optional[int] = ..., root_hash: _Optional[bytes] = ..., origin: _Optional[str] = ...) -> None: ...

class GetInclusionProofRequest(_message.Message):
    __slots__ = ("index", "request_id", "tree_size")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    index: int
    request_id: str
    tree_size: int
    def __init__(self, index: _Optional[int] = ..., request_id: _Optional[str] = ..., tree_size: _Optional[int] = ...) -> None: ...

class GetInclusionProofResponse(_message.Message):
    __slots__ = ("index", "tree_size", "leaf_hash", "proof", "entry", "checkpoint")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEAF_HASH_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    index: int
    tree_size: int
    leaf_hash: bytes
    proof: _containers.RepeatedScalarFieldContainer[bytes]
    entry: bytes
    checkpoint: str
    def __init__(self, index: _Optional[int] = ..., tree_size: _Optional[int] = ..., leaf_hash: _Optional[bytes] = ..., proof: _Optional[_Iterable[bytes]] = ..., entry: _Optional[bytes] = ..., checkpoint: _Optional[str] = ...) -> None: ...

class GetConsistencyProofRequest(_message.Message):
    __slots__ = ("first_size", "second_size")
    FIRST_SIZE_FIELD_NUMBER: _ClassVar[int]
    SECOND_SIZE_FIELD_NUMBER: _ClassVar[int]
    first_size: int
    second_size: int
    def __init__(self, first_size: _Optional[int] = ..., second_size: _Optional[int] = ...) -> None: ...

class GetConsistencyProofResponse(_message.Message):
    __slots__ = ("first_size", "second_size", "proof")
    FIRST_SIZE_FIELD_NUMBER: _ClassVar[int]
    SECOND_SIZE_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    first_size: int
    second_size: int
    proof: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, first_size: _Optional[int] = ..., second_size: _Optional[int] = ..., proof: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GetEntriesRequest(_message.Message):
    __slots__ = ("start", "limit")
    START_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    start: int
    limit: int
    def __init__(self, start: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class LedgerEntry(_message.Message):
    __slots__ = ("index", "entry", "entry_hash")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    ENTRY_HASH_FIELD_NUMBER: _ClassVar[int]
    index: int
    entry: bytes
    entry_hash: bytes
    def __init__(self, index: _Optional[int] = ..., entry: _Optional[bytes] = ..., entry_hash: _Optional[bytes] = ...) -> None: ...

class GetEntriesResponse(_message.Message):
    __slots__ = ("entries", "tree_size", "next_start")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    NEXT_START_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LedgerEntry]
    tree_size: int
    next_start: int
    def __init__(self, entries: _Optional[_Iterable[_Union[LedgerEntry, _Mapping]]] = ..., tree_size: _Optional[int] = ..., next_start: _Optional[int] = ...) -> None: ...

class PeerWitnessRequest(_message.Message):
    __slots__ = ("header", "old_size", "consistency_proof", "checkpoint")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    OLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_PROOF_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    header: _peer_pb2.PeerHeader
    old_size: int
    consistency_proof: _containers.RepeatedScalarFieldContainer[bytes]
    checkpoint: str
    def __init__(self, header: _Optional[_Union[_peer_pb2.PeerHeader, _Mapping]] = ..., old_size: _Optional[int] = ..., consistency_proof: _Optional[_Iterable[bytes]] = ..., checkpoint: _Optional[str] = ...) -> None: ...

class PeerWitnessResponse(_message.Message):
    __slots__ = ("header", "status", "cosignature", "known_size", "detail")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COSIGNATURE_FIELD_NUMBER: _ClassVar[int]
    KNOWN_SIZE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    header: _peer_pb2.PeerHeader
    status: WitnessStatus
    cosignature: str
    known_size: int
    detail: str
    def __init__(self, header: _Optional[_Union[_peer_pb2.PeerHeader, _Mapping]] = ..., status: _Optional[_Union[WitnessStatus, str]] = ..., cosignature: _Optional[str] = ..., known_size: _Optional[int] = ..., detail: _Optional[str] = ...) -> None: ...
