"""Baselines for the exchange and bulk benchmarks: a gRPC relay hop (no crypto,
policy, ledger).

Run as a process: ``relay.py --port P [--upstream HOST:PORT] [--reply-bytes N]``.
With --upstream it forwards each request's bytes upstream and returns the answer;
without it, it answers with a fixed payload of --reply-bytes bytes.

``/bench.Relay/Stream`` (server streaming, the bulk baseline): the request is
``b"<count>,<size>"``; the far end streams ``count`` messages of ``size`` bytes, a
relay with --upstream forwards the upstream stream message by message.

Plain by default. What a user would otherwise deploy adds, on the same flags:
``--tls-key/--tls-cert`` (serve TLS), ``--client-ca`` (require a client
certificate issued by that root: mutual TLS), ``--token-sha256`` (require
``authorization: Bearer <token>`` call metadata whose SHA-256 matches,
compared in constant time), and ``--upstream-ca/--upstream-key/--upstream-cert
--upstream-name`` (call upstream over mutual TLS).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import signal
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

METHOD = "/bench.Relay/Call"


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def _creds(ns: argparse.Namespace) -> tuple[grpc.ServerCredentials | None, Any]:
    server = None
    if ns.tls_key:
        server = grpc.ssl_server_credentials(
            [(_read(ns.tls_key), _read(ns.tls_cert))],
            root_certificates=_read(ns.client_ca),
            require_client_auth=ns.client_ca is not None,
        )
    channel = None
    if ns.upstream_ca:
        channel = grpc.ssl_channel_credentials(
            root_certificates=_read(ns.upstream_ca),
            private_key=_read(ns.upstream_key),
            certificate_chain=_read(ns.upstream_cert),
        )
    return server, channel


async def _serve_aio(ns: argparse.Namespace) -> None:
    """The same relay on one asyncio event loop (grpc.aio), for comparison."""
    reply = b"r" * ns.reply_bytes
    ident = lambda b: b  # noqa: E731
    server_creds, channel_creds = _creds(ns)
    call = None
    if ns.upstream:
        opts = [("grpc.ssl_target_name_override", ns.upstream_name)] if ns.upstream_name else []
        ch = (
            grpc.aio.secure_channel(ns.upstream, channel_creds, options=opts)
            if channel_creds
            else grpc.aio.insecure_channel(ns.upstream)
        )
        call = ch.unary_unary(METHOD, request_serializer=ident, response_deserializer=ident)
    want = bytes.fromhex(ns.token_sha256) if ns.token_sha256 else None

    async def handle(request: bytes, context: grpc.aio.ServicerContext) -> bytes:  # type: ignore[type-arg]
        if want is not None:
            token = b""
            for key, value in context.invocation_metadata() or ():
                if key == "authorization" and value.startswith("Bearer "):
                    token = value[7:].encode()
            if not hmac.compare_digest(hashlib.sha256(token).digest(), want):
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad token")
        if call is None:
            return reply
        out: bytes = await call(request, timeout=10)
        return out

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "bench.Relay",
                {
                    "Call": grpc.unary_unary_rpc_method_handler(
                        handle, request_deserializer=ident, response_serializer=ident
                    )
                },
            ),
        )
    )
    if server_creds:
        server.add_secure_port(f"127.0.0.1:{ns.port}", server_creds)
    else:
        server.add_insecure_port(f"127.0.0.1:{ns.port}")
    await server.start()
    print("ready", flush=True)
    done = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, done.set)
    await done.wait()
    await server.stop(0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream")
    ap.add_argument("--reply-bytes", type=int, default=600)
    ap.add_argument("--workers", type=int, default=32)
    ap.add_argument("--tls-key")
    ap.add_argument("--tls-cert")
    ap.add_argument("--client-ca")
    ap.add_argument("--token-sha256")
    ap.add_argument("--upstream-ca")
    ap.add_argument("--upstream-key")
    ap.add_argument("--upstream-cert")
    ap.add_argument("--upstream-name")
    ap.add_argument("--aio", action="store_true", help="grpc.aio server and upstream channel")
    ns = ap.parse_args()
    if ns.aio:
        asyncio.run(_serve_aio(ns))
        return
    reply = b"r" * ns.reply_bytes
    ident = lambda b: b  # noqa: E731
    call = None
    if ns.upstream:
        if ns.upstream_ca:
            creds = grpc.ssl_channel_credentials(
                root_certificates=_read(ns.upstream_ca),
                private_key=_read(ns.upstream_key),
                certificate_chain=_read(ns.upstream_cert),
            )
            opts = [("grpc.ssl_target_name_override", ns.upstream_name)] if ns.upstream_name else []
            ch = grpc.secure_channel(ns.upstream, creds, options=opts)
        else:
            ch = grpc.insecure_channel(ns.upstream)
        call = ch.unary_unary(METHOD, request_serializer=ident, response_deserializer=ident)
    want = bytes.fromhex(ns.token_sha256) if ns.token_sha256 else None

    def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
        if want is not None:
            token = b""
            for key, value in context.invocation_metadata():
                if key == "authorization" and value.startswith("Bearer "):
                    token = value[7:].encode()
            if not hmac.compare_digest(hashlib.sha256(token).digest(), want):
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad token")
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

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=ns.workers))
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
    if ns.tls_key:
        key, cert = _read(ns.tls_key), _read(ns.tls_cert)
        creds_s = grpc.ssl_server_credentials(
            [(key, cert)],
            root_certificates=_read(ns.client_ca),
            require_client_auth=ns.client_ca is not None,
        )
        server.add_secure_port(f"127.0.0.1:{ns.port}", creds_s)
    else:
        server.add_insecure_port(f"127.0.0.1:{ns.port}")
    server.start()
    print("ready", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    server.stop(0)


if __name__ == "__main__":
    main()
