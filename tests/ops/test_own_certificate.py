"""This gateway's own TLS certificate: warned about before peers refuse it.

``own_certificate_status`` is the rule /readyz, the metrics and the gateway's
log lines share: close to its expiry (fewer than
``Limits.own_certificate_warn_days`` left), still the retired certificate of a
key rotation whose overlap runs (restart before it ends) or has ended (peers
refuse it: not ready until a restart), or expired.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from gateway.crypto import cert_fingerprint, make_tls_identity
from gateway.keyring import RetiredKey
from gateway.limits import Limits
from gateway.ops.ready import own_certificate_status
from gateway.trust import Member, load_bundle
from tests.ledger.ledger_testkit import write_trust_bundle

NOW = dt.datetime(2027, 3, 1, 12, 0, tzinfo=dt.UTC)


def _member(tmp_path: Path, current: bytes, retired: tuple[RetiredKey, ...] = ()) -> Member:
    member = load_bundle(write_trust_bundle(tmp_path)).member("110000")
    return dataclasses.replace(
        member, tls_cert_pem=current, tls_fingerprint=cert_fingerprint(current), retired=retired
    )


def _cert(issued: dt.datetime) -> bytes:
    return make_tls_identity("gw-110000", ["gw-110000"], now=issued).cert_pem


def test_a_certificate_with_years_left_raises_nothing(tmp_path: Path) -> None:
    cert = _cert(NOW - dt.timedelta(days=10))
    status = own_certificate_status(cert, _member(tmp_path, cert), NOW, Limits())
    assert (status.problem, status.warning, status.retired) == (None, None, False)
    assert status.seconds_left == (status.expires_at - NOW).total_seconds() > 800 * 86_400


def test_a_certificate_expiring_within_the_warning_days_is_warned_about_before_peers_refuse_it(
    tmp_path: Path,
) -> None:
    cert = _cert(NOW - dt.timedelta(days=815))  # 825-day certificate: 10 days left
    member = _member(tmp_path, cert)
    status = own_certificate_status(cert, member, NOW, Limits(own_certificate_warn_days=30))
    assert status.problem is None and status.warning is not None
    assert "expires at" in status.warning and "keygen --rotate tls" in status.warning
    quiet = own_certificate_status(cert, member, NOW, Limits(own_certificate_warn_days=5))
    assert quiet.warning is None


def test_an_expired_certificate_makes_the_gateway_not_ready(tmp_path: Path) -> None:
    cert = _cert(NOW - dt.timedelta(days=826))
    status = own_certificate_status(cert, _member(tmp_path, cert), NOW, Limits())
    assert status.problem is not None and "expired" in status.problem
    assert status.seconds_left < 0


def test_presenting_the_retired_certificate_is_a_warning_in_the_overlap_and_a_problem_after(
    tmp_path: Path,
) -> None:
    """Rotated on disk, not restarted: the bundle lists the new certificate and the old
    one until the overlap ends; after that peers refuse the old one in handshakes."""
    old, new = _cert(NOW - dt.timedelta(days=100)), _cert(NOW)
    ends = NOW + dt.timedelta(hours=1)
    member = _member(tmp_path, new, (RetiredKey("tls", old.decode("ascii"), not_after=ends),))
    during = own_certificate_status(old, member, NOW, Limits())
    assert during.retired and during.problem is None
    assert during.warning is not None and "restart" in during.warning
    after = own_certificate_status(old, member, ends, Limits())
    assert after.retired and after.problem is not None
    assert "retired" in after.problem and "restart" in after.problem
    # The new certificate, once the gateway restarts with it: nothing to say.
    assert own_certificate_status(new, member, ends, Limits()).problem is None


def test_a_newer_bundle_issued_after_the_overlap_says_it_no_longer_lists_the_certificate(
    tmp_path: Path,
) -> None:
    """A running gateway adopts a newer bundle that no longer vouches for the certificate
    it presents (rotated on disk, not restarted): the problem names that bundle. A
    bundle whose overlap ended while in force keeps saying the certificate is retired."""
    old, new = _cert(NOW - dt.timedelta(days=100)), _cert(NOW)
    ends = NOW - dt.timedelta(hours=1)
    member = _member(tmp_path, new, (RetiredKey("tls", old.decode("ascii"), not_after=ends),))
    bundle = load_bundle(write_trust_bundle(tmp_path))
    later = NOW + dt.timedelta(days=30)
    newer = dataclasses.replace(bundle, issued_at=NOW - dt.timedelta(minutes=1), expires_at=later)
    status = own_certificate_status(old, member, NOW, Limits(), bundle=newer)
    assert status.retired and status.problem == (
        f"a newer trust bundle (version {newer.version}) no longer lists this gateway's "
        "certificate: restart the gateway so it presents its rotated certificate"
    )
    dropped = dataclasses.replace(member, retired=())
    assert "no longer lists" in (
        own_certificate_status(old, dropped, NOW, Limits(), bundle=newer).problem or ""
    )
    earlier = dataclasses.replace(bundle, issued_at=ends - dt.timedelta(days=1), expires_at=later)
    kept = own_certificate_status(old, member, NOW, Limits(), bundle=earlier)
    assert kept.problem is not None and "retired" in kept.problem
