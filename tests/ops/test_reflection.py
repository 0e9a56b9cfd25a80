"""gRPC server reflection on the service port (what grpcurl and Postman use) and health."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from gateway.client import service_channel
from gateway.identity import tls_server_name
from tests.conftest import RunningFederation

ROOT = Path(__file__).resolve().parents[2]


def test_reflection_lists_every_service_system_api_without_a_token(
    federation: RunningFederation,
) -> None:
    site = federation.site("110000")
    ch = service_channel(site.service_address, site.tls_cert.read_bytes(), "110000", None)
    try:
        db = ProtoReflectionDescriptorDatabase(ch)
        services = set(db.get_services())
        assert {
            "dataexchange.gateway.v1.RecordExchange",
            "dataexchange.gateway.v1.Statistics",
            "dataexchange.gateway.v1.Ledger",
            "grpc.health.v1.Health",
        } <= services
        # Members-only peer API is not advertised to service-port tooling.
        assert "dataexchange.gateway.v1.PeerExchange" not in services
        # A tool can describe a request message from the server alone.
        fd = db.FindFileContainingSymbol("dataexchange.gateway.v1.GetRecordsRequest")
        fields = {f.name for m in fd.message_type if m.name == "GetRecordsRequest" for f in m.field}
        assert {"holder_jurisdiction", "dataset", "purpose", "subject_ids"} <= fields
    finally:
        ch.close()


def test_reflection_does_not_bypass_authentication_of_the_api_it_describes(
    federation: RunningFederation,
) -> None:
    site = federation.site("110000")
    ch = service_channel(site.service_address, site.tls_cert.read_bytes(), "110000", None)
    try:
        from gateway._proto.dataexchange.gateway.v1 import service_pb2, service_pb2_grpc

        with pytest.raises(grpc.RpcError) as err:
            service_pb2_grpc.RecordExchangeStub(ch).ListDatasets(
                service_pb2.ListDatasetsRequest(), timeout=5
            )
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        ch.close()


def test_peer_port_refuses_a_probe_without_a_member_certificate_at_the_handshake(
    federation: RunningFederation,
) -> None:
    site = federation.site("110000")
    creds = grpc.ssl_channel_credentials(root_certificates=site.tls_cert.read_bytes())
    ch = grpc.secure_channel(
        f"127.0.0.1:{site.peer_port}",
        creds,
        options=[("grpc.ssl_target_name_override", tls_server_name("110000"))],
    )
    try:
        with pytest.raises(grpc.RpcError) as err:
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=3)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        ch.close()


def test_health_reference_in_protos_names_the_service_and_methods_the_gateway_serves() -> None:
    text = (ROOT / "protos" / "grpc" / "health" / "v1" / "README.md").read_text()
    desc = health_pb2.DESCRIPTOR.services_by_name["Health"]
    assert f"service `{desc.name}`" in text and f"package `{desc.file.package}`" in text
    for method in desc.methods:
        assert f"`{method.name}(" in text
