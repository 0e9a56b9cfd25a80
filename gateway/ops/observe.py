"""Observing the gateway's edges: one log line and metrics per RPC.

Owns: ``ObservingWrapper`` (outermost on both gRPC servers: opens the RPC's
log context, times it, reads the final status, updates the request counter and
the per-hop latency histogram, writes the RPC's single log line),
``ObservedLedger`` (the ``LedgerWriter`` the exchange and statistics paths get:
annotates the RPC with the entry's request id, counterparty, dataset, purpose
and outcome, and counts appends), ``ObservedTransport`` (times each outbound
peer call) and ``annotating`` (puts the authenticated caller on the line).

Does not own: authentication or error mapping (``gateway.server.interceptor``),
formats (``gateway.ops.logs``), the metric definitions (``gateway.ops.metrics``).

The line carries identifiers and timings only: never subject ids, record
values, tokens or signatures.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final, Protocol

import grpc

from gateway._proto.dataexchange.gateway.v1 import peer_pb2
from gateway.exchange.peer import PeerTransport
from gateway.ledger.events import AppendReceipt, LedgerEvent, RiderLedgerWriter
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.ops.logs import annotate, rpc_context
from gateway.ops.metrics import GatewayMetrics
from gateway.server.ratelog import RateLimitedLog, source_of
from gateway.trust import Member

# The access log: one line per RPC. Named apart from the interceptor's refusal
# log (``gateway.rpc``), which says why; this one says who, what and how long.
log = logging.getLogger("gateway.access")

# Status codes that mean the caller's request was refused (its mistake or the
# policy), as opposed to this gateway or a peer failing.
_REFUSED: Final = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
# Probes and tooling: counted, but their lines are DEBUG so a load balancer
# polling every second does not fill the log.
QUIET_PREFIXES: Final = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def _api(method: str) -> str:
    """``/dataexchange.gateway.v1.RecordExchange/GetRecords`` -> ``RecordExchange/GetRecords``."""
    service, _, name = method.lstrip("/").rpartition("/")
    return f"{service.rsplit('.', 1)[-1]}/{name}" if service else method


def outcome_for(code: grpc.StatusCode, annotated: str | None) -> str:
    if annotated:
        return annotated
    if code == grpc.StatusCode.OK:
        return "ok"
    if code == grpc.StatusCode.CANCELLED:
        return "cancelled"  # the caller went away: neither refused nor our failure
    return "refused" if code in _REFUSED else "failed"


def _ended_by_caller(context: grpc.ServicerContext) -> grpc.StatusCode:
    """The status of an RPC that ended with no status set: gRPC closed the
    stream because the caller cancelled it or its deadline passed (UNKNOWN if
    the call is still live, which no handler of ours leaves)."""
    if context.is_active():
        return grpc.StatusCode.UNKNOWN
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.CANCELLED


class ObservingWrapper:
    """Wraps each handler a ``GatewayServer`` mounts, outside the authenticating one.

    Passed as ``GatewayServer(..., observe=ObservingWrapper(metrics, "service"))``.
    Handlers of other kinds than unary-unary (reflection's stream) pass unchanged.
    """

    def __init__(self, metrics: GatewayMetrics, port: str, limits: Limits = DEFAULT_LIMITS) -> None:
        self._metrics = metrics
        self._port = port  # "service" or "peer"
        self._limited = RateLimitedLog(log, limits)

    def __call__(self, method: str, handler: Any) -> Any:
        if handler is None:
            return handler
        if handler.unary_unary is not None:
            return self._unary(method, handler)
        if handler.unary_stream is not None:
            return self._server_stream(method, handler)
        return handler  # reflection's bidirectional stream: no line, no metric

    def _finish(
        self,
        method: str,
        fields: dict[str, Any],
        context: grpc.ServicerContext,
        failed: bool,
        seconds: float,
        extra: dict[str, Any] | None = None,
    ) -> None:
        api = _api(method)
        code = context.code() if failed else None
        if code is None:
            code = grpc.StatusCode.OK if not failed else _ended_by_caller(context)
        outcome = outcome_for(code, fields.pop("outcome", None))
        m = self._metrics
        counterparty = m.known.counterparty(str(fields.get("counterparty", "")))
        dataset = m.known.dataset(str(fields.get("dataset", "")))
        m.requests.labels(api, self._port, outcome, code.name, counterparty, dataset).inc()
        m.latency.labels(self._port, api).observe(seconds)
        level = logging.DEBUG if method.startswith(QUIET_PREFIXES) else logging.INFO
        if not log.isEnabledFor(level):
            return
        line = {
            "event": "rpc",
            "api": api,
            "port": self._port,
            **fields,
            **(extra or {}),
            "outcome": outcome,
            "code": code.name,
            "latency_ms": round(seconds * 1000, 3),
        }
        if outcome in ("refused", "failed"):
            # Refused before anything was ledgered (garbage, unknown callers,
            # malformed requests): one source cannot flood the log with them.
            self._limited.log(
                level, source_of(context.peer()), f"{api} {code.name}", "%s %s %s",
                api, code.name, outcome, extra=line,
            )  # fmt: skip
        else:
            log.log(level, "%s %s %s", api, code.name, outcome, extra=line)

    def _unary(self, method: str, handler: Any) -> Any:
        inner = handler.unary_unary

        def observed(request: Any, context: grpc.ServicerContext) -> Any:
            t0 = time.perf_counter()
            failed = True
            with rpc_context() as fields:
                try:
                    reply = inner(request, context)
                    failed = False
                    return reply
                finally:
                    self._finish(method, fields, context, failed, time.perf_counter() - t0)

        return grpc.unary_unary_rpc_method_handler(
            observed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _server_stream(self, method: str, handler: Any) -> Any:
        inner = handler.unary_stream

        def observed(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            # The whole stream is one RPC: one line when it ends (with the
            # number of messages sent), however it ends.
            t0 = time.perf_counter()
            failed, sent = True, 0
            with rpc_context() as fields:
                try:
                    for message in inner(request, context):
                        sent += 1
                        yield message
                    failed = False
                finally:
                    self._finish(
                        method,
                        fields,
                        context,
                        failed,
                        time.perf_counter() - t0,
                        {"messages": sent},
                    )

        return grpc.unary_stream_rpc_method_handler(
            observed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def annotating(
    authenticate: Callable[[grpc.ServicerContext], str],
) -> Callable[[grpc.ServicerContext], str]:
    """Wrap an authenticator so the RPC's log line names the authenticated caller."""

    def wrapped(context: grpc.ServicerContext) -> str:
        who = authenticate(context)
        annotate(caller=who)
        return who

    return wrapped


class BatchLedgerWriter(RiderLedgerWriter, Protocol):
    def append_many(self, events: Iterable[LedgerEvent]) -> list[AppendReceipt]:
        """Durably append events in one transaction."""
        ...


class ObservedLedger:
    """``LedgerWriter`` that tells the RPC's log line and the metrics what was recorded."""

    def __init__(self, inner: BatchLedgerWriter, metrics: GatewayMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def append(self, event: LedgerEvent, rider: object | None = None) -> AppendReceipt:
        annotate(
            request_id=event.request_id,
            counterparty=event.counterparty,
            service_system=event.service_system,
            dataset=event.dataset,
            purpose=event.purpose,
            outcome=event.kind,
        )
        receipt = self._inner.append(event, rider)
        self._count(event)
        annotate(ledger_index=receipt.index)
        return receipt

    def _count(self, event: LedgerEvent) -> None:
        known = self._metrics.known
        self._metrics.ledger_appends.labels(
            event.kind,
            event.decision,
            known.counterparty(event.counterparty),
            known.dataset(event.dataset),
        ).inc()

    def append_many(self, events: Iterable[LedgerEvent]) -> list[AppendReceipt]:
        """A batch in one transaction (the holder's receipt entries), each counted."""
        batch = list(events)
        receipts = self._inner.append_many(batch)
        for event in batch:
            self._count(event)
        return receipts


class ObservedTransport:
    """Times each outbound peer call (hop ``outbound``), by peer and method."""

    def __init__(self, inner: PeerTransport, metrics: GatewayMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def call(
        self, member: Member, method: str, envelope: peer_pb2.SignedEnvelope, timeout: float
    ) -> peer_pb2.SignedEnvelope:
        with self._metrics.time_outbound(member.jurisdiction, method):
            return self._inner.call(member, method, envelope, timeout)
