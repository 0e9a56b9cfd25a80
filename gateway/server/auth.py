"""Who is calling: service systems on the service port, members on the peer port.

Owns: matching a peer's mutual-TLS certificate to a federation member pinned
in the trust bundle, and reading a caller's TLS client certificate. Raises
``Unauthenticated`` with what to present. Service systems (tokens, client
certificates, roles) are matched in ``gateway.server.access``.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

from gateway import crypto
from gateway.errors import Unauthenticated
from gateway.trust import TrustBundle


def peer_cert_fingerprint(context: grpc.ServicerContext) -> str | None:
    certs = context.auth_context().get("x509_pem_cert")
    if not certs:
        return None
    return crypto.cert_fingerprint(certs[0])


class PeerAuthenticator:
    """Mutual-TLS client certificate -> federation member jurisdiction."""

    def __init__(self, bundle: Callable[[], TrustBundle]) -> None:
        self._bundle = bundle

    def __call__(self, context: grpc.ServicerContext) -> str:
        fp = peer_cert_fingerprint(context)
        if fp is None:
            raise Unauthenticated("peer presented no TLS client certificate")
        member = self._bundle().member_by_fingerprint(fp)
        if member is None:
            raise Unauthenticated(
                "peer certificate is not pinned in the federation trust bundle; "
                "ask the federation authority to add this gateway"
            )
        return member.jurisdiction
