"""The one interceptor fails closed: what it cannot wrap is never served."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gateway.errors import NotFound
from gateway.server.access import ServiceRegistry
from gateway.server.interceptor import GatewayServer, UnwrappableHandler, caller
from tests.helpers import service_port


def _server() -> GatewayServer:
    registry = ServiceRegistry([])
    return GatewayServer(
        registry, max_workers=2, name="test-interceptor", authorize=registry.authorize
    )


def _answer(request: bytes, context: Any) -> Any:
    return request


@pytest.mark.parametrize(
    ("kind", "make"),
    [
        ("stream_unary", grpc.stream_unary_rpc_method_handler),
        ("stream_stream", grpc.stream_stream_rpc_method_handler),
    ],
)
def test_client_streaming_handler_is_refused_at_start_up_not_served_unauthenticated(
    kind: str, make: Any
) -> None:
    server = _server()
    with pytest.raises(UnwrappableHandler) as err:
        server.add_registered_method_handlers("test.Bulk", {"Transfer": make(_answer)})
    assert "/test.Bulk/Transfer" in str(err.value) and kind in str(err.value)
    server.stop(None)


def test_server_stream_authenticates_before_its_first_message_and_maps_errors_mid_stream() -> None:
    sent: list[str] = []

    def transfer(request: bytes, context: Any) -> Any:
        sent.append(caller())
        yield b"chunk-0"
        yield b"chunk-1"
        raise NotFound("the register went away")

    def mount(server: grpc.Server) -> None:
        # Under a service the role table serves (deny by default elsewhere).
        server.add_registered_method_handlers(
            "dataexchange.gateway.v1.RecordExchange",
            {"Transfer": grpc.unary_stream_rpc_method_handler(transfer)},
        )

    with service_port(mount, ["tianjin-planning"]) as svc, svc.channel() as channel:
        stream = channel.unary_stream("/dataexchange.gateway.v1.RecordExchange/Transfer")
        with pytest.raises(grpc.RpcError) as err:
            list(stream(b"x", timeout=10))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED and not sent
        got: list[bytes] = []
        with pytest.raises(grpc.RpcError) as err:
            for m in stream(b"x", metadata=svc.metadata("tianjin-planning"), timeout=10):
                got.append(m)
        assert got == [b"chunk-0", b"chunk-1"] and sent == ["tianjin-planning"]
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert dict(err.value.trailing_metadata())["gateway-error"] == "NotFound"


def test_handlers_without_method_names_are_refused_at_start() -> None:
    server = _server()
    generic = grpc.method_handlers_generic_handler(
        "test.Opaque", {"Call": grpc.unary_unary_rpc_method_handler(_answer)}
    )
    server.add_generic_rpc_handlers((generic,))
    with pytest.raises(UnwrappableHandler, match="without naming its methods"):
        server.start()
    server.stop(None)


def test_health_stays_public_while_other_methods_need_a_caller() -> None:
    seen: list[str] = []

    def lookup(request: bytes, context: Any) -> bytes:
        seen.append(caller())
        raise NotFound("no such thing")

    def mount(server: grpc.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
        # Under a service the role table serves: anything else is refused (deny by default).
        server.add_registered_method_handlers(
            "dataexchange.gateway.v1.RecordExchange",
            {"Find": grpc.unary_unary_rpc_method_handler(lookup)},
        )

    with service_port(mount, ["beijing-audit"]) as svc, svc.channel() as channel:
        check = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert check.status == health_pb2.HealthCheckResponse.SERVING
        find = channel.unary_unary("/dataexchange.gateway.v1.RecordExchange/Find")
        with pytest.raises(grpc.RpcError) as err:
            find(b"x", timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED and not seen
        with pytest.raises(grpc.RpcError) as err:
            find(b"x", metadata=svc.metadata("beijing-audit"), timeout=10)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert dict(err.value.trailing_metadata())["gateway-error"] == "NotFound"
        assert seen == ["beijing-audit"]


def test_servicer_crash_is_internal_with_a_reference_not_its_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def crash(request: bytes, context: Any) -> bytes:
        raise RuntimeError("secret path /etc/gateway/keys")

    def mount(server: grpc.Server) -> None:
        server.add_registered_method_handlers(
            "dataexchange.gateway.v1.RecordExchange",
            {"Call": grpc.unary_unary_rpc_method_handler(crash)},
        )

    with service_port(mount, ["beijing-audit"]) as svc, svc.channel("beijing-audit") as channel:
        with pytest.raises(grpc.RpcError) as err:
            channel.unary_unary("/dataexchange.gateway.v1.RecordExchange/Call")(b"x", timeout=10)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in (err.value.details() or "")
    assert "internal error (reference" in (err.value.details() or "")
    assert "secret path" in caplog.text  # the traceback goes to our log only


def test_no_servicer_bypasses_the_interceptor_with_its_own_status() -> None:
    # A servicer's own abort is an exception the interceptor cannot tell from a
    # crash (it became INTERNAL for the ledger's NOT_FOUND): servicers raise the
    # error tree instead.
    servicers = Path(__file__).resolve().parents[2] / "gateway" / "server" / "servicers"
    modules = sorted(servicers.glob("*.py"))
    assert len(modules) >= 5
    for module in modules:
        code = module.read_text(encoding="utf-8").split('"""', 2)[-1]  # past the docstring
        for call in ("context.abort", "context.set_code", "context.set_details"):
            assert call not in code, f"{module.name} calls {call}"


def test_method_outside_the_role_table_is_refused_even_to_a_system_with_every_role() -> None:
    def mount(server: grpc.Server) -> None:
        server.add_registered_method_handlers(
            "test.Lookup", {"Find": grpc.unary_unary_rpc_method_handler(_answer)}
        )

    with service_port(mount, ["beijing-audit"]) as svc, svc.channel("beijing-audit") as channel:
        with pytest.raises(grpc.RpcError) as err:
            channel.unary_unary("/test.Lookup/Find")(b"x", timeout=10)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not served to service systems" in (err.value.details() or "")
