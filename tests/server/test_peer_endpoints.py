"""A member with several endpoints: calls are spread, a down endpoint is skipped."""

from __future__ import annotations

import dataclasses

from gateway.crypto import TlsIdentity
from gateway.errors import InvalidArgument
from gateway.limits import DEFAULT_LIMITS
from gateway.server.transport import DOWN_SECONDS, GrpcPeerTransport
from gateway.trust import Member
from tests.conftest import RunningFederation
from tests.storage.kit import hebei_exchange


def _member(federation: RunningFederation, endpoints: tuple[str, ...]) -> Member:
    m = federation.gateways["110000"].bundle().member("110000")
    return dataclasses.replace(m, endpoint=endpoints[0], endpoints=endpoints)


def test_calls_are_spread_round_robin_and_a_down_endpoint_goes_last(
    federation: RunningFederation,
) -> None:
    now = [100.0]
    tls: TlsIdentity = federation.gateways["110000"].keys.tls
    t = GrpcPeerTransport(tls, DEFAULT_LIMITS, clock=lambda: now[0])
    m = _member(federation, ("127.0.0.1:1001", "127.0.0.1:1002", "127.0.0.1:1003"))
    firsts = [t._order(m)[0] for _ in range(6)]
    assert sorted(set(firsts)) == list(m.endpoints) and firsts[:3] != firsts[1:4]
    t._mark_down(m, "127.0.0.1:1002")
    for _ in range(3):
        assert t._order(m)[-1] == "127.0.0.1:1002"
    now[0] += DOWN_SECONDS + 0.1
    assert "127.0.0.1:1002" in {t._order(m)[0] for _ in range(3)}


def test_call_moves_off_an_endpoint_nobody_listens_on(federation: RunningFederation) -> None:
    """The holder's bundle entry lists a dead port first: exchanges still succeed."""
    from gateway.demo.setup import free_port

    requester = federation.gateways["130000"]
    real = federation.site("110000").peer_port
    dead = f"127.0.0.1:{free_port()}"
    original = requester.bundle
    bundle = original()
    member = _member(federation, (dead, f"127.0.0.1:{real}"))
    patched = dataclasses.replace(
        bundle, members=tuple(member if x.jurisdiction == "110000" else x for x in bundle.members)
    )
    requester._bundle = patched
    try:
        for _ in range(4):
            hebei_exchange(federation)
        assert ("110000", dead) in requester.transport._down_until, "dead endpoint never tried"
    finally:
        requester._bundle = bundle


def test_endpoints_must_start_with_the_endpoint_and_not_repeat(
    federation: RunningFederation,
) -> None:
    m = federation.gateways["110000"].bundle().member("110000")
    for bad in (("127.0.0.1:9", m.endpoint), (m.endpoint, m.endpoint), (m.endpoint, "nohost")):
        try:
            dataclasses.replace(m, endpoints=bad)
        except InvalidArgument:
            continue
        raise AssertionError(f"accepted {bad}")


def test_a_restarted_peer_is_reached_at_once_after_failed_background_calls(
    federation: RunningFederation,
) -> None:
    """Calls (receipts, witness rounds) that failed while a peer was down push
    its channel into reconnection backoff; gRPC would then fail the first
    calls after the peer is back without trying. The backoff is bounded and a
    call that found no connection waits for one more attempt."""
    from concurrent import futures

    import grpc

    from gateway._proto.dataexchange.gateway.v1 import peer_pb2, peer_pb2_grpc
    from gateway.demo.setup import free_port
    from gateway.errors import PeerUnavailable

    class _Echo(peer_pb2_grpc.PeerExchangeServicer):
        def FetchRecords(
            self, request: peer_pb2.SignedEnvelope, context: grpc.ServicerContext
        ) -> peer_pb2.SignedEnvelope:
            return peer_pb2.SignedEnvelope(payload_type="echo", payload=request.payload)

    holder_tls: TlsIdentity = federation.gateways["110000"].keys.tls
    t = GrpcPeerTransport(federation.gateways["130000"].keys.tls, DEFAULT_LIMITS)
    address = f"127.0.0.1:{free_port()}"
    m = _member(federation, (address,))
    envelope = peer_pb2.SignedEnvelope(payload_type="x", payload=b"hello")
    for _ in range(6):  # the peer is down: each call fails, the backoff grows
        try:
            t.call(m, "FetchRecords", envelope, timeout=0.3)
        except PeerUnavailable:
            continue
        raise AssertionError("a call to a port nobody listens on succeeded")
    server = grpc.server(futures.ThreadPoolExecutor(2))
    peer_pb2_grpc.add_PeerExchangeServicer_to_server(_Echo(), server)
    creds = grpc.ssl_server_credentials([(holder_tls.key_pem, holder_tls.cert_pem)])
    server.add_secure_port(address, creds)
    server.start()
    try:
        reply = t.call(m, "FetchRecords", envelope, timeout=5.0)
        assert reply.payload == b"hello"
    finally:
        server.stop(0)
        t.close()
