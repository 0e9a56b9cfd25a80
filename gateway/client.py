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


class _BearerAuth(grpc.AuthMetadataPlugin):  # type: ignore[misc]
    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, context: Any, callback: Any) -> None:
        callback((("authorization", f"Bearer {self._token}"),), None)


def service_channel(
    address: str, gateway_cert_pem: bytes, jurisdiction: str, token: str | None
) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(root_certificates=gateway_cert_pem)
    if token is not None:
        creds = grpc.composite_channel_credentials(
            creds, grpc.metadata_call_credentials(_BearerAuth(token))
        )
    return grpc.secure_channel(
        address, creds, options=[("grpc.ssl_target_name_override", tls_server_name(jurisdiction))]
    )


class ServiceClient:
    """``ServiceClient(addr, cert, "130000", token).get_records(...)``."""

    def __init__(
        self, address: str, gateway_cert: Path | bytes, jurisdiction: str, token: str | None
    ) -> None:
        pem = gateway_cert.read_bytes() if isinstance(gateway_cert, Path) else gateway_cert
        self.channel = service_channel(address, pem, jurisdiction, None)
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token is not None else ()
        )
        self.records = service_pb2_grpc.RecordExchangeStub(self.channel)

    def get_records(self, timeout: float = 15.0, **fields: Any) -> service_pb2.GetRecordsResponse:
        reply: service_pb2.GetRecordsResponse = self.records.GetRecords(
            service_pb2.GetRecordsRequest(**fields), timeout=timeout, metadata=self._metadata
        )
        return reply

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
