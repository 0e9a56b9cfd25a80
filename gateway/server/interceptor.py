"""The one interceptor: authenticate the caller, then map errors to gRPC status.

Owns: for every RPC handler mounted on a gateway server, (1) running the
server's authenticator (service systems on the service port, federation
members on the peer port) unless the method is public (health), making the
caller's identity available through ``caller()``, then its authorizer (may
this caller call this method; ``gateway.server.access``), and only then
decoding the request (an undecodable body is INVALID_ARGUMENT, never grpc's
INTERNAL with a traceback); (2) turning ``GatewayError`` into its status
(``gateway.errors.status_of``) with its message cut to ``Limits.max_status_chars``
and its ``gateway-error`` name, and any other exception into INTERNAL with an
opaque reference (the traceback goes to the log, never to the caller);
refusals are logged rate-limited per source (``gateway.server.ratelog``); (3) exposing
the caller's deadline (``deadline_remaining()``) so outbound peer calls never
outlive it; (4) ``GatewayServer``, the gRPC server every servicer is mounted
on, which wraps each handler when it is registered.

Fails closed: a handler of a kind there is no wrapper for (``_WRAPPERS``: unary
and server streaming) is refused when it is registered, so the server never
starts serving it without authentication. A server stream runs inside
``GatewayInterceptor.scope`` like a unary call. Public
methods (the gRPC health library's) keep their handler as it is when there is
no wrapper for its kind: they need no caller and raise no gateway errors.

Does not own: what is authenticated against (``gateway.server.auth``).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent import futures
from typing import Any

import grpc

from gateway.errors import (
    WIRE_METADATA_KEY,
    ConfigurationError,
    GatewayError,
    InvalidArgument,
    clip,
    status_of,
    wire_name,
)
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.server.ratelog import RateLimitedLog, source_of

log = logging.getLogger("gateway.rpc")

Authenticator = Callable[[grpc.ServicerContext], str]
# (method, authenticated caller) -> None, or raise PermissionDenied.
Authorizer = Callable[[str, str], None]
Wrapper = Callable[["GatewayInterceptor", str, bool, Any], Any]

_CALLER: contextvars.ContextVar[str | None] = contextvars.ContextVar("caller", default=None)
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("deadline", default=None)

# Public: probes, and reflection (it describes the API, which protos/ publishes;
# every call it describes still authenticates).
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
# Wraps an already-authenticating handler once more (metrics and the RPC's log
# line, ``gateway.ops.observe``), outermost, so it sees authentication refusals too.
HandlerWrapper = Callable[[str, Any], Any]


class UnwrappableHandler(TypeError):
    """A servicer handler the interceptor cannot authenticate (refused at start-up)."""


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


def handler_kind(handler: Any) -> str:
    """``unary_unary``, ``unary_stream``, ``stream_unary`` or ``stream_stream``."""
    req = "stream" if handler.request_streaming else "unary"
    resp = "stream" if handler.response_streaming else "unary"
    return f"{req}_{resp}"


def _wrap_unary_unary(
    interceptor: GatewayInterceptor, method: str, public: bool, handler: Any
) -> Any:
    inner = handler.unary_unary
    decode = handler.request_deserializer

    def wrapped(raw: bytes, context: grpc.ServicerContext) -> Any:
        with interceptor.scope(method, public, context):
            return inner(decode_request(decode, raw), context)
        raise AssertionError("unreachable: the scope aborts on error")  # pragma: no cover

    return grpc.unary_unary_rpc_method_handler(
        wrapped,
        request_deserializer=None,  # raw bytes: decoded inside the scope, after authentication
        response_serializer=handler.response_serializer,
    )


def decode_request(decode: Callable[[bytes], Any] | None, raw: bytes) -> Any:
    """The request message, or INVALID_ARGUMENT for a body that does not decode."""
    if decode is None:
        return raw
    try:
        return decode(raw)
    except Exception as exc:  # protobuf's DecodeError, or a bad UTF-8 string field
        raise InvalidArgument(
            "request body is not a valid protobuf message for this method "
            "(check the stubs were generated from this gateway's protos/)"
        ) from exc


def _wrap_unary_stream(
    interceptor: GatewayInterceptor, method: str, public: bool, handler: Any
) -> Any:
    """Server streaming (bulk transfers): the caller is authenticated before the
    first message, and an error raised while streaming becomes the stream's status."""
    inner = handler.unary_stream
    decode = handler.request_deserializer

    def wrapped(raw: bytes, context: grpc.ServicerContext) -> Iterator[Any]:
        with interceptor.scope(method, public, context):
            yield from inner(decode_request(decode, raw), context)

    return grpc.unary_stream_rpc_method_handler(
        wrapped,
        request_deserializer=None,  # raw bytes: decoded inside the scope, after authentication
        response_serializer=handler.response_serializer,
    )


# Handler kind -> how to wrap it. A kind not listed is refused at registration.
_WRAPPERS: dict[str, Wrapper] = {
    "unary_unary": _wrap_unary_unary,
    "unary_stream": _wrap_unary_stream,
}


class GatewayInterceptor:
    """Authenticates, authorizes and maps errors around every handler. Both
    checks are required: there is no way to build one that serves a
    non-public method to an unauthenticated or unauthorized caller."""

    def __init__(
        self,
        authenticate: Authenticator,
        authorize: Authorizer,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self._authenticate = authenticate
        self._authorize = authorize
        self._limits = limits
        self._ratelog = RateLimitedLog(log, limits)

    def wrap(self, method: str, handler: Any) -> Any:
        """The handler that authenticates, then maps errors; refuses unknown kinds."""
        public = method.startswith(PUBLIC_PREFIXES)
        kind = handler_kind(handler)
        wrapper = _WRAPPERS.get(kind)
        if wrapper is not None:
            return wrapper(self, method, public, handler)
        if public:
            return handler
        raise UnwrappableHandler(
            f"{method} is a {kind} RPC; the gateway's interceptor can only authenticate "
            f"and map errors for {', '.join(sorted(_WRAPPERS))} RPCs, so it will not be served "
            "(add a wrapper for this kind in gateway.server.interceptor)"
        )

    @contextlib.contextmanager
    def scope(self, method: str, public: bool, context: grpc.ServicerContext) -> Iterator[None]:
        """Deadline and caller for the body; the body's errors become its status."""
        code: grpc.StatusCode | None = None
        message = kind = ""
        deadline_token: contextvars.Token[float | None] | None = None
        caller_token: contextvars.Token[str | None] | None = None
        try:
            remaining = context.time_remaining()
            if remaining is not None:
                deadline_token = _DEADLINE.set(time.monotonic() + remaining)
            if not public:
                who = self._authenticate(context)
                caller_token = _CALLER.set(who)
                self._authorize(method, who)
            yield
        except GatewayError as exc:
            code, kind = status_of(exc), wire_name(exc)
            message = clip(exc.message, self._limits.max_status_chars)
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
        if code is not None:
            if kind:
                context.set_trailing_metadata(((WIRE_METADATA_KEY, kind),))
            context.abort(code, message)


class GatewayServer(grpc.Server):  # type: ignore[misc]
    """A gRPC server whose every handler is wrapped by the one interceptor.

    Mount servicers with the generated ``add_*Servicer_to_server(servicer,
    server)``: they register their method handlers by name
    (``add_registered_method_handlers``), and each is wrapped (or refused) there.
    Handlers that cannot be enumerated (a bare generic handler) are refused at
    ``start()``.
    """

    def __init__(
        self,
        authenticate: Authenticator,
        *,
        max_workers: int,
        name: str,
        authorize: Authorizer,
        options: Sequence[tuple[str, int | str]] = (),
        limits: Limits = DEFAULT_LIMITS,
        observe: HandlerWrapper | None = None,
    ) -> None:
        self._interceptor = GatewayInterceptor(authenticate, authorize, limits)
        self._observe = observe
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name),
            # Never share a port: with gRPC's default SO_REUSEPORT a second
            # process listening on the same address (a stale gateway, another
            # jurisdiction's on the same host) would silently take half the
            # connections. Binding an address in use fails instead.
            options=[*options, ("grpc.so_reuseport", 0)],
        )
        self._opaque = 0  # generic handlers not (yet) matched by a registered service

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Sequence[Any]) -> None:
        # Generated code registers each service twice: an opaque generic handler,
        # then the same methods by name. Only the named ones are mounted (wrapped).
        self._opaque += len(generic_rpc_handlers)

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, Any]
    ) -> None:
        wrapped = {
            name: self._interceptor.wrap(f"/{service_name}/{name}", handler)
            for name, handler in method_handlers.items()
        }
        if self._observe is not None:
            wrapped = {n: self._observe(f"/{service_name}/{n}", h) for n, h in wrapped.items()}
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service_name, wrapped),)
        )
        self._server.add_registered_method_handlers(service_name, wrapped)
        self._opaque -= 1

    def add_insecure_port(self, address: str) -> int:
        return int(self._server.add_insecure_port(address))

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        return int(self._server.add_secure_port(address, server_credentials))

    def listen(self, setting: str, address: str, credentials: grpc.ServerCredentials) -> int:
        """Bind ``address`` (the value of configuration ``setting``) or raise
        ``ConfigurationError`` naming both: in use, or not an address of this host."""
        try:
            return self.add_secure_port(address, credentials)
        except RuntimeError as exc:  # grpc: "Failed to bind to address ..."
            raise ConfigurationError(
                f"{setting} = {address!r}: cannot listen there (the port is in use by another "
                "process, or the address is not one of this host's)"
            ) from exc

    def start(self) -> None:
        if self._opaque > 0:
            raise UnwrappableHandler(
                "a servicer registered handlers without naming its methods, so the "
                "gateway's interceptor cannot wrap them; regenerate it with grpcio-tools >= 1.63"
            )
        self._server.start()

    def stop(self, grace: float | None) -> Any:
        return self._server.stop(grace)

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return bool(self._server.wait_for_termination(timeout))
