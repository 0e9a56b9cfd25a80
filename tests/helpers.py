"""Small helpers shared by tests."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc

from gateway import crypto
from gateway.client import service_channel
from gateway.config import SERVICE_ROLES, ServiceSystem
from gateway.identity import tls_server_name
from gateway.ledger.events import LedgerEvent
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.server.access import ServiceRegistry
from gateway.server.app import service_credentials, service_server


def ledger_events(gw: Any, receipts: bool = False) -> list[LedgerEvent]:
    """Decoded events of a gateway's ledger, oldest first. Receipts (which peers send
    asynchronously, in batches, after earlier exchanges) only with ``receipts=True``, so
    tests counting the entries an exchange made are not disturbed by them."""
    events = [r.event for r in gw.ledger.entries(0, gw.ledger.size)]
    return events if receipts else [e for e in events if e.kind != "receipt"]


@dataclass(frozen=True)
class ServicePort:
    """A real service-port server on loopback: TLS, bearer tokens, the real interceptor."""

    address: str
    jurisdiction: str
    cert_pem: bytes
    tokens: dict[str, str]  # registered service-system id -> its bearer token

    def channel(self, who: str | None = None) -> grpc.Channel:
        """A TLS channel; with ``who``, every call carries that system's token."""
        token = self.tokens[who] if who is not None else None
        return service_channel(self.address, self.cert_pem, self.jurisdiction, token)

    def metadata(self, who: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.tokens[who]}"),)


@contextmanager
def service_port(
    mount: Callable[[grpc.Server], None],
    systems: Sequence[str],
    jurisdiction: str = "110000",
    limits: Limits = DEFAULT_LIMITS,
) -> Iterator[ServicePort]:
    """Serve what ``mount`` adds on the gateway's own service-port server."""
    name = tls_server_name(jurisdiction)
    tls = crypto.make_tls_identity(name, [name])
    tokens = {s: secrets.token_urlsafe(24) for s in systems}
    auth = ServiceRegistry(
        [
            ServiceSystem(id=s, roles=SERVICE_ROLES, token_sha256=crypto.sha256_hex(t.encode()))
            for s, t in tokens.items()
        ]
    )
    server = service_server(auth, limits, max_workers=4, name=f"test-svc-{jurisdiction}")
    mount(server)
    port = server.add_secure_port("127.0.0.1:0", service_credentials(tls, False))
    server.start()
    try:
        yield ServicePort(f"127.0.0.1:{port}", jurisdiction, tls.cert_pem, tokens)
    finally:
        server.stop(None)
