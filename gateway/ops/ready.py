"""Readiness checks of a gateway (``/readyz``): keys, bundle, policies, storage, sources,
and the TLS certificate this gateway presents.

Owns: one small function per check, each returning a ``CheckResult`` whose
detail says what is wrong in words an operator can act on, never a path to
a secret's content or any data (a check that passes may carry a warning as
its detail); ``SourcesProbe``, which reads one row per served dataset (one
check at a time, its result reused briefly) and is not ready only when no
dataset can be served (a down source is named in the detail and the
``gateway_dataset_source_up`` metric); and ``own_certificate_status``, the
rule for this gateway's own certificate (close to its expiry; still the
retired one of a key rotation, its overlap running or ended), which the
readiness check, the metrics and the gateway's once-only log lines share.
Does not own: serving them (``gateway.ops.http``).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway import crypto
from gateway.catalogue import Catalogue
from gateway.errors import GatewayError
from gateway.identity import GatewayKeys
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.ops.http import Check, CheckResult
from gateway.sources import DataSource
from gateway.storage.probe import StoreProbe
from gateway.trust import Member, TrustBundle, bundle_expired

log = logging.getLogger("gateway.ops")


def keys_check(keys: GatewayKeys, key_dir: Path) -> Check:
    def keys_usable() -> CheckResult:
        if not key_dir.is_dir():
            return CheckResult("keys", False, f"key folder {key_dir} is gone")
        if not crypto.tls_key_matches_cert(keys.tls.key_pem, keys.tls.cert_pem):
            return CheckResult("keys", False, "TLS key does not match its certificate")
        return CheckResult("keys", True)

    return keys_usable


def bundle_check(bundle: Callable[[], TrustBundle], now_ms: Callable[[], int]) -> Check:
    def trust_bundle() -> CheckResult:
        problem = bundle_expired(bundle(), dt.datetime.fromtimestamp(now_ms() / 1000, dt.UTC))
        if problem is not None:
            return CheckResult("trust_bundle", False, problem)
        return CheckResult("trust_bundle", True)

    return trust_bundle


def _when(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class OwnCertificate:
    """Where the TLS certificate this gateway presents stands at one instant.

    ``problem``: peers refuse it now (expired, or retired and its rotation's
    overlap over); ``warning``: they will soon (fewer than
    ``Limits.own_certificate_warn_days`` left, or retired and trusted only
    until the overlap ends). Both None: nothing to do."""

    expires_at: dt.datetime
    seconds_left: float  # until it expires (negative once it has)
    retired: bool  # the bundle lists another certificate as this member's current one
    problem: str | None = None
    warning: str | None = None


def presents_retired(fingerprint: str, member: Member) -> bool:
    """Whether the certificate of ``fingerprint``, which this process presents, is no
    longer the one the bundle's entry for this gateway names as current."""
    return not crypto.digest_equal(member.tls_fingerprint, fingerprint)


def own_certificate_status(
    cert_pem: bytes,
    member: Member,
    now: dt.datetime,
    limits: Limits,
    *,
    bundle: TrustBundle | None = None,
) -> OwnCertificate:
    """The certificate this process presents (the one it started with) against its
    validity and the trust bundle's entry for this gateway at ``now``.

    ``bundle``, the bundle ``member`` is from, tells a retired certificate whose
    overlap ended while that bundle was in force from one a newer bundle, issued
    after the overlap (or listing it no more), no longer vouches for: a running
    gateway adopts such a bundle (it cannot stay on the old one: that would keep
    trusting what the authority has since changed), and is not ready until a
    restart presents its rotated certificate."""
    expires = crypto.cert_not_after(cert_pem)
    left = (expires - now).total_seconds()
    mine = crypto.cert_fingerprint(cert_pem)
    retired = presents_retired(mine, member)
    restart = "restart the gateway to present the new certificate in its key folder"
    if left <= 0:
        return OwnCertificate(
            expires,
            left,
            retired,
            problem=f"this gateway's TLS certificate expired at {_when(expires)}: peers refuse "
            "its handshakes (rotate it: `gateway keygen --rotate tls`, the authority's "
            "`federation rotate-keys`, then restart)",
        )
    if retired:
        overlap_ends = max(
            (
                r.not_after
                for r in member.retired
                if r.kind == "tls"
                and crypto.digest_equal(crypto.cert_fingerprint(r.value.encode("ascii")), mine)
            ),
            default=None,
        )
        if overlap_ends is None or now >= overlap_ends:
            if bundle is not None and (overlap_ends is None or bundle.issued_at >= overlap_ends):
                return OwnCertificate(
                    expires,
                    left,
                    retired,
                    problem=f"a newer trust bundle (version {bundle.version}) no longer lists "
                    "this gateway's certificate: restart the gateway so it presents its "
                    "rotated certificate",
                )
            ended = "" if overlap_ends is None else f" at {_when(overlap_ends)}"
            return OwnCertificate(
                expires,
                left,
                retired,
                problem="this gateway still presents its retired TLS certificate, which the "
                f"trust bundle stopped vouching for{ended} (its key rotation's overlap is over): "
                f"peers refuse its handshakes; {restart}",
            )
        return OwnCertificate(
            expires,
            left,
            retired,
            warning="this gateway presents its retired TLS certificate, which peers trust only "
            f"until its key rotation's overlap ends at {_when(overlap_ends)}: {restart} before then",
        )
    days = limits.own_certificate_warn_days
    if left < days * 86_400:
        return OwnCertificate(
            expires,
            left,
            retired,
            warning=f"this gateway's TLS certificate expires at {_when(expires)}, in less than "
            f"{days} days: rotate it (`gateway keygen --rotate tls`, the authority's "
            "`federation rotate-keys`, then restart) before then",
        )
    return OwnCertificate(expires, left, retired)


def own_certificate_check(
    cert_pem: bytes,
    bundle: Callable[[], TrustBundle],
    me: str,
    now_ms: Callable[[], int],
    limits: Limits,
) -> Check:
    def own_certificate() -> CheckResult:
        now = dt.datetime.fromtimestamp(now_ms() / 1000, dt.UTC)
        in_force = bundle()
        status = own_certificate_status(cert_pem, in_force.member(me), now, limits, bundle=in_force)
        if status.problem is not None:
            return CheckResult("own_certificate", False, status.problem)
        return CheckResult("own_certificate", True, status.warning or "")

    return own_certificate


def policies_check(
    catalogue: Callable[[], Catalogue], served: Callable[[], Sequence[str]]
) -> Check:
    def policies() -> CheckResult:
        cat = catalogue()
        if not cat.datasets:
            return CheckResult("policies", False, "the catalogue declares no dataset")
        if not served():
            return CheckResult("policies", False, "this gateway serves no dataset of its catalogue")
        return CheckResult("policies", True)

    return policies


def storage_check(probe: StoreProbe) -> Check:
    """The stores answer: SQLite files open (and the data folder is writable), or
    the PostgreSQL database the replicas share answers at this gateway's schema."""

    def storage() -> CheckResult:
        problem = probe.problem()
        if problem is not None:
            return CheckResult("storage", False, problem)
        return CheckResult("storage", True)

    return storage


class SourcesProbe:
    """Whether each served dataset's source answers now (``/readyz``, ``/metrics``).

    One check runs at a time (a probe arriving meanwhile gets the last result,
    or waits for the first), and its result is reused for
    ``ready_check_seconds``: load balancers and scrapers probing often cost the
    bureau's databases one single-row read per dataset per interval, never a
    sort of the table. A dataset going down is logged (WARNING) once, and its
    return (INFO) once, not on every probe.
    """

    def __init__(
        self,
        source: DataSource,
        catalogue: Callable[[], Catalogue],
        served: Callable[[], Sequence[str]],
        limits: Limits = DEFAULT_LIMITS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._catalogue = catalogue
        self._served = served
        self._ttl = limits.ready_check_seconds
        self._clock = clock
        self._checking = threading.Lock()
        self._at: float | None = None
        self._last: dict[str, str | None] = {}

    def status(self) -> dict[str, str | None]:
        """Served dataset -> None if its source answers, else what is wrong."""
        if self._at is not None and self._clock() - self._at < self._ttl:
            return self._last
        if not self._checking.acquire(blocking=self._at is None):
            return self._last  # another probe is checking: its predecessor's result
        try:
            if self._at is not None and self._clock() - self._at < self._ttl:
                return self._last  # checked while this probe waited
            now = self._check()
            self._log_changes(now)
            self._last, self._at = now, self._clock()
            return now
        finally:
            self._checking.release()

    def _check(self) -> dict[str, str | None]:
        cat = self._catalogue()
        out: dict[str, str | None] = {}
        for code in self._served():
            try:
                self._source.probe(cat.dataset(code))
                out[code] = None
            except GatewayError as exc:
                out[code] = exc.message[:200]
            except Exception as exc:
                out[code] = type(exc).__name__
        return out

    def _log_changes(self, now: dict[str, str | None]) -> None:
        for code, problem in now.items():
            before = self._last.get(code)
            if problem is not None and before is None:
                log.warning(
                    "dataset %s cannot be served: %s (the other datasets are)",
                    code,
                    problem,
                    extra={"event": "source_down", "dataset": code},
                )
            elif problem is None and before is not None:
                log.info(
                    "dataset %s is served again",
                    code,
                    extra={"event": "source_up", "dataset": code},
                )

    def up(self) -> dict[str, bool]:
        """Served dataset -> whether its source answers (the per-dataset metric)."""
        return {code: problem is None for code, problem in self.status().items()}

    def check(self) -> CheckResult:
        """Fails only when no served dataset can be read: a load balancer must
        not drop every dataset because one source is down. Datasets that
        cannot be served are named in the detail either way."""
        status = self.status()
        down = [f"dataset {c}: {p}" for c, p in sorted(status.items()) if p is not None]
        if not down:
            return CheckResult("sources", True)
        if len(down) == len(status):
            return CheckResult("sources", False, "no dataset can be served; " + "; ".join(down))
        return CheckResult(
            "sources",
            True,
            f"{len(down)} of {len(status)} datasets unavailable (the others are served); "
            + "; ".join(down),
        )


def sources_check(probe: SourcesProbe) -> Check:
    def sources() -> CheckResult:
        return probe.check()

    return sources
