"""gRPC servicer of the service-system ``Statistics`` API (stats.proto).

Owns: converting protobuf requests into domain values and answers back, and
asking ``identify`` who the caller is (the authenticated service-system id;
never taken from the request body). Does not own: authentication, TLS or
mapping errors to status codes: GatewayError propagates and the gateway's
single interceptor maps it (``gateway.errors.STATUS_TABLE``), nor any
statistics (``gateway.stats``).
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

from gateway import identifiers
from gateway._proto.dataexchange.gateway.v1 import stats_pb2, stats_pb2_grpc
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.stats.convert import answer_to_proto, federated_from_proto
from gateway.stats.coordinator import StatsCoordinator


class StatisticsServicer(stats_pb2_grpc.StatisticsServicer):
    def __init__(
        self,
        coordinator: StatsCoordinator,
        identify: Callable[[grpc.ServicerContext], str],
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self._core = coordinator
        self._identify = identify
        self._limits = limits

    def _run(
        self, request: stats_pb2.StatsQueryRequest, context: grpc.ServicerContext, dry_run: bool
    ) -> stats_pb2.StatsQueryResponse:
        service_system = identifiers.service_system(self._identify(context))
        fq = federated_from_proto(request, self._limits)
        return answer_to_proto(self._core.query(fq, service_system, dry_run=dry_run))

    def Query(
        self, request: stats_pb2.StatsQueryRequest, context: grpc.ServicerContext
    ) -> stats_pb2.StatsQueryResponse:
        return self._run(request, context, dry_run=False)

    def DryRun(
        self, request: stats_pb2.StatsQueryRequest, context: grpc.ServicerContext
    ) -> stats_pb2.StatsQueryResponse:
        return self._run(request, context, dry_run=True)
