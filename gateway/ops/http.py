"""The operations listener: plain HTTP, loopback by default.

Owns: serving ``GET /metrics`` (Prometheus text format), ``GET /healthz``
(liveness: the process answers) and ``GET /readyz`` (readiness: every named
check passes; 503 with the failing checks otherwise; a passing check's
warning, such as a certificate close to its expiry, under ``warnings``) on
``[listen] ops``.
Nothing else is served: other paths are 404, other methods 405. No request
body is read and no personal data or secret is in any answer. A stalled
connection is closed after ``ops_request_timeout_seconds`` and at most
``ops_max_connections`` are served at once (``Limits``); the listener
is meant for a Prometheus scraper and a load balancer's probe on a private
network (bind it to loopback or a management interface, never to the
internet).

Does not own: what is measured (``gateway.ops.metrics``) or what the
readiness checks look at (``gateway.ops.ready``).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from gateway.errors import InvalidArgument
from gateway.limits import DEFAULT_LIMITS, Limits

log = logging.getLogger("gateway.ops")


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str = ""


Check = Callable[[], CheckResult]


def run_checks(checks: Sequence[Check]) -> list[CheckResult]:
    out = []
    for check in checks:
        try:
            out.append(check())
        except Exception as exc:  # a check that crashes is a failing check
            out.append(CheckResult(getattr(check, "__name__", "check"), False, type(exc).__name__))
    return out


def split_hostport(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise InvalidArgument.expected("[listen] ops", "host:port like 127.0.0.1:9464", address)
    return host.strip("[]"), int(port)


class _Server(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` at once (past it a
    connection is closed unanswered); a connection that fails (reset, timed
    out) is one DEBUG line, not a traceback on standard error."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        max_connections: int,
    ) -> None:
        super().__init__(address, handler)
        self._max = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            log.debug("ops connection closed: %d already open", self._max)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        log.debug("ops connection failed: %s", type(exc).__name__, extra={"event": "ops_http"})


class OpsListener:
    """``/metrics``, ``/healthz`` and ``/readyz`` on a background thread."""

    def __init__(
        self,
        address: str,
        metrics: Callable[[], bytes],
        checks: Sequence[Check],
        content_type: str,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        host, port = split_hostport(address)
        listener = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "jurisdiction-gateway-ops"
            sys_version = ""
            # Reading the request and writing the answer: a client that stalls
            # is dropped instead of holding its thread for ever.
            timeout = limits.ops_request_timeout_seconds

            def do_GET(self) -> None:
                listener._get(self)

            def do_HEAD(self) -> None:
                listener._get(self, head=True)

            def _refuse(self) -> None:
                self._send(405, b"method not allowed\n", "text/plain", allow="GET, HEAD")

            do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

            def _send(
                self, status: int, body: bytes, ctype: str, head: bool = False, allow: str = ""
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                if allow:
                    self.send_header("Allow", allow)
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("ops %s", format % args, extra={"event": "ops_http"})

        self._metrics = metrics
        self._checks = tuple(checks)
        self._ctype = content_type
        self._server = _Server((host, port), Handler, limits.ops_max_connections)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},  # how long stop() waits for the loop
            name="ops-listener",
            daemon=True,
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def readiness(self) -> list[CheckResult]:
        return run_checks(self._checks)

    def _get(self, h: Any, head: bool = False) -> None:
        path = h.path.split("?", 1)[0]
        if path == "/metrics":
            try:
                body = self._metrics()
            except Exception:
                log.exception("metrics exposition failed", extra={"event": "ops_http"})
                h._send(500, b"metrics unavailable\n", "text/plain", head)
                return
            h._send(200, body, self._ctype, head)
        elif path == "/healthz":
            h._send(200, b'{"status":"ok"}\n', "application/json", head)
        elif path == "/readyz":
            results = self.readiness()
            ready = all(r.ok for r in results)
            doc: dict[str, Any] = {
                "status": "ready" if ready else "not ready",
                "checks": {r.name: ("ok" if r.ok else r.detail or "failed") for r in results},
            }
            # A check that passes with a detail: something to do soon (say, a
            # certificate close to its expiry), not yet a reason to refuse traffic.
            warnings = {r.name: r.detail for r in results if r.ok and r.detail}
            if warnings:
                doc["warnings"] = warnings
            body = json.dumps(doc, ensure_ascii=False).encode() + b"\n"
            h._send(200 if ready else 503, body, "application/json", head)
        else:
            h._send(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain", head)

    def start(self) -> OpsListener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
