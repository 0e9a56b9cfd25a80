"""The one interceptor: authenticate the caller, then map errors to gRPC status.

Owns: for every unary RPC, (1) running the server's authenticator (service
systems on the service port, federation members on the peer port) unless the
method is public (health), making the caller's identity available through
``caller()``, then its authorizer (may this caller call this method);
(2) decoding the request only after that, an undecodable body being
INVALID_ARGUMENT; (3) turning ``GatewayError`` into its ``grpc_code`` with its
message cut to ``MAX_STATUS_CHARS``, and any other exception into INTERNAL
with an opaque reference (the traceback goes to the log, never to the
caller); refusals are logged rate-limited per source (``ratelog``);
(4) exposing the caller's deadline (``deadline_remaining()``) so outbound peer
calls never outlive it.

Does not own: what is authenticated against (``gateway.server.auth``).
"""

from __future__ import annotations

import contextvars
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc

from gateway.errors import (
    MAX_STATUS_CHARS,
    WIRE_METADATA_KEY,
    WIRE_NAMES,
    GatewayError,
    InvalidArgument,
    clip,
)
from gateway.server.ratelog import RateLimitedLog, source_of

log = logging.getLogger("gateway.rpc")

Authenticator = Callable[[grpc.ServicerContext], str]
# (method, authenticated caller) -> None, or raise PermissionDenied.
Authorizer = Callable[[str, str], None]

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
    def __init__(
        self, authenticate: Authenticator | None, authorize: Authorizer | None = None
    ) -> None:
        self._authenticate = authenticate
        self._authorize = authorize
        self._ratelog = RateLimitedLog(log)

    def intercept_service(
        self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        method: str = details.method
        public = method.startswith(PUBLIC_PREFIXES)
        inner = handler.unary_unary
        decode = handler.request_deserializer

        def wrapped(raw: bytes, context: grpc.ServicerContext) -> Any:
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
                    who = self._authenticate(context)
                    caller_token = _CALLER.set(who)
                    if self._authorize is not None:
                        self._authorize(method, who)
                # Decoded here, after authentication, so an undecodable body is
                # the caller's INVALID_ARGUMENT, not grpc's INTERNAL + traceback.
                request = _decode(decode, raw)
                return inner(request, context)
            except GatewayError as exc:
                code, message = exc.grpc_code, clip(exc.message, MAX_STATUS_CHARS)
                kind = type(exc).__name__ if type(exc).__name__ in WIRE_NAMES else ""
                self._ratelog.log(
                    logging.INFO,
                    source_of(context.peer()),
                    code.name,
                    "%s -> %s: %s",
                    method,
                    code.name,
                    message,
                )
            except Exception:
                ref = uuid.uuid4().hex[:12]
                self._ratelog.log(
                    logging.ERROR,
                    source_of(context.peer()),
                    "INTERNAL",
                    "%s failed (reference %s)",
                    method,
                    ref,
                    exc_info=True,
                )
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
            request_deserializer=None,  # raw bytes: decoded inside ``wrapped``
            response_serializer=handler.response_serializer,
        )


def _decode(decode: Callable[[bytes], Any] | None, raw: bytes) -> Any:
    if decode is None:
        return raw
    try:
        return decode(raw)
    except Exception as exc:  # protobuf's DecodeError, or a bad UTF-8 string field
        raise InvalidArgument(
            "request body is not a valid protobuf message for this method "
            "(check the stubs were generated from this gateway's protos/)"
        ) from exc
