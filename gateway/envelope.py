"""Signed peer envelopes: build, open and check headers. Pure functions.

Owns: turning a payload message into a ``SignedEnvelope`` (sign the exact
serialized bytes once, with the payload type as the PAE domain tag), opening an
envelope (payload type expected, signer a federation member, signer equal to
the mutual-TLS identity, signature valid over the bytes as carried), and the
header checks (sender, recipient, request id, timestamp window, request digest
binding of responses).

Does not own: transport (``gateway.server``), replay memory
(``gateway.replay``), or what the payloads mean (``gateway.exchange``).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from gateway import crypto, domains, identifiers
from gateway._proto.dataexchange.gateway.v1 import peer_pb2
from gateway.errors import (
    CryptoFailure,
    InvalidArgument,
    NotFound,
    ReplayRejected,
    Unauthenticated,
    clip,
)
from gateway.trust import TrustBundle

M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class OpenedEnvelope:
    """An envelope whose signature verified against a federation member's key."""

    payload_type: str
    payload: bytes
    signature: bytes
    signer: str
    # The suite's hash (SHA-256 or SM3) of PAE(payload_type, payload): what a
    # response binds to.
    pae_digest: bytes


def new_request_id() -> str:
    return str(uuid.uuid4())


def sign_envelope(
    key: crypto.AnySigningKey, signer: str, payload_type: str, payload: bytes
) -> peer_pb2.SignedEnvelope:
    """Sign ``payload`` (already serialized, exactly as it will travel).

    The signature is over ``ENVELOPE_DIGEST`` PAE of the key's suite hash
    (SHA-256 or SM3) of PAE(payload_type, payload): the exact bytes with their
    type, through the digest the ledger entries on both sides record, so each
    signature verifies offline.
    """
    digest = crypto.suite_of(key).digest(crypto.pae(payload_type, payload))
    return peer_pb2.SignedEnvelope(
        payload_type=payload_type,
        payload=payload,
        signature=key.sign(domains.ENVELOPE_DIGEST, digest),
        signer=signer,
    )


def envelope_digest(env: peer_pb2.SignedEnvelope, suite: crypto.Suite) -> bytes:
    """The request digest: the federation suite's hash of PAE(type, payload)."""
    return suite.digest(crypto.pae(env.payload_type, env.payload))


def verify_digest_signature(key: crypto.AnyVerifyKey, digest: bytes, signature: bytes) -> None:
    """Check an envelope signature from the digest alone (what a ledger entry records);
    raises opaque CryptoFailure."""
    key.verify(domains.ENVELOPE_DIGEST, digest, signature)


def open_envelope(
    env: peer_pb2.SignedEnvelope,
    expected_type: str,
    bundle: TrustBundle,
    tls_identity: str | None,
    max_bytes: int,
    now_ms: int | None = None,
) -> OpenedEnvelope:
    """Verify an envelope as carried. Raises InvalidArgument / Unauthenticated /
    CryptoFailure; never parses the payload before the signature verifies."""
    if env.payload_type != expected_type:
        raise InvalidArgument.expected("envelope payload_type", expected_type, env.payload_type)
    if len(env.payload) > max_bytes:
        raise InvalidArgument.expected(
            "envelope payload size", f"<= {max_bytes} bytes", len(env.payload)
        )
    try:
        member = bundle.member(env.signer)
    except NotFound as exc:
        raise Unauthenticated(
            f"envelope signer {clip(repr(env.signer))} is not a federation member"
        ) from exc
    if tls_identity is not None and tls_identity != env.signer:
        raise Unauthenticated(
            f"envelope signed as {env.signer} but the TLS client certificate is {tls_identity}'s"
        )
    crypto.require_signature_suite(member.signing_key, env.signature, "envelope signature")
    # The member's envelope keys valid now: its current one, and during a key
    # rotation's overlap window its retired one.
    now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    digest = envelope_digest(env, crypto.suite_of(member.signing_key))
    verified = False
    for key in member.ring("envelope").at(now_ms):
        try:
            verify_digest_signature(key, digest, env.signature)
            verified = True
        except CryptoFailure:
            continue
    if not verified:
        raise CryptoFailure()
    return OpenedEnvelope(
        payload_type=env.payload_type,
        payload=env.payload,
        signature=env.signature,
        signer=env.signer,
        pae_digest=digest,
    )


def receipt_message(request_id: str, request_digest: bytes, response_digest: bytes) -> bytes:
    """What a receipt's signature covers: facts the holder's ledger entry records."""
    return request_id.encode("utf-8") + b"\x00" + request_digest + response_digest


def sign_receipt(
    key: crypto.AnySigningKey, request_id: str, request_digest: bytes, response_digest: bytes
) -> bytes:
    return key.sign(
        domains.EXCHANGE_RECEIPT, receipt_message(request_id, request_digest, response_digest)
    )


def verify_receipt(
    key: crypto.AnyVerifyKey,
    request_id: str,
    request_digest: bytes,
    response_digest: bytes,
    signature: bytes,
) -> None:
    """Raises opaque CryptoFailure unless ``signature`` is the key's receipt for the exchange."""
    key.verify(
        domains.EXCHANGE_RECEIPT,
        receipt_message(request_id, request_digest, response_digest),
        signature,
    )


def parse_payload(opened: OpenedEnvelope, message_type: type[M]) -> M:
    msg = message_type()
    try:
        msg.ParseFromString(opened.payload)
    except DecodeError as exc:
        raise InvalidArgument(f"{message_type.__name__}: payload is not a valid message") from exc
    return msg


def make_header(
    sender: str,
    recipient: str,
    request_id: str,
    now_ms: int,
    bundle_version: int,
    request_digest: bytes = b"",
) -> peer_pb2.PeerHeader:
    return peer_pb2.PeerHeader(
        sender=sender,
        recipient=recipient,
        request_id=request_id,
        timestamp_ms=now_ms,
        request_digest=request_digest,
        bundle_version=bundle_version,
    )


def check_header(
    header: peer_pb2.PeerHeader,
    *,
    signer: str,
    me: str,
    now_ms: int,
    window_ms: int,
    request_id: str | None = None,
    request_digest: bytes | None = None,
) -> None:
    """Check what a signed header binds. Order: identity, addressing, freshness, binding."""
    if header.sender != signer:
        raise Unauthenticated(
            f"header sender {clip(repr(header.sender))} differs from envelope signer {clip(repr(signer))}"
        )
    if header.recipient != me:
        raise Unauthenticated(
            f"message is addressed to {clip(repr(header.recipient))}, this gateway is {me}; refusing a misdirected message"
        )
    identifiers.request_id(header.request_id, "header.request_id")
    if request_id is not None and header.request_id != request_id:
        raise CryptoFailure()
    skew = header.timestamp_ms - now_ms
    if abs(skew) > window_ms:
        raise ReplayRejected(
            f"message timestamp is {skew / 1000:+.1f} s from this gateway's clock; "
            f"allowed window is ±{window_ms / 1000:.0f} s (check both clocks)"
        )
    if request_digest is not None and not crypto.digest_equal(
        header.request_digest, request_digest
    ):
        raise CryptoFailure()
