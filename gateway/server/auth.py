"""Who is calling: service systems on the service port, members on the peer port.

Owns: matching a bearer token (by SHA-256, constant-time) or a TLS client
certificate fingerprint to a registered service system; matching a peer's
mutual-TLS certificate to a federation member pinned in the trust bundle.
Raises ``Unauthenticated`` with what to present. Never logs tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc

from gateway import crypto
from gateway.config import ServiceSystem
from gateway.errors import Unauthenticated
from gateway.trust import TrustBundle

# Fingerprints of the certificates peers presented, by their exact PEM bytes: a
# connection presents the same certificate on every call, so each is parsed and
# hashed once (a pure function of the bytes; bounded, cleared when full).
_FINGERPRINTS: dict[bytes, str] = {}
_MAX_FINGERPRINTS = 1024


def _peer_cert_fingerprint(context: grpc.ServicerContext) -> str | None:
    certs = context.auth_context().get("x509_pem_cert")
    if not certs:
        return None
    pem = certs[0]
    fp = _FINGERPRINTS.get(pem)
    if fp is None:
        fp = crypto.cert_fingerprint(pem)
        if len(_FINGERPRINTS) >= _MAX_FINGERPRINTS:
            _FINGERPRINTS.clear()
        _FINGERPRINTS[pem] = fp
    return fp


class ServiceAuthenticator:
    """Bearer token or registered client certificate -> service system id."""

    def __init__(self, systems: Sequence[ServiceSystem]) -> None:
        self._systems = tuple(systems)

    def replace(self, systems: Sequence[ServiceSystem]) -> None:
        self._systems = tuple(systems)  # one reference swap: atomic for readers

    def __call__(self, context: grpc.ServicerContext) -> str:
        systems = self._systems
        token = None
        for key, value in context.invocation_metadata():
            if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
                token = value[len("Bearer ") :].strip()
        if token:
            h = crypto.sha256_hex(token.encode())
            match = None
            for s in systems:  # no early exit: same work whatever matches
                if s.token_sha256 and crypto.digest_equal(h, s.token_sha256):
                    match = s.id
            if match:
                return match
            raise Unauthenticated(
                "unknown caller: the bearer token is not registered with this gateway"
            )
        fp = _peer_cert_fingerprint(context)
        if fp:
            for s in systems:
                if s.cert_fingerprint and crypto.digest_equal(fp, s.cert_fingerprint):
                    return s.id
        raise Unauthenticated(
            "unknown caller: present a registered TLS client certificate or the metadata "
            "'authorization: Bearer <token>' issued by this gateway's bureau"
        )


class PeerAuthenticator:
    """Mutual-TLS client certificate -> federation member jurisdiction."""

    def __init__(self, bundle: Callable[[], TrustBundle]) -> None:
        self._bundle = bundle

    def __call__(self, context: grpc.ServicerContext) -> str:
        fp = _peer_cert_fingerprint(context)
        if fp is None:
            raise Unauthenticated("peer presented no TLS client certificate")
        member = self._bundle().member_by_fingerprint(fp)
        if member is None:
            raise Unauthenticated(
                "peer certificate is not pinned in the federation trust bundle; "
                "ask the federation authority to add this gateway"
            )
        return member.jurisdiction
