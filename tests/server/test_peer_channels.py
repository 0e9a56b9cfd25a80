"""Outbound peer channels and the peer port's trusted certificates follow the trust bundle.

A channel built for a member's old certificates is closed once a new bundle
changes them (after the calls still on it end), the next call builds a new one,
and the cache is bounded. The peer port stops completing handshakes with a
retired certificate when its overlap ends, not only at the next bundle.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from gateway.crypto import TlsIdentity
from gateway.identity import load_keys, tls_server_name
from gateway.keyring import RetiredKey
from gateway.limits import Limits
from gateway.server.app import system_clock_ms
from gateway.server.transport import GrpcPeerTransport
from gateway.trust import Member, TrustBundle
from tests.conftest import RunningFederation, start_federation, stop_federation
from tests.server.access_testkit import cli
from tests.storage.kit import hebei_exchange


def _rotate_tls(rf: RunningFederation, code: str, overlap_hours: str) -> int:
    """``code`` rotates its TLS certificate on disk (its process keeps the old one) and
    the authority issues the bundle listing both; every gateway picks it up. Its version."""
    keys = rf.site(code).root / "keys"
    cli("keygen", "--rotate", "tls", "--out", str(keys))
    cli("federation", "rotate-keys", "--bundle", str(rf.fed.bundle),
        "--authority-key", str(rf.fed.authority_key), "--public", str(keys / "public.json"),
        "--overlap-hours", overlap_hours)  # fmt: skip
    version = rf.gateways[code].bundle().version + 1
    deadline = time.monotonic() + 10
    while not all(g.bundle().version >= version for g in rf.gateways.values()):
        assert time.monotonic() < deadline, "the gateways did not pick up the new bundle"
        for g in rf.gateways.values():
            g.reload_bundle()
        time.sleep(0.05)
    return version


def _closed(channel: grpc.Channel) -> bool:
    try:
        channel.unary_unary("/closed.Probe/Check")(b"", timeout=0.001)
    except ValueError:  # "Cannot invoke RPC on closed channel!"
        return True
    except grpc.RpcError:
        return False
    return False


@pytest.fixture
def channels_made(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, grpc.Channel]]:
    """Every TLS channel opened in this process while the test runs, with its target."""
    made: list[tuple[str, grpc.Channel]] = []
    real = grpc.secure_channel

    def spy(target: str, *args: object, **kwargs: object) -> grpc.Channel:
        ch = real(target, *args, **kwargs)
        made.append((target, ch))
        return ch

    monkeypatch.setattr(grpc, "secure_channel", spy)
    return made


@pytest.fixture
def rf(tmp_path: Path) -> Iterator[RunningFederation]:
    fed = start_federation(tmp_path / "fed", rows=60)
    yield fed
    stop_federation(fed)


def test_after_a_bundle_change_the_channel_built_for_the_old_certificate_is_closed_and_the_next_call_uses_a_new_one(
    channels_made: list[tuple[str, grpc.Channel]], rf: RunningFederation
) -> None:
    beijing = rf.gateways["110000"].bundle().member("110000").endpoint
    hebei_exchange(rf)
    old = [ch for target, ch in channels_made if target == beijing]
    assert old, "no channel to Beijing's peer port was made"
    # Beijing rotates its TLS certificate; the bundle lists the new one and, for the
    # overlap, the old one (Beijing, not restarted, still serves it).
    _rotate_tls(rf, "110000", overlap_hours="1")
    deadline = time.monotonic() + 5
    while not all(_closed(ch) for ch in old):  # a call in flight may finish first
        assert time.monotonic() < deadline, "a channel built for the old bundle is still open"
        time.sleep(0.05)
    hebei_exchange(rf)
    current = rf.gateways["130000"].transport._slots[("110000", beijing)]
    assert current.channel not in old and not _closed(current.channel)
    assert len(current.trust) == 2  # Beijing's new certificate and, in its overlap, the old one
    assert any(ch is current.channel for target, ch in channels_made if target == beijing)


# --------------------------------------------------------------------------
# The cache itself (channels are made, never connected).
# --------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _with_retired_tls(member: Member, other: TlsIdentity) -> Member:
    """``member`` as a bundle lists it after a TLS rotation: ``other`` retired, still valid."""
    until = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    retired = RetiredKey("tls", other.cert_pem.decode("ascii"), not_after=until)
    return dataclasses.replace(member, retired=(*member.retired, retired))


def _bundle_with(bundle: TrustBundle, member: Member) -> TrustBundle:
    members = tuple(member if m.jurisdiction == member.jurisdiction else m for m in bundle.members)
    return dataclasses.replace(bundle, members=members, digest="0" * 64)


def test_a_channel_replaced_while_a_call_is_on_it_is_closed_when_the_call_ends(
    federation: RunningFederation,
) -> None:
    bundle = federation.gateways["130000"].bundle()
    me = federation.gateways["130000"].keys.tls
    t = GrpcPeerTransport(me, Limits(), clock=_Clock())
    beijing = bundle.member("110000")
    in_flight = t._acquire(beijing, beijing.endpoint)
    rotated = _with_retired_tls(beijing, federation.gateways["120000"].keys.tls)
    t.refresh(_bundle_with(bundle, rotated))
    assert not in_flight.closed and not _closed(in_flight.channel)  # its call goes on
    fresh = t._acquire(rotated, rotated.endpoint)  # the next call: a new channel
    assert fresh is not in_flight and len(fresh.trust) == 2
    t._release(in_flight)
    assert in_flight.closed and _closed(in_flight.channel)
    t._release(fresh)
    assert not fresh.closed
    t.close()
    assert _closed(fresh.channel)


def test_a_replaced_channel_whose_call_never_ends_is_closed_after_its_grace(
    federation: RunningFederation,
) -> None:
    clock = _Clock()
    me = federation.gateways["130000"].keys.tls
    t = GrpcPeerTransport(me, Limits(peer_channel_retire_seconds=30), clock=clock)
    beijing = federation.gateways["130000"].bundle().member("110000")
    stuck = t._acquire(beijing, beijing.endpoint)
    rotated = _with_retired_tls(beijing, federation.gateways["120000"].keys.tls)
    t._release(t._acquire(rotated, rotated.endpoint))  # replaces it lazily, on use
    clock.now += 29
    t._release(t._acquire(rotated, rotated.endpoint))
    assert not stuck.closed
    clock.now += 1
    t._release(t._acquire(rotated, rotated.endpoint))
    assert stuck.closed and _closed(stuck.channel) and not t._retired
    t._release(stuck)  # the cancelled call returns
    t.close()


def test_the_channel_cache_is_bounded_and_an_endpoint_dropped_by_the_bundle_is_closed(
    federation: RunningFederation,
) -> None:
    bundle = federation.gateways["130000"].bundle()
    t = GrpcPeerTransport(
        federation.gateways["130000"].keys.tls, Limits(max_peer_channels=2), clock=_Clock()
    )
    beijing = bundle.member("110000")
    spread = dataclasses.replace(
        beijing, endpoints=(beijing.endpoint, "127.0.0.1:1002", "127.0.0.1:1003")
    )
    made = []
    for endpoint in spread.endpoints:
        ch = t._acquire(spread, endpoint)
        t._release(ch)
        made.append(ch)
    assert len(t._slots) == 2 and made[0].closed and not made[1].closed
    # The bundle now lists one endpoint: the channels to the others are closed.
    t.refresh(_bundle_with(bundle, dataclasses.replace(spread, endpoints=(beijing.endpoint,))))
    assert made[1].closed and made[2].closed and not t._slots
    t.close()


# --------------------------------------------------------------------------
# The peer port's trusted client certificates.
# --------------------------------------------------------------------------


def _peer_call(rf: RunningFederation, dst: str, ident: TlsIdentity) -> grpc.StatusCode:
    """GetCheckpoint on ``dst``'s peer port over a new connection presenting ``ident``:
    OK or NOT_FOUND (no checkpoint yet) once the caller is authenticated."""
    from gateway._proto.dataexchange.gateway.v1 import ledger_pb2, ledger_pb2_grpc

    site = rf.site(dst)
    creds = grpc.ssl_channel_credentials(site.tls_cert.read_bytes(), ident.key_pem, ident.cert_pem)
    options = [
        ("grpc.ssl_target_name_override", tls_server_name(dst)),
        ("grpc.use_local_subchannel_pool", 1),  # a new connection, a new handshake
    ]
    with grpc.secure_channel(f"127.0.0.1:{site.peer_port}", creds, options=options) as ch:
        try:
            ledger_pb2_grpc.LedgerStub(ch).GetCheckpoint(
                ledger_pb2.GetCheckpointRequest(), timeout=5
            )
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def test_a_retired_certificate_stops_completing_handshakes_when_its_overlap_ends(
    rf: RunningFederation,
) -> None:
    """No new bundle after the overlap: the peer port's trusted set is rebuilt when
    the overlap ends, so the old certificate no longer even completes a handshake."""
    old = rf.gateways["130000"].keys.tls
    _rotate_tls(rf, "130000", overlap_hours="1")
    new = load_keys(rf.site("130000").root / "keys").tls
    answered = {grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND}
    assert _peer_call(rf, "110000", old) in answered  # inside the overlap
    beijing = rf.gateways["110000"]
    beijing._clock = lambda: system_clock_ms() + 2 * 3600 * 1000  # two hours later
    assert _peer_call(rf, "110000", old) == grpc.StatusCode.UNAVAILABLE  # handshake refused
    assert _peer_call(rf, "110000", new) in answered


def test_a_certificate_the_handshake_trusts_by_the_gateways_clock_is_not_refused_by_the_wall_clock(
    rf: RunningFederation,
) -> None:
    """Beijing (and Hebei) run on an injected clock a minute behind the wall clock (within the
    skew tolerated). Hebei's overlap has just ended by the wall clock, not yet by
    Beijing's: the peer port's handshake (Beijing's clock) trusts the old certificate,
    so the caller's identity must be decided on the same clock. It was decided on the
    wall clock, and the call that completed the handshake was refused UNAUTHENTICATED."""
    for code in ("110000", "130000"):  # Hebei too: it still presents the old certificate
        rf.gateways[code]._clock = lambda: system_clock_ms() - 60_000
    old = rf.gateways["130000"].keys.tls
    _rotate_tls(rf, "130000", overlap_hours="0")  # by the wall clock: over already
    answered = {grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND}
    assert _peer_call(rf, "110000", old) in answered


def test_outbound_channels_trust_the_certificates_valid_by_the_gateways_clock_not_the_wall_clock(
    federation: RunningFederation,
) -> None:
    """The outbound side of the same rule: the gateway's clock, a minute behind, is
    still inside Beijing's overlap (it ended 30 s ago by the wall clock), so a channel
    to Beijing trusts both its certificates, as Beijing's peer port does."""
    bundle = federation.gateways["130000"].bundle()
    wall = system_clock_ms()
    t = GrpcPeerTransport(
        federation.gateways["130000"].keys.tls, Limits(), wall_ms=lambda: wall - 60_000
    )
    other = federation.gateways["120000"].keys.tls.cert_pem.decode("ascii")
    ended = dt.datetime.fromtimestamp((wall - 30_000) / 1000, dt.UTC)
    beijing = bundle.member("110000")
    rotated = dataclasses.replace(
        beijing, retired=(*beijing.retired, RetiredKey("tls", other, not_after=ended))
    )
    ch = t._acquire(rotated, rotated.endpoint)
    assert len(ch.trust) == 2
    t._release(ch)
    t.close()


def test_readyz_says_to_restart_once_the_overlap_ends_while_the_gateway_still_presents_its_retired_certificate(
    rf: RunningFederation, caplog: pytest.LogCaptureFixture
) -> None:
    """Hebei rotates its TLS certificate (1-hour overlap) but is not restarted: it keeps
    presenting the old one. /readyz warns during the overlap; once it ends (Hebei's clock
    two hours on) peers refuse that certificate, and /readyz is 503 saying to restart,
    the metric says retired, and one error line says so. Nothing said it before."""
    import json
    import logging
    import urllib.error
    import urllib.request

    from gateway.config import load_config
    from gateway.server.app import Gateway

    def readyz() -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(rf.site("130000").ops_url + "/readyz", timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    later = [0]
    rf.gateways["130000"].stop(grace=0.2)
    hebei = Gateway(
        load_config(rf.site("130000").config), clock_ms=lambda: system_clock_ms() + later[0]
    )
    hebei.start()
    rf.gateways["130000"] = hebei
    _rotate_tls(rf, "130000", overlap_hours="1")
    status, report = readyz()
    assert status == 200 and "restart" in report["warnings"]["own_certificate"]
    later[0] = 2 * 3600 * 1000
    caplog.set_level(logging.WARNING, logger="gateway")
    status, report = readyz()
    assert status == 503
    problem = report["checks"]["own_certificate"]
    assert "still presents its retired TLS certificate" in problem and "restart" in problem
    metrics = urllib.request.urlopen(rf.site("130000").ops_url + "/metrics", timeout=5).read()
    assert b"gateway_own_certificate_retired 1.0" in metrics
    deadline = time.monotonic() + 5

    def errors() -> list[logging.LogRecord]:
        return [
            r
            for r in caplog.records
            if getattr(r, "event", "") == "own_certificate" and r.levelno == logging.ERROR
        ]

    while not errors():
        assert time.monotonic() < deadline, "no log line about the retired certificate"
        time.sleep(0.1)
    time.sleep(1.5)  # the watcher looks every second: still one line
    assert len(errors()) == 1 and "restart" in errors()[0].getMessage()


def test_a_newer_bundle_dropping_the_certificate_a_running_gateway_presents_is_adopted_and_readyz_says_restart(
    rf: RunningFederation, caplog: pytest.LogCaptureFixture
) -> None:
    """Hebei rotated its TLS key on disk without restarting and first saw a new bundle
    after the rotation's overlap had ended: every newer bundle was refused ("... is
    not this gateway's certificate"), so it kept the old one forever (trusting what
    the authority had since changed) while /readyz said ok. It now adopts the
    bundle, is not ready, logs one error and sets the metric."""
    import json
    import logging
    import urllib.error
    import urllib.request

    hebei = rf.gateways["130000"]
    before = hebei.bundle().version
    keys = rf.site("130000").root / "keys"
    cli("keygen", "--rotate", "tls", "--out", str(keys))
    cli("federation", "rotate-keys", "--bundle", str(rf.fed.bundle),
        "--authority-key", str(rf.fed.authority_key), "--public", str(keys / "public.json"),
        "--overlap-hours", "0")  # fmt: skip
    said = f"a newer trust bundle (version {before + 1}) no longer lists this gateway's certificate"
    with caplog.at_level(logging.INFO):
        deadline = time.monotonic() + 5
        while hebei.bundle().version == before and time.monotonic() < deadline:
            hebei.reload_bundle()
            time.sleep(0.1)
        assert hebei.bundle().version == before + 1, "the newer bundle was refused"
        time.sleep(2.5)  # the bundle watcher looks every second
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and said in r.getMessage()]
    assert len(errors) == 1
    url = rf.site("130000").ops_url
    try:
        urllib.request.urlopen(url + "/readyz", timeout=5)
        raise AssertionError("/readyz said ready")
    except urllib.error.HTTPError as exc:
        assert exc.code == 503
        report = json.loads(exc.read())
    assert report["checks"]["own_certificate"] == (
        f"{said}: restart the gateway so it presents its rotated certificate"
    )
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        metrics = r.read().decode()
    assert "\ngateway_own_certificate_retired 1.0\n" in metrics
