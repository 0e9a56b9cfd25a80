"""The one interceptor: authenticate the caller, then map errors to gRPC status.

Owns: for every unary RPC, (1) running the server's authenticator (service
systems on the service port, federation members on the peer port) unless the
method is public (health), making the caller's identity available through
``caller()``; (2) turning ``GatewayError`` into its ``grpc_code`` with its
message, and any other exception into INTERNAL with an opaque reference (the
traceback goes to the log, never to the caller); (3) exposing the caller's
deadline (``deadline_remaining()``) so outbound peer calls never outlive it.

Does not own: what is authenticated against (``gateway.server.auth``).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc

from gateway.errors import WIRE_METADATA_KEY, WIRE_NAMES, GatewayError

log = logging.getLogger("gateway.rpc")

Authenticator = Callable[[grpc.ServicerContext], str]

_CALLER: contextvars.ContextVar[str | None] = contextvars.ContextVar("caller", default=None)
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("deadline", default=None)

PUBLIC_PREFIXES = ("/grpc.health.v1.Health/",)


def caller() -> str:
    """The authenticated caller of the current RPC (service system id or jurisdiction)."""
    ident = _CALLER.get()
    if ident is None:  # pragma: no cover - would be a wiring bug
        raise RuntimeError("no authenticated caller in this context")
    return ident


def caller_from_context(_context: grpc.ServicerContext) -> str:
    return caller()


def deadline_remaining() -> float | None:
    d = _DEADLINE.get()
    return None if d is None else d - time.monotonic()


class GatewayInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, authenticate: Authenticator | None) -> None:
        self._authenticate = authenticate

    def intercept_service(
        self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(details)
        if handler is not None and handler.unary_stream is not None:
            return self._server_streaming(handler, details.method)
        if handler is None or handler.unary_unary is None:
            return handler
        method: str = details.method
        public = method.startswith(PUBLIC_PREFIXES)
        inner = handler.unary_unary

        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            code: grpc.StatusCode | None = None
            message = ""
            kind = ""
            deadline_token: contextvars.Token[float | None] | None = None
            caller_token: contextvars.Token[str | None] | None = None
            try:
                remaining = context.time_remaining()
                if remaining is not None:
                    deadline_token = _DEADLINE.set(time.monotonic() + remaining)
                if self._authenticate is not None and not public:
                    caller_token = _CALLER.set(self._authenticate(context))
                return inner(request, context)
            except GatewayError as exc:
                code, message = exc.grpc_code, exc.message
                kind = type(exc).__name__ if type(exc).__name__ in WIRE_NAMES else ""
                log.info("%s -> %s: %s", method, code.name, message)
            except Exception:
                ref = uuid.uuid4().hex[:12]
                log.exception("%s failed (reference %s)", method, ref)
                code, message = grpc.StatusCode.INTERNAL, f"internal error (reference {ref})"
            finally:
                if caller_token is not None:
                    _CALLER.reset(caller_token)
                if deadline_token is not None:
                    _DEADLINE.reset(deadline_token)
            if kind:
                context.set_trailing_metadata(((WIRE_METADATA_KEY, kind),))
            context.abort(code, message)

        return grpc.unary_unary_rpc_method_handler(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    # ------------------------------------------------------------------
    # Server streaming (bulk transfers): the same authentication and error
    # mapping, applied when the stream starts and to every message it yields.
    # ------------------------------------------------------------------

    def _server_streaming(self, handler: Any, method: str) -> Any:
        public = method.startswith(PUBLIC_PREFIXES)
        inner = handler.unary_stream

        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            code: grpc.StatusCode | None = None
            message = ""
            kind = ""
            deadline_token: contextvars.Token[float | None] | None = None
            caller_token: contextvars.Token[str | None] | None = None
            try:
                remaining = context.time_remaining()
                if remaining is not None:
                    deadline_token = _DEADLINE.set(time.monotonic() + remaining)
                if self._authenticate is not None and not public:
                    caller_token = _CALLER.set(self._authenticate(context))
                yield from inner(request, context)
                return
            except GatewayError as exc:
                code, message = exc.grpc_code, exc.message
                kind = type(exc).__name__ if type(exc).__name__ in WIRE_NAMES else ""
                log.info("%s -> %s: %s", method, code.name, message)
            except Exception:
                ref = uuid.uuid4().hex[:12]
                log.exception("%s failed (reference %s)", method, ref)
                code, message = grpc.StatusCode.INTERNAL, f"internal error (reference {ref})"
            finally:
                with contextlib.suppress(ValueError):  # reset from another context on GC
                    if caller_token is not None:
                        _CALLER.reset(caller_token)
                    if deadline_token is not None:
                        _DEADLINE.reset(deadline_token)
            if kind:
                context.set_trailing_metadata(((WIRE_METADATA_KEY, kind),))
            context.abort(code, message)

        return grpc.unary_stream_rpc_method_handler(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
