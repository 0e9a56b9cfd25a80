from gateway._proto.dataexchange.gateway.v1 import common_pb2 as _common_pb2
from gateway._proto.dataexchange.gateway.v1 import peer_pb2 as _peer_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StatisticKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATISTIC_KIND_UNSPECIFIED: _ClassVar[StatisticKind]
    STATISTIC_KIND_COUNT: _ClassVar[StatisticKind]
    STATISTIC_KIND_SUM: _ClassVar[StatisticKind]
    STATISTIC_KIND_MEAN: _ClassVar[StatisticKind]
    STATISTIC_KIND_QUANTILE: _ClassVar[StatisticKind]
    STATISTIC_KIND_MEDIAN: _ClassVar[StatisticKind]
    STATISTIC_KIND_HISTOGRAM: _ClassVar[StatisticKind]
STATISTIC_KIND_UNSPECIFIED: StatisticKind
STATISTIC_KIND_COUNT: StatisticKind
STATISTIC_KIND_SUM: StatisticKind
STATISTIC_KIND_MEAN: StatisticKind
STATISTIC_KIND_QUANTILE: StatisticKind
STATISTIC_KIND_MEDIAN: StatisticKind
STATISTIC_KIND_HISTOGRAM: StatisticKind

class StatsFilter(_message.Message):
    __slots__ = ("column", "values")
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    column: str
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, column: _Optional[str] = ..., values: _Optional[_Iterable[str]] = ...) -> None: ...

class StatsQuery(_message.Message):
    __slots__ = ("dataset", "purpose", "statistic", "column", "group_by", "filters", "epsilon", "confidence", "quantile", "candidates", "bin_edges")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    STATISTIC_FIELD_NUMBER: _ClassVar[int]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    QUANTILE_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    BIN_EDGES_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    purpose: str
    statistic: StatisticKind
    column: str
    group_by: _containers.RepeatedScalarFieldContainer[str]
    filters: _containers.RepeatedCompositeFieldContainer[StatsFilter]
    epsilon: float
    confidence: float
    quantile: float
    candidates: _containers.RepeatedScalarFieldContainer[float]
    bin_edges: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, dataset: _Optional[str] = ..., purpose: _Optional[str] = ..., statistic: _Optional[_Union[StatisticKind, str]] = ..., column: _Optional[str] = ..., group_by: _Optional[_Iterable[str]] = ..., filters: _Optional[_Iterable[_Union[StatsFilter, _Mapping]]] = ..., epsilon: _Optional[float] = ..., confidence: _Optional[float] = ..., quantile: _Optional[float] = ..., candidates: _Optional[_Iterable[float]] = ..., bin_edges: _Optional[_Iterable[float]] = ...) -> None: ...

class NoiseComponent(_message.Message):
    __slots__ = ("name", "mechanism", "scale", "accuracy", "has_accuracy")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MECHANISM_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    HAS_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    name: str
    mechanism: str
    scale: float
    accuracy: float
    has_accuracy: bool
    def __init__(self, name: _Optional[str] = ..., mechanism: _Optional[str] = ..., scale: _Optional[float] = ..., accuracy: _Optional[float] = ..., has_accuracy: _Optional[bool] = ...) -> None: ...

class StatsCell(_message.Message):
    __slots__ = ("key", "value", "lower", "upper", "has_interval", "components")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    HAS_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    key: _containers.RepeatedScalarFieldContainer[str]
    value: float
    lower: float
    upper: float
    has_interval: bool
    components: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, key: _Optional[_Iterable[str]] = ..., value: _Optional[float] = ..., lower: _Optional[float] = ..., upper: _Optional[float] = ..., has_interval: _Optional[bool] = ..., components: _Optional[_Iterable[float]] = ...) -> None: ...

class StatsRelease(_message.Message):
    __slots__ = ("jurisdictions", "dataset", "statistic", "column", "group_by", "epsilon", "delta", "confidence", "components", "cells", "query_digest", "interval_method", "bounds")
    JURISDICTIONS_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    STATISTIC_FIELD_NUMBER: _ClassVar[int]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    CELLS_FIELD_NUMBER: _ClassVar[int]
    QUERY_DIGEST_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_METHOD_FIELD_NUMBER: _ClassVar[int]
    BOUNDS_FIELD_NUMBER: _ClassVar[int]
    jurisdictions: _containers.RepeatedScalarFieldContainer[str]
    dataset: str
    statistic: StatisticKind
    column: str
    group_by: _containers.RepeatedScalarFieldContainer[str]
    epsilon: float
    delta: float
    confidence: float
    components: _containers.RepeatedCompositeFieldContainer[NoiseComponent]
    cells: _containers.RepeatedCompositeFieldContainer[StatsCell]
    query_digest: str
    interval_method: str
    bounds: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, jurisdictions: _Optional[_Iterable[str]] = ..., dataset: _Optional[str] = ..., statistic: _Optional[_Union[StatisticKind, str]] = ..., column: _Optional[str] = ..., group_by: _Optional[_Iterable[str]] = ..., epsilon: _Optional[float] = ..., delta: _Optional[float] = ..., confidence: _Optional[float] = ..., components: _Optional[_Iterable[_Union[NoiseComponent, _Mapping]]] = ..., cells: _Optional[_Iterable[_Union[StatsCell, _Mapping]]] = ..., query_digest: _Optional[str] = ..., interval_method: _Optional[str] = ..., bounds: _Optional[_Iterable[float]] = ...) -> None: ...

class BudgetRemaining(_message.Message):
    __slots__ = ("jurisdiction", "requester_epsilon", "dataset_epsilon")
    JURISDICTION_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_EPSILON_FIELD_NUMBER: _ClassVar[int]
    DATASET_EPSILON_FIELD_NUMBER: _ClassVar[int]
    jurisdiction: str
    requester_epsilon: float
    dataset_epsilon: float
    def __init__(self, jurisdiction: _Optional[str] = ..., requester_epsilon: _Optional[float] = ..., dataset_epsilon: _Optional[float] = ...) -> None: ...

class MissingPart(_message.Message):
    __slots__ = ("jurisdiction", "code", "reason")
    JURISDICTION_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    jurisdiction: str
    code: str
    reason: str
    def __init__(self, jurisdiction: _Optional[str] = ..., code: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class StatsQueryRequest(_message.Message):
    __slots__ = ("jurisdictions", "query", "client_reference")
    JURISDICTIONS_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    CLIENT_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    jurisdictions: _containers.RepeatedScalarFieldContainer[str]
    query: StatsQuery
    client_reference: str
    def __init__(self, jurisdictions: _Optional[_Iterable[str]] = ..., query: _Optional[_Union[StatsQuery, _Mapping]] = ..., client_reference: _Optional[str] = ...) -> None: ...

class StatsQueryResponse(_message.Message):
    __slots__ = ("request_id", "parts", "combined", "has_combined", "missing", "complete", "remaining", "receipts", "dry_run")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    COMBINED_FIELD_NUMBER: _ClassVar[int]
    HAS_COMBINED_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    RECEIPTS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    parts: _containers.RepeatedCompositeFieldContainer[StatsRelease]
    combined: StatsRelease
    has_combined: bool
    missing: _containers.RepeatedCompositeFieldContainer[MissingPart]
    complete: bool
    remaining: _containers.RepeatedCompositeFieldContainer[BudgetRemaining]
    receipts: _containers.RepeatedCompositeFieldContainer[_common_pb2.LedgerReceipt]
    dry_run: bool
    def __init__(self, request_id: _Optional[str] = ..., parts: _Optional[_Iterable[_Union[StatsRelease, _Mapping]]] = ..., combined: _Optional[_Union[StatsRelease, _Mapping]] = ..., has_combined: _Optional[bool] = ..., missing: _Optional[_Iterable[_Union[MissingPart, _Mapping]]] = ..., complete: _Optional[bool] = ..., remaining: _Optional[_Iterable[_Union[BudgetRemaining, _Mapping]]] = ..., receipts: _Optional[_Iterable[_Union[_common_pb2.LedgerReceipt, _Mapping]]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class PeerStatsRequest(_message.Message):
    __slots__ = ("header", "service_system", "query", "dry_run", "federated_query_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    SERVICE_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    FEDERATED_QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    header: _peer_pb2.PeerHeader
    service_system: str
    query: StatsQuery
    dry_run: bool
    federated_query_id: str
    def __init__(self, header: _Optional[_Union[_peer_pb2.PeerHeader, _Mapping]] = ..., service_system: _Optional[str] = ..., query: _Optional[_Union[StatsQuery, _Mapping]] = ..., dry_run: _Optional[bool] = ..., federated_query_id: _Optional[str] = ...) -> None: ...

class PeerStatsResponse(_message.Message):
    __slots__ = ("header", "release", "remaining", "receipt", "agreement_id", "agreement_digest", "dry_run", "policy_set_digest", "legal_basis", "approval_id")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    POLICY_SET_DIGEST_FIELD_NUMBER: _ClassVar[int]
    LEGAL_BASIS_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    header: _peer_pb2.PeerHeader
    release: StatsRelease
    remaining: BudgetRemaining
    receipt: _common_pb2.LedgerReceipt
    agreement_id: str
    agreement_digest: str
    dry_run: bool
    policy_set_digest: str
    legal_basis: str
    approval_id: str
    def __init__(self, header: _Optional[_Union[_peer_pb2.PeerHeader, _Mapping]] = ..., release: _Optional[_Union[StatsRelease, _Mapping]] = ..., remaining: _Optional[_Union[BudgetRemaining, _Mapping]] = ..., receipt: _Optional[_Union[_common_pb2.LedgerReceipt, _Mapping]] = ..., agreement_id: _Optional[str] = ..., agreement_digest: _Optional[str] = ..., dry_run: _Optional[bool] = ..., policy_set_digest: _Optional[str] = ..., legal_basis: _Optional[str] = ..., approval_id: _Optional[str] = ...) -> None: ...
