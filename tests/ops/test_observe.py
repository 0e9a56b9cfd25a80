"""The observing wrapper: one metric and one log line per RPC, streams included, failures too."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from gateway.ops.logs import annotate
from gateway.ops.metrics import GatewayMetrics, KnownLabels
from gateway.ops.observe import ObservingWrapper


class _Context:
    def __init__(self) -> None:
        self._code: grpc.StatusCode | None = None

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def peer(self) -> str:
        return "ipv4:127.0.0.1:50000"

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self._code = code
        raise RuntimeError(details)


def _metrics() -> GatewayMetrics:
    return GatewayMetrics("110000", KnownLabels(lambda: [("120000", ("hf_accounts",))]))


def _count(m: GatewayMetrics, **labels: str) -> float:
    total = 0.0
    for metric in m.registry.collect():
        for s in metric.samples:
            if s.name == "gateway_requests_total" and labels.items() <= s.labels.items():
                total += s.value
    return total


def test_server_stream_is_one_rpc_line_with_its_message_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def stream(request: Any, context: Any) -> Iterator[str]:
        annotate(request_id="r-1", counterparty="120000", dataset="hf_accounts", outcome="transfer")
        yield from ("a", "b", "c")

    m = _metrics()
    handler = ObservingWrapper(m, "service")("/x.v1.RecordExchange/StreamRecords",
                                             grpc.unary_stream_rpc_method_handler(stream))  # fmt: skip
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        assert list(handler.unary_stream(None, _Context())) == ["a", "b", "c"]
    [rec] = [r for r in caplog.records if getattr(r, "event", "") == "rpc"]
    assert (rec.api, rec.messages, rec.outcome, rec.code) == (
        "RecordExchange/StreamRecords",
        3,
        "transfer",
        "OK",
    )
    assert (
        _count(m, api="RecordExchange/StreamRecords", counterparty="120000", dataset="hf_accounts")
        == 1
    )


def test_a_stream_that_fails_midway_is_counted_with_its_status() -> None:
    def stream(request: Any, context: Any) -> Iterator[str]:
        yield "a"
        context.abort(grpc.StatusCode.UNAVAILABLE, "holder went away")

    m = _metrics()
    handler = ObservingWrapper(m, "service")("/x.v1.RecordExchange/StreamRecords",
                                             grpc.unary_stream_rpc_method_handler(stream))  # fmt: skip
    with pytest.raises(RuntimeError):
        list(handler.unary_stream(None, _Context()))
    assert _count(m, code="UNAVAILABLE", outcome="failed") == 1


def test_unary_refusal_is_counted_refused_and_unknown_labels_become_other() -> None:
    def unary(request: Any, context: Any) -> str:
        annotate(counterparty="310000", dataset="invented_dataset")
        context.abort(grpc.StatusCode.NOT_FOUND, "no such member")
        return "unreachable"

    m = _metrics()
    handler = ObservingWrapper(m, "peer")("/x.v1.PeerExchange/FetchRecords",
                                          grpc.unary_unary_rpc_method_handler(unary))  # fmt: skip
    with pytest.raises(RuntimeError):
        handler.unary_unary(None, _Context())
    assert (
        _count(m, code="NOT_FOUND", outcome="refused", counterparty="other", dataset="other") == 1
    )


def test_refusals_before_any_ledger_entry_are_rate_limited_per_source(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def unary(request: Any, context: Any) -> str:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown caller")
        return "unreachable"

    m = _metrics()
    handler = ObservingWrapper(m, "service")("/x.v1.RecordExchange/GetRecords",
                                             grpc.unary_unary_rpc_method_handler(unary))  # fmt: skip
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        for _ in range(40):
            with pytest.raises(RuntimeError):
                handler.unary_unary(None, _Context())
    lines = [r for r in caplog.records if getattr(r, "event", "") == "rpc"]
    assert 1 <= len(lines) <= 5 and lines[0].code == "UNAUTHENTICATED"
    assert _count(m, code="UNAUTHENTICATED") == 40  # every one is still counted


def test_a_stream_the_caller_cancels_is_counted_cancelled_not_failed_unknown() -> None:
    """gRPC closes the stream's generator when the caller cancels, with no status
    set: it was counted outcome=failed, code=UNKNOWN, tripping the failure alert
    for a service system that merely stopped reading (a bulk transfer resumes)."""
    import time
    from concurrent import futures

    def stream(request: Any, context: Any) -> Iterator[bytes]:
        for _ in range(200):
            time.sleep(0.02)
            yield b"x"

    m = _metrics()
    handler = ObservingWrapper(m, "service")("/x.v1.RecordExchange/StreamRecords",
                                             grpc.unary_stream_rpc_method_handler(stream))  # fmt: skip
    server = grpc.server(futures.ThreadPoolExecutor(2))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("x.v1.RecordExchange", {"StreamRecords": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        call = channel.unary_stream("/x.v1.RecordExchange/StreamRecords")(b"", timeout=30)
        next(call)
        next(call)
        call.cancel()
        deadline = time.monotonic() + 5
        while _count(m) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        channel.close()
        server.stop(None)
    assert _count(m, code="CANCELLED", outcome="cancelled") == 1
    assert _count(m, outcome="failed") == 0 and _count(m, code="UNKNOWN") == 0
