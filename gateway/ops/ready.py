"""Readiness checks of a gateway (``/readyz``): keys, bundle, policies, storage, sources.

Owns: one small function per check, each returning a ``CheckResult`` whose
detail says what is wrong in words an operator can act on, never a path to
a secret's content or any data. Does not own: serving them (``gateway.ops.http``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path

from gateway import crypto
from gateway.catalogue import Catalogue
from gateway.errors import GatewayError
from gateway.identity import GatewayKeys
from gateway.ops.http import Check, CheckResult
from gateway.sources import DataSource
from gateway.storage.probe import StoreProbe
from gateway.trust import TrustBundle, bundle_expired


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


def sources_check(
    source: DataSource, catalogue: Callable[[], Catalogue], served: Callable[[], Sequence[str]]
) -> Check:
    def sources() -> CheckResult:
        cat = catalogue()
        for code in served():
            dataset = cat.dataset(code)
            try:
                source.scan(dataset, [dataset.subject_column], 1)
            except GatewayError as exc:
                return CheckResult("sources", False, f"dataset {code}: {exc.message[:200]}")
            except Exception as exc:
                return CheckResult("sources", False, f"dataset {code}: {type(exc).__name__}")
        return CheckResult("sources", True)

    return sources
