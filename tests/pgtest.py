"""The real PostgreSQL server tests run against, and a fresh schema per test.

``GATEWAY_TEST_POSTGRES_DSN`` names the server (default: the machine's
``postgresql://postgres@127.0.0.1:5432/test``). With ``CI=true`` an unreachable
server fails the test; elsewhere the test is skipped with a message naming
the variable.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import sql

ENV = "GATEWAY_TEST_POSTGRES_DSN"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_dsn() -> str:
    """The DSN, after checking the server answers (skip or fail as above)."""
    dsn = os.environ.get(ENV, DEFAULT_DSN)
    try:
        psycopg.connect(dsn, connect_timeout=3).close()
    except psycopg.Error as exc:
        message = f"PostgreSQL not reachable at {ENV}={dsn}: {str(exc).strip()[:200]}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: PostgreSQL tests must run)")
        pytest.skip(message + f"; set {ENV} to a server's DSN to run these tests")
    return dsn


@contextmanager
def fresh_schema(dsn: str, prefix: str = "t") -> Iterator[str]:
    """A new empty schema name, dropped (with everything in it) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


class TcpProxy:
    """A loopback TCP forwarder to stand for the network between a gateway and
    its database: ``cut()`` drops every connection and refuses new ones,
    ``restore()`` listens again on the same port; ``freeze()`` keeps every
    connection open but forwards nothing (a hung link: no error, no answer)
    until ``thaw()``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        import socket
        import threading

        self._socket = socket
        self._threading = threading
        self.target = (target_host, target_port)
        from gateway.demo.setup import free_port

        self.port = free_port()  # re-bound by restore(): outside the ephemeral range
        self._conns: list[object] = []
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()
        self._listener: object | None = None
        self.restore()

    def restore(self) -> None:
        s = self._socket.socket()
        s.setsockopt(self._socket.SOL_SOCKET, self._socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        self._listener = s
        self._threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, listener: object) -> None:
        sock = self._socket
        while True:
            try:
                client, _ = listener.accept()  # type: ignore[attr-defined]
            except OSError:
                return
            try:
                upstream = sock.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                self._threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def _pipe(self, a: object, b: object) -> None:
        import socket

        try:
            while data := a.recv(65536):  # type: ignore[attr-defined]
                self._flowing.wait()
                b.sendall(data)  # type: ignore[attr-defined]
        except OSError:
            pass
        finally:
            # shutdown() first: it sends FIN and wakes the other direction's
            # blocked recv(); close() alone would leave that socket open.
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)  # type: ignore[attr-defined]
                except OSError:
                    pass
                s.close()  # type: ignore[attr-defined]

    def cut(self) -> None:
        if self._listener is not None:
            try:  # wakes the thread blocked in accept(); close() alone does not
                self._listener.shutdown(self._socket.SHUT_RDWR)  # type: ignore[attr-defined]
            except OSError:
                pass
            self._listener.close()  # type: ignore[attr-defined]
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.shutdown(self._socket.SHUT_RDWR)  # type: ignore[attr-defined]
            except OSError:
                pass
            c.close()  # type: ignore[attr-defined]
        self._flowing.set()  # a frozen pipe wakes, finds its socket closed, and ends

    @classmethod
    def before(cls, dsn: str) -> TcpProxy:
        """A proxy in front of the server ``dsn`` names."""
        info = psycopg.conninfo.conninfo_to_dict(dsn)
        return cls(str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432))

    def url_for(self, dsn: str) -> str:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
        user = info.get("user") or "postgres"
        return f"postgresql://{user}@127.0.0.1:{self.port}/{info.get('dbname') or 'test'}"
