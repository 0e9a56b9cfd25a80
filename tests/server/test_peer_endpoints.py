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
