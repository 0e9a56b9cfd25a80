"""Peer identity is computed once per presented certificate, never trusted beyond it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from gateway import crypto
from gateway.errors import Unauthenticated
from gateway.limits import Limits
from gateway.server import auth
from gateway.server.auth import PeerAuthenticator


@dataclass
class FakeContext:
    pem: bytes

    def auth_context(self) -> dict[str, list[bytes]]:
        return {"x509_pem_cert": [self.pem]}


@dataclass
class FakeBundle:
    members: dict[str, str] = field(default_factory=dict)  # fingerprint -> jurisdiction

    def member_by_fingerprint(self, fp: str, now: Any = None) -> Any:
        j = self.members.get(fp)
        return None if j is None else type("M", (), {"jurisdiction": j})()


PINNED = crypto.make_tls_identity("gw-110000", ["gw-110000"]).cert_pem
OTHER = crypto.make_tls_identity("gw-110000", ["gw-110000"]).cert_pem


def test_second_certificate_is_not_mistaken_for_a_cached_one() -> None:
    bundle = FakeBundle({crypto.cert_fingerprint(PINNED): "110000"})
    authn = PeerAuthenticator(lambda: bundle, lambda: 0)  # type: ignore[arg-type, return-value]
    assert authn(FakeContext(PINNED)) == "110000"  # type: ignore[arg-type]
    with pytest.raises(Unauthenticated):
        authn(FakeContext(OTHER))  # type: ignore[arg-type]  # same name, other key


def test_member_removed_from_bundle_is_refused_despite_cached_fingerprint() -> None:
    bundle = FakeBundle({crypto.cert_fingerprint(PINNED): "110000"})
    authn = PeerAuthenticator(lambda: bundle, lambda: 0)  # type: ignore[arg-type, return-value]
    assert authn(FakeContext(PINNED)) == "110000"  # type: ignore[arg-type]
    assert PINNED in authn.fingerprints
    bundle.members.clear()  # the next bundle version drops it
    with pytest.raises(Unauthenticated):
        authn(FakeContext(PINNED))  # type: ignore[arg-type]


def test_fingerprint_cache_stays_within_the_configured_bound() -> None:
    """A peer cycling through certificates cannot grow the cache past the limit."""
    cache = auth.CertFingerprints(Limits(max_cached_certificates=2))
    pems = [crypto.make_tls_identity("gw-110000", ["gw-110000"]).cert_pem for _ in range(2)]
    for pem in (*pems, PINNED, OTHER):
        cache(FakeContext(pem))  # type: ignore[arg-type]
        assert len(cache) <= 2
    assert cache(FakeContext(PINNED)) == crypto.cert_fingerprint(PINNED)  # type: ignore[arg-type]
    assert OTHER in cache and len(cache) == 2
