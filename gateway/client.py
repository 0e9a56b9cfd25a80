"""A service system's client for its local gateway (Python convenience).

Owns: opening a TLS channel to the gateway's service port (trusting the
gateway's certificate), sending the bearer token as call metadata
(``authorization: Bearer <token>``, exactly what a Java, Go or Node client
sends; a Python credentials plugin costs a thread hop per call), and stubs for the
service-system API. Other languages need only protos/ and the same two things:
the gateway's certificate and a token (see README "Calling from Java, Go or Node").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc

from gateway._proto.dataexchange.gateway.v1 import service_pb2, service_pb2_grpc
from gateway.identity import tls_server_name


class _CallDetails(grpc.ClientCallDetails):  # type: ignore[misc]
    def __init__(self, base: Any, metadata: tuple[tuple[str, str], ...]) -> None:
        self.method = base.method
        self.timeout = base.timeout
        self.metadata = metadata
        self.credentials = base.credentials
        self.wait_for_ready = getattr(base, "wait_for_ready", None)
        self.compression = getattr(base, "compression", None)


class _BearerMetadata(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Adds ``authorization: Bearer <token>`` to each call's metadata, in the
    caller's thread (a credentials plugin would run on a gRPC thread per call)."""

    def __init__(self, token: str) -> None:
        self._md = (("authorization", f"Bearer {token}"),)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(_CallDetails(details, (*(details.metadata or ()), *self._md)), request)


def service_channel(
    address: str, gateway_cert_pem: bytes, jurisdiction: str, token: str | None
) -> grpc.Channel:
    """A TLS channel to a gateway's service port; with ``token``, every unary call on
    it carries ``authorization: Bearer <token>`` as call metadata."""
    creds = grpc.ssl_channel_credentials(root_certificates=gateway_cert_pem)
    channel = grpc.secure_channel(
        address, creds, options=[("grpc.ssl_target_name_override", tls_server_name(jurisdiction))]
    )
    if token is None:
        return channel
    return grpc.intercept_channel(channel, _BearerMetadata(token))


class ServiceClient:
    """``ServiceClient(addr, cert, "130000", token).get_records(...)``."""

    def __init__(
        self, address: str, gateway_cert: Path | bytes, jurisdiction: str, token: str | None
    ) -> None:
        pem = gateway_cert.read_bytes() if isinstance(gateway_cert, Path) else gateway_cert
        self.channel = service_channel(address, pem, jurisdiction, token)
        self.records = service_pb2_grpc.RecordExchangeStub(self.channel)

    def get_records(self, timeout: float = 15.0, **fields: Any) -> service_pb2.GetRecordsResponse:
        reply: service_pb2.GetRecordsResponse = self.records.GetRecords(
            service_pb2.GetRecordsRequest(**fields), timeout=timeout
        )
        return reply

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
