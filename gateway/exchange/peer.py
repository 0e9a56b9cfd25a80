"""The signed request/response protocol between gateways, independent of payload.

Owns: ``PeerCaller`` (requesting side: fill the header, sign the exact bytes,
send through a ``PeerTransport``, verify the response is signed by the
intended recipient, addressed to us, answers our request digest, and is fresh)
and ``PeerResponder`` (answering side: open and check a request, refuse
replays, sign a response bound to the request digest).

Does not own: sockets and TLS (``gateway.server.transport`` implements
``PeerTransport``), what records or statistics mean (``gateway.exchange.records``,
``gateway.stats``).

Both sides refuse every exchange once this gateway's trust bundle has expired
(``gateway.trust.check_in_force``: FAILED_PRECONDITION saying when, and that a
new bundle must be installed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from google.protobuf.message import Message

from gateway import crypto
from gateway._proto.dataexchange.gateway.v1 import peer_pb2
from gateway.envelope import (
    OpenedEnvelope,
    check_header,
    envelope_digest,
    make_header,
    new_request_id,
    open_envelope,
    parse_payload,
    sign_envelope,
)
from gateway.keyring import utc_from_ms
from gateway.limits import Limits
from gateway.replay import ReplayStore
from gateway.trust import Member, TrustBundle, check_in_force

# Whether a call that found no connection may wait for one more reconnection
# attempt (``GrpcPeerTransport``). Background senders that retry anyway
# (receipts) turn it off, so a peer that is down never holds them up.
RECONNECT_WAIT: ContextVar[bool] = ContextVar("reconnect_wait", default=True)


@contextmanager
def without_reconnect_wait() -> Iterator[None]:
    token = RECONNECT_WAIT.set(False)
    try:
        yield
    finally:
        RECONNECT_WAIT.reset(token)


Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)

Clock = Callable[[], int]  # milliseconds since the Unix epoch


class PeerTransport(Protocol):
    def call(
        self, member: Member, method: str, envelope: peer_pb2.SignedEnvelope, timeout: float
    ) -> peer_pb2.SignedEnvelope:
        """Send over mutual TLS; raise PeerUnavailable, PeerTimeout or the
        peer's refusal as a GatewayError."""
        ...


@dataclass(frozen=True)
class PeerReply(Generic[Resp]):
    response: Resp
    request_id: str
    request_envelope: peer_pb2.SignedEnvelope
    response_envelope: peer_pb2.SignedEnvelope


@dataclass(frozen=True)
class PeerRequest(Generic[Req]):
    message: Req
    opened: OpenedEnvelope

    @property
    def sender(self) -> str:
        return self.opened.signer

    @property
    def request_id(self) -> str:
        return str(self.message.header.request_id)  # type: ignore[attr-defined]

    @property
    def signature_b64(self) -> str:
        return crypto.b64(self.opened.signature)

    @property
    def digest_hex(self) -> str:
        return self.opened.pae_digest.hex()


class PeerCaller:
    """Requesting side of one signed peer exchange."""

    def __init__(
        self,
        me: str,
        signing_key: crypto.AnySigningKey,
        bundle: Callable[[], TrustBundle],
        transport: PeerTransport,
        clock_ms: Clock,
        limits: Limits,
    ) -> None:
        self._me = me
        self._key = signing_key
        self._bundle = bundle
        self._transport = transport
        self._clock = clock_ms
        self._limits = limits

    @property
    def me(self) -> str:
        return self._me

    @property
    def suite(self) -> crypto.Suite:
        return crypto.suite_of(self._key)

    def prepare(
        self, recipient: str, message: Message, payload_type: str, request_id: str = ""
    ) -> peer_pb2.SignedEnvelope:
        """Fill ``message.header`` and sign the serialized bytes (refused once
        this gateway's trust bundle has expired)."""
        bundle = self._bundle()
        now = self._clock()
        check_in_force(bundle, utc_from_ms(now))
        header = make_header(
            self._me, recipient, request_id or new_request_id(), now, bundle.version
        )
        message.header.CopyFrom(header)  # type: ignore[attr-defined]
        payload = message.SerializeToString(deterministic=True)
        return sign_envelope(self._key, self._me, payload_type, payload)

    def send(
        self,
        recipient: str,
        method: str,
        envelope: peer_pb2.SignedEnvelope,
        request_id: str,
        response_type: str,
        response_cls: type[Resp],
    ) -> PeerReply[Resp]:
        member = self._bundle().member(recipient)
        reply = self._transport.call(member, method, envelope, self._limits.peer_deadline_seconds)
        response = self.verify(recipient, envelope, request_id, reply, response_type, response_cls)
        return PeerReply(response, request_id, envelope, reply)

    def verify(
        self,
        recipient: str,
        request_envelope: peer_pb2.SignedEnvelope,
        request_id: str,
        reply: peer_pb2.SignedEnvelope,
        response_type: str,
        response_cls: type[Resp],
    ) -> Resp:
        """Open a signed answer: signed by ``recipient``, addressed to us, bound
        to our request's digest and id, fresh."""
        # The channel authenticated the server as `recipient` (its pinned cert).
        opened = open_envelope(
            reply,
            response_type,
            self._bundle(),
            recipient,
            self._limits.max_message_bytes,
            self._clock(),
        )
        response = parse_payload(opened, response_cls)
        check_header(
            response.header,  # type: ignore[attr-defined]
            signer=opened.signer,
            me=self._me,
            now_ms=self._clock(),
            window_ms=self._limits.replay_window_seconds * 1000,
            request_id=request_id,
            request_digest=envelope_digest(request_envelope, self.suite),
        )
        return response

    def call(
        self,
        recipient: str,
        method: str,
        message: Message,
        payload_type: str,
        response_type: str,
        response_cls: type[Resp],
    ) -> PeerReply[Resp]:
        env = self.prepare(recipient, message, payload_type)
        request_id = message.header.request_id  # type: ignore[attr-defined]
        return self.send(recipient, method, env, request_id, response_type, response_cls)


class PeerResponder:
    """Answering side: open requests, refuse replays, sign responses."""

    def __init__(
        self,
        me: str,
        signing_key: crypto.AnySigningKey,
        bundle: Callable[[], TrustBundle],
        replay: ReplayStore,
        clock_ms: Clock,
        limits: Limits,
    ) -> None:
        self._me = me
        self._key = signing_key
        self._bundle = bundle
        self._replay = replay
        self._clock = clock_ms
        self._limits = limits

    @property
    def me(self) -> str:
        return self._me

    @property
    def suite(self) -> crypto.Suite:
        return crypto.suite_of(self._key)

    def open(
        self,
        envelope: peer_pb2.SignedEnvelope,
        payload_type: str,
        message_cls: type[Req],
        tls_identity: str | None,
    ) -> PeerRequest[Req]:
        bundle = self._bundle()
        # An expired bundle no longer vouches for anyone's keys: every peer
        # exchange is refused (FAILED_PRECONDITION) until a new one is installed.
        check_in_force(bundle, utc_from_ms(self._clock()))
        opened = open_envelope(
            envelope,
            payload_type,
            bundle,
            tls_identity,
            self._limits.max_message_bytes,
            self._clock(),
        )
        message = parse_payload(opened, message_cls)
        header: peer_pb2.PeerHeader = message.header  # type: ignore[attr-defined]
        now = self._clock()
        check_header(
            header,
            signer=opened.signer,
            me=self._me,
            now_ms=now,
            window_ms=self._limits.replay_window_seconds * 1000,
        )
        self._replay.check_and_record(opened.signer, header.request_id, header.timestamp_ms, now)
        return PeerRequest(message, opened)

    def respond(
        self, request: PeerRequest[Req], response: Message, payload_type: str
    ) -> peer_pb2.SignedEnvelope:
        header = make_header(
            self._me,
            request.sender,
            request.request_id,
            self._clock(),
            self._bundle().version,
            request_digest=request.opened.pae_digest,
        )
        response.header.CopyFrom(header)  # type: ignore[attr-defined]
        payload = response.SerializeToString(deterministic=True)
        return sign_envelope(self._key, self._me, payload_type, payload)
