"""Outbound peer calls over mutual TLS (implements ``PeerTransport``).

Owns: one channel per member endpoint (its pinned certificate is the only
trusted root, our certificate is the client certificate), deadlines bounded by
the incoming caller's deadline, and turning gRPC failures into GatewayError
(UNAVAILABLE -> PeerUnavailable, DEADLINE_EXCEEDED -> PeerTimeout, a peer's
refusal -> ``gateway.errors.error_for_status``: the class its
``gateway-error`` name gives when that agrees with the status, else the
status's own class, with the peer's message).

Several endpoints (replicas of one gateway, ``Member.endpoints``): calls are
spread round-robin over the endpoints not marked down. An endpoint that could
not be connected to is marked down for ``DOWN_SECONDS`` and the call moves on
to the next one: nothing was delivered, so this cannot replay a request. A
call that failed after it may have been delivered (the connection broke
mid-call) is never re-sent: it fails UNAVAILABLE, and the endpoint is marked
down for the calls that follow.

Reconnection backoff is bounded (``Limits.peer_reconnect_backoff_seconds``):
background calls (receipts, witness rounds) that fail while a peer is down
would otherwise leave its channel refusing calls for up to two minutes after it
is back. A call that found no connection on its last endpoint, on a channel
that failed to connect shortly before (so gRPC may not even have tried),
waits within its deadline for one more connection attempt before it fails; a
fresh attempt that fails means the peer is down, and the call fails at once.

Channels follow the trust bundle: a channel trusts the member's certificates
valid when it was made. When they change (a new bundle rotates, adds or
removes a certificate, or a rotation's overlap ends) or the endpoint leaves the
bundle, the channel is replaced: the next call builds a new one, and the old
one is closed as soon as its calls in flight have finished, and at the latest
``Limits.peer_channel_retire_seconds`` after it was replaced (a call still on
it then is cancelled). ``refresh(bundle)`` (on every bundle change) retires at
once the channels the new bundle no longer vouches for. At most
``Limits.max_peer_channels`` channels are kept (the least recently used one is
retired first). This gateway's own TLS key and certificate are fixed for the
life of the process (a rotated one is used after a restart, README "Rotating
keys and credentials"), so they never make a channel stale.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NoReturn

import grpc

from gateway._proto.dataexchange.gateway.v1 import peer_pb2, peer_pb2_grpc
from gateway.crypto import TlsIdentity
from gateway.errors import (
    WIRE_METADATA_KEY,
    GatewayError,
    PeerTimeout,
    PeerUnavailable,
    clip,
    error_for_status,
)
from gateway.exchange.peer import RECONNECT_WAIT
from gateway.identity import tls_server_name
from gateway.limits import Limits
from gateway.server.interceptor import deadline_remaining
from gateway.trust import Member, TrustBundle


def channel_options(limits: Limits) -> list[tuple[str, int | str]]:
    return [
        ("grpc.max_send_message_length", limits.max_message_bytes),
        ("grpc.max_receive_message_length", limits.max_message_bytes),
    ]


def peer_channel_options(limits: Limits) -> list[tuple[str, int | str]]:
    """Channel options for a peer gateway: reconnection backoff bounded by
    ``peer_reconnect_backoff_seconds``, so background calls to a peer that was
    down (receipts, witnessing) do not leave its channel refusing calls for
    minutes after it is back."""
    backoff_ms = max(1, int(limits.peer_reconnect_backoff_seconds * 1000))
    return [
        *channel_options(limits),
        ("grpc.initial_reconnect_backoff_ms", min(100, backoff_ms)),
        ("grpc.min_reconnect_backoff_ms", min(100, backoff_ms)),
        ("grpc.max_reconnect_backoff_ms", backoff_ms),
    ]


DOWN_SECONDS = 3.0


def _not_connected(details: str) -> bool:
    """UNAVAILABLE before anything was sent (no connection could be made)."""
    text = details.lower()
    return "failed to connect" in text or "connection refused" in text


Slot = tuple[str, str]  # (jurisdiction, endpoint)


@dataclass(eq=False)
class _Channel:
    """One channel to one member endpoint, trusting ``trust`` (fingerprints)."""

    channel: grpc.Channel
    stub: peer_pb2_grpc.PeerExchangeStub
    trust: tuple[str, ...]
    calls: int = 0  # in flight
    retired_at: float | None = None
    closed: bool = False


class GrpcPeerTransport:
    def __init__(
        self,
        tls: TlsIdentity,
        limits: Limits,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        """``clock``: seconds for backoff and channel retirement (monotonic);
        ``wall_ms``: POSIX milliseconds deciding which certificates are valid
        (the gateway's injected clock, as its peer port uses)."""
        self._tls = tls
        self._limits = limits
        self._clock = clock
        self._wall_ms = wall_ms
        self._lock = threading.Lock()
        # Least recently used first.
        self._slots: OrderedDict[Slot, _Channel] = OrderedDict()
        # Replaced, closed once their calls in flight end (or their grace runs out).
        self._retired: list[_Channel] = []
        self._down_until: dict[tuple[str, str], float] = {}
        # When a call last found no connection to an endpoint (cleared on success).
        self._failed_at: dict[tuple[str, str], float] = {}
        self._backoff_window = 2 * limits.peer_reconnect_backoff_seconds + 1.0
        self._turn = itertools.count()

    def _order(self, member: Member) -> list[str]:
        """The member's endpoints to try, round-robin, those marked down last."""
        eps = member.endpoints
        if len(eps) == 1:
            return list(eps)
        start = next(self._turn) % len(eps)
        ring = list(eps[start:] + eps[:start])
        now = self._clock()
        up = [e for e in ring if self._down_until.get((member.jurisdiction, e), 0.0) <= now]
        return up + [e for e in ring if e not in up]

    def _mark_down(self, member: Member, endpoint: str) -> None:
        if len(member.endpoints) > 1:
            self._down_until[(member.jurisdiction, endpoint)] = self._clock() + DOWN_SECONDS

    def _trust(self, member: Member) -> tuple[tuple[bytes, str], ...]:
        # The member's certificates valid now: its current one and, during a
        # key rotation's overlap, the retired one it may still serve until it
        # restarts. A channel trusting a retired certificate is not used once
        # its overlap ends.
        return member.tls_certs_at(dt.datetime.fromtimestamp(self._wall_ms() / 1000, dt.UTC))

    def _acquire(self, member: Member, endpoint: str) -> _Channel:
        """The channel to use for one call (counted in flight until ``_release``)."""
        certs = self._trust(member)
        trust = tuple(fp for _, fp in certs)
        slot = (member.jurisdiction, endpoint)
        with self._lock:
            self._sweep()
            ch = self._slots.get(slot)
            if ch is not None and ch.trust == trust:
                self._slots.move_to_end(slot)
            else:
                if ch is not None:  # built for certificates no longer valid
                    self._retire(self._slots.pop(slot))
                ch = self._slots[slot] = self._open(member, endpoint, certs, trust)
                while len(self._slots) > self._limits.max_peer_channels:
                    self._retire(self._slots.popitem(last=False)[1])
            ch.calls += 1
            return ch

    def _release(self, ch: _Channel) -> None:
        with self._lock:
            ch.calls -= 1
            if ch.retired_at is not None and ch.calls == 0:
                self._close(ch)

    def _open(
        self,
        member: Member,
        endpoint: str,
        certs: tuple[tuple[bytes, str], ...],
        trust: tuple[str, ...],
    ) -> _Channel:
        roots = b"".join(pem if pem.endswith(b"\n") else pem + b"\n" for pem, _ in certs)
        creds = grpc.ssl_channel_credentials(
            root_certificates=roots,
            private_key=self._tls.key_pem,
            certificate_chain=self._tls.cert_pem,
        )
        opts = [
            *peer_channel_options(self._limits),
            ("grpc.ssl_target_name_override", tls_server_name(member.jurisdiction)),
        ]
        channel = grpc.secure_channel(endpoint, creds, options=opts)
        return _Channel(channel, peer_pb2_grpc.PeerExchangeStub(channel), trust)

    def _retire(self, ch: _Channel) -> None:
        """Stop handing ``ch`` out; close it now if idle, else when its calls end (lock held)."""
        ch.retired_at = self._clock()
        if ch.calls == 0:
            self._close(ch)
        else:
            self._retired.append(ch)

    def _sweep(self) -> None:
        """Close retired channels whose grace ran out, cancelling what is still on them."""
        grace = self._limits.peer_channel_retire_seconds
        now = self._clock()
        for ch in self._retired:
            if not ch.closed and ch.retired_at is not None and now - ch.retired_at >= grace:
                self._close(ch)
        self._retired = [ch for ch in self._retired if not ch.closed]

    def _close(self, ch: _Channel) -> None:
        if not ch.closed:
            ch.closed = True
            ch.channel.close()

    def refresh(self, bundle: TrustBundle) -> None:
        """A new trust bundle is in force: retire every channel to an endpoint it
        no longer lists, or trusting other certificates than its member's valid now."""
        with self._lock:
            for slot, ch in list(self._slots.items()):
                jurisdiction, endpoint = slot
                member = next((m for m in bundle.members if m.jurisdiction == jurisdiction), None)
                if (
                    member is None
                    or endpoint not in member.endpoints
                    or tuple(fp for _, fp in self._trust(member)) != ch.trust
                ):
                    self._retire(self._slots.pop(slot))
            self._sweep()

    def call(
        self, member: Member, method: str, envelope: peer_pb2.SignedEnvelope, timeout: float
    ) -> peer_pb2.SignedEnvelope:
        remaining = deadline_remaining()
        if remaining is not None:
            timeout = min(timeout, max(0.0, remaining - 0.05))
        deadline = self._clock() + timeout
        order = self._order(member)
        for n, endpoint in enumerate(order):
            ch = self._acquire(member, endpoint)
            try:
                fn = getattr(ch.stub, method)
                # Only a channel that failed to connect shortly before may be waiting
                # out its backoff; a fresh attempt that fails means the peer is down.
                failed_at = self._failed_at.get((member.jurisdiction, endpoint))
                backing_off = (
                    failed_at is not None and self._clock() - failed_at < self._backoff_window
                )
                try:
                    reply: peer_pb2.SignedEnvelope = fn(
                        envelope, timeout=max(0.0, deadline - self._clock())
                    )
                    if len(member.endpoints) > 1:
                        self._down_until.pop((member.jurisdiction, endpoint), None)
                    self._failed_at.pop((member.jurisdiction, endpoint), None)
                    return reply
                except grpc.RpcError as exc:
                    if exc.code() == grpc.StatusCode.UNAVAILABLE:
                        self._mark_down(member, endpoint)
                        last = n == len(order) - 1
                        not_connected = _not_connected(exc.details() or "")
                        if not_connected:
                            self._failed_at[(member.jurisdiction, endpoint)] = self._clock()
                        if not_connected and self._clock() < deadline:
                            if not last:
                                continue  # nothing was delivered: try the next replica
                            if not backing_off or not RECONNECT_WAIT.get():
                                self._raise(member, endpoint, exc, timeout)
                            try:
                                again = self._after_backoff(ch.channel, fn, envelope, deadline)
                            except grpc.RpcError as exc2:
                                self._raise(member, endpoint, exc2, timeout)
                            if again is not None:
                                self._failed_at.pop((member.jurisdiction, endpoint), None)
                                return again
                    self._raise(member, endpoint, exc, timeout)
            finally:
                self._release(ch)
        raise PeerUnavailable(f"peer gateway {member.jurisdiction} has no endpoint")

    def _after_backoff(
        self,
        channel: grpc.Channel,
        fn: Callable[..., peer_pb2.SignedEnvelope],
        envelope: peer_pb2.SignedEnvelope,
        deadline: float,
    ) -> peer_pb2.SignedEnvelope | None:
        """Nothing was delivered and no other endpoint is left: the channel may
        only be waiting out its reconnection backoff after the peer was down
        (and is back). Wait for one more connection attempt, bounded by the
        backoff and the call's deadline, then send once; None if the peer is
        still not there (the caller reports the first failure)."""
        wait = min(deadline - self._clock(), self._limits.peer_reconnect_backoff_seconds + 0.25)
        if wait <= 0:
            return None
        ready = grpc.channel_ready_future(channel)
        try:
            ready.result(timeout=wait)
        except grpc.FutureTimeoutError:
            return None
        finally:
            ready.cancel()  # stops watching the channel (a no-op once it is ready)
        reply: peer_pb2.SignedEnvelope = fn(envelope, timeout=max(0.0, deadline - self._clock()))
        return reply

    def stream(
        self, member: Member, method: str, envelope: peer_pb2.SignedEnvelope, timeout: float
    ) -> Iterator[peer_pb2.PeerStreamMessage]:
        """A server-streaming call; closing the iterator cancels the call. A
        stream is never re-sent to another endpoint (chunks may have been
        delivered); a resumed transfer starts a new call from its cursor."""
        remaining = deadline_remaining()
        if remaining is not None:
            timeout = min(timeout, max(0.0, remaining - 0.05))
        endpoint = self._order(member)[0]
        ch = self._acquire(member, endpoint)
        try:
            call = getattr(ch.stub, method)(envelope, timeout=timeout)
            try:
                yield from call
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.UNAVAILABLE:
                    self._mark_down(member, endpoint)
                self._raise(member, endpoint, exc, timeout)
            finally:
                call.cancel()
        finally:
            self._release(ch)

    def _raise(self, member: Member, endpoint: str, exc: grpc.RpcError, timeout: float) -> NoReturn:
        raise _peer_error(exc, member, endpoint, timeout, self._limits) from exc

    def close(self) -> None:
        with self._lock:
            for ch in (*self._slots.values(), *self._retired):
                self._close(ch)
            self._slots.clear()
            self._retired.clear()


def _peer_error(
    exc: grpc.RpcError, member: Member, endpoint: str, timeout: float, limits: Limits
) -> GatewayError:
    code = exc.code()
    details = clip(exc.details() or "", limits.max_status_chars)  # a peer's text, bounded
    who = f"peer gateway {member.jurisdiction} ({member.name}) at {endpoint}"
    if code == grpc.StatusCode.UNAVAILABLE:
        return PeerUnavailable(f"{who} is unavailable: {details}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return PeerTimeout(f"{who} did not answer within {timeout:.1f} s")
    # A refusal keeps its kind when the peer's name agrees with the status.
    kind = dict(exc.trailing_metadata() or ()).get(WIRE_METADATA_KEY, "")
    message = f"{who} refused ({code.name}): {details}"
    return error_for_status(code, message, str(kind))
