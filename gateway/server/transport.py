"""Outbound peer calls over mutual TLS (implements ``PeerTransport``).

Owns: one channel per member (its pinned certificate is the only trusted root,
our certificate is the client certificate), deadlines bounded by the incoming
caller's deadline, and turning gRPC failures into GatewayError
(UNAVAILABLE -> PeerUnavailable, DEADLINE_EXCEEDED -> PeerTimeout, a peer's
refusal -> ``gateway.errors.error_for_status``: the class its
``gateway-error`` name gives when that agrees with the status, else the
status's own class, with the peer's message).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator

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
from gateway.identity import tls_server_name
from gateway.limits import Limits
from gateway.server.interceptor import deadline_remaining
from gateway.trust import Member


def channel_options(limits: Limits) -> list[tuple[str, int | str]]:
    return [
        ("grpc.max_send_message_length", limits.max_message_bytes),
        ("grpc.max_receive_message_length", limits.max_message_bytes),
    ]


class GrpcPeerTransport:
    def __init__(self, tls: TlsIdentity, limits: Limits) -> None:
        self._tls = tls
        self._limits = limits
        self._lock = threading.Lock()
        self._channels: dict[tuple[str, str, tuple[str, ...]], grpc.Channel] = {}
        self._stubs: dict[tuple[str, str, tuple[str, ...]], peer_pb2_grpc.PeerExchangeStub] = {}

    def _stub(self, member: Member) -> peer_pb2_grpc.PeerExchangeStub:
        # The member's certificates valid now: its current one and, during a
        # key rotation's overlap, the retired one it may still serve until it
        # restarts. A channel is kept per set, so one trusting a retired
        # certificate is not used once its overlap ends.
        certs = member.tls_certs_at(dt.datetime.now(dt.UTC))
        key = (member.jurisdiction, member.endpoint, tuple(fp for _, fp in certs))
        stub = self._stubs.get(key)
        if stub is not None:
            return stub
        with self._lock:
            ch = self._channels.get(key)
            if ch is None:
                roots = b"".join(pem if pem.endswith(b"\n") else pem + b"\n" for pem, _ in certs)
                creds = grpc.ssl_channel_credentials(
                    root_certificates=roots,
                    private_key=self._tls.key_pem,
                    certificate_chain=self._tls.cert_pem,
                )
                opts = [
                    *channel_options(self._limits),
                    ("grpc.ssl_target_name_override", tls_server_name(member.jurisdiction)),
                ]
                ch = grpc.secure_channel(member.endpoint, creds, options=opts)
                self._channels[key] = ch
            stub = peer_pb2_grpc.PeerExchangeStub(ch)
            self._stubs[key] = stub
        return stub

    def call(
        self, member: Member, method: str, envelope: peer_pb2.SignedEnvelope, timeout: float
    ) -> peer_pb2.SignedEnvelope:
        remaining = deadline_remaining()
        if remaining is not None:
            timeout = min(timeout, max(0.0, remaining - 0.05))
        fn = getattr(self._stub(member), method)
        try:
            reply: peer_pb2.SignedEnvelope = fn(envelope, timeout=timeout)
            return reply
        except grpc.RpcError as exc:
            raise _peer_error(exc, member, timeout, self._limits) from exc

    def stream(
        self, member: Member, method: str, envelope: peer_pb2.SignedEnvelope, timeout: float
    ) -> Iterator[peer_pb2.PeerStreamMessage]:
        """A server-streaming call; closing the iterator cancels the call."""
        remaining = deadline_remaining()
        if remaining is not None:
            timeout = min(timeout, max(0.0, remaining - 0.05))
        call = getattr(self._stub(member), method)(envelope, timeout=timeout)
        try:
            yield from call
        except grpc.RpcError as exc:
            raise _peer_error(exc, member, timeout, self._limits) from exc
        finally:
            call.cancel()

    def close(self) -> None:
        with self._lock:
            for ch in self._channels.values():
                ch.close()
            self._channels.clear()
            self._stubs.clear()


def _peer_error(
    exc: grpc.RpcError, member: Member, timeout: float, limits: Limits
) -> GatewayError:
    code = exc.code()
    details = clip(exc.details() or "", limits.max_status_chars)  # a peer's text, bounded
    who = f"peer gateway {member.jurisdiction} ({member.name}) at {member.endpoint}"
    if code == grpc.StatusCode.UNAVAILABLE:
        return PeerUnavailable(f"{who} is unavailable: {details}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return PeerTimeout(f"{who} did not answer within {timeout:.1f} s")
    # A refusal keeps its kind when the peer's name agrees with the status.
    kind = dict(exc.trailing_metadata() or ()).get(WIRE_METADATA_KEY, "")
    message = f"{who} refused ({code.name}): {details}"
    return error_for_status(code, message, str(kind))
