"""Baseline for the exchange and bulk benchmarks: a plain gRPC relay hop (no crypto,
policy, ledger).

Run as a process: ``relay.py --port P [--upstream HOST:PORT] [--reply-bytes N]``.
With --upstream it forwards each request's bytes upstream and returns the answer;
without it, it answers with a fixed payload of --reply-bytes bytes.

``/bench.Relay/Stream`` (server streaming, the bulk baseline): the request is
``b"<count>,<size>"``; the far end streams ``count`` messages of ``size`` bytes, a
relay with --upstream forwards the upstream stream message by message.
"""

from __future__ import annotations

import argparse
import signal
import threading
from concurrent import futures

import grpc

METHOD = "/bench.Relay/Call"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream")
    ap.add_argument("--reply-bytes", type=int, default=600)
    ns = ap.parse_args()
    reply = b"r" * ns.reply_bytes
    ident = lambda b: b  # noqa: E731
    call = None
    if ns.upstream:
        ch = grpc.insecure_channel(ns.upstream)
        call = ch.unary_unary(METHOD, request_serializer=ident, response_deserializer=ident)

    def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
        return call(request, timeout=10) if call else reply

    stream_call = None
    if ns.upstream:
        stream_call = ch.unary_stream(
            "/bench.Relay/Stream", request_serializer=ident, response_deserializer=ident
        )

    def stream(request: bytes, context: grpc.ServicerContext) -> object:
        if stream_call is not None:
            yield from stream_call(request, timeout=3600)
            return
        count, size = (int(x) for x in request.split(b","))
        payload = b"s" * size
        for _ in range(count):
            yield payload

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    handler = grpc.method_handlers_generic_handler(
        "bench.Relay",
        {
            "Call": grpc.unary_unary_rpc_method_handler(
                handle, request_deserializer=ident, response_serializer=ident
            ),
            "Stream": grpc.unary_stream_rpc_method_handler(
                stream, request_deserializer=ident, response_serializer=ident
            ),
        },
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{ns.port}")
    server.start()
    print("ready", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    server.stop(0)


if __name__ == "__main__":
    main()
