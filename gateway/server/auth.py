"""Who is calling: service systems on the service port, members on the peer port.

Owns: matching a peer's mutual-TLS certificate to a federation member pinned
in the trust bundle, and reading a caller's TLS client certificate. Raises
``Unauthenticated`` with what to present. Service systems (tokens, client
certificates, roles) are matched in ``gateway.server.access``.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable

import grpc

from gateway import crypto
from gateway.errors import Unauthenticated
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.trust import TrustBundle


class CertFingerprints:
    """Fingerprints of the certificates callers presented, by their exact PEM bytes.

    A connection presents the same certificate on every call, so each is parsed
    and hashed once (a pure function of the bytes; at most
    ``limits.max_cached_certificates`` kept, cleared when full). Only the
    fingerprint is cached: who it belongs to is looked up on every call.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._max = limits.max_cached_certificates
        self._cache: dict[bytes, str] = {}

    def __len__(self) -> int:
        return len(self._cache)

    def __contains__(self, pem: bytes) -> bool:
        return pem in self._cache

    def __call__(self, context: grpc.ServicerContext) -> str | None:
        """The fingerprint of the caller's TLS client certificate, or None."""
        certs = context.auth_context().get("x509_pem_cert")
        if not certs:
            return None
        pem = certs[0]
        fp = self._cache.get(pem)
        if fp is None:
            fp = crypto.cert_fingerprint(pem)
            if len(self._cache) >= self._max:
                self._cache.clear()
            self._cache[pem] = fp
        return fp


class PeerAuthenticator:
    """Mutual-TLS client certificate -> federation member jurisdiction.

    Which of a member's certificates are valid (the current one, and a retired
    one inside its rotation's overlap) is decided at ``clock_ms`` (POSIX
    milliseconds): the gateway's one clock, the one its peer port builds its
    trusted set with, so a certificate that completes the handshake is not
    then refused (or the reverse) because two clocks disagree."""

    def __init__(
        self,
        bundle: Callable[[], TrustBundle],
        clock_ms: Callable[[], int],
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self._bundle = bundle
        self._clock_ms = clock_ms
        self.fingerprints = CertFingerprints(limits)

    def __call__(self, context: grpc.ServicerContext) -> str:
        fp = self.fingerprints(context)
        if fp is None:
            raise Unauthenticated("peer presented no TLS client certificate")
        now = _dt.datetime.fromtimestamp(self._clock_ms() / 1000, _dt.UTC)
        member = self._bundle().member_by_fingerprint(fp, now)
        if member is None:
            raise Unauthenticated(
                "peer certificate is not pinned in the federation trust bundle; "
                "ask the federation authority to add this gateway"
            )
        return member.jurisdiction
