"""The trust bundle's file format and its pure verification: bytes in, frozen values out.

Owns: the signed bundle format (a DSSE envelope over canonical JSON, signed
with ``gateway.domains.TRUST_BUNDLE``), its strict wire models, encoding a
bundle's payload (``bundle_payload``) and verifying bundle bytes
(``verify_bundle``), and whether a bundle is still in force (``check_in_force``:
a running gateway asks it on every peer exchange). As python-tuf's ``TrustedMetadataSet``, verification does
no file or network I/O and keeps no state: it takes the bytes, the trusted
authority key, the time and the highest version already accepted, and returns
a frozen ``TrustBundle`` or raises ``TrustBundleRejected`` naming the failed
check. Order: size, envelope shape, signature over the exact payload bytes,
strict payload parsing, then validity window and version.

Verification trusts only the authority key it is given, never a key carried
by the bundle. Size and count limits come from the caller's ``Limits``.

Does not own: reading files (``gateway.trust.files``), remembering the highest
version (``gateway.trust.state``) or signing (``gateway.trust.authority``).

File format (``bundle.json``)::

    {"payloadType": "cn.dataexchange.gateway.v1.TrustBundle",
     "payload": base64(canonical JSON of the bundle),
     "signatures": [{"keyid": sha256_hex(authority public key)[:16], "sig": base64}]}

Canonical JSON: ``sort_keys``, separators ``(",", ":")``, ``ensure_ascii=False``,
UTF-8. Timestamps are RFC 3339 UTC with second precision (``2025-01-01T00:00:00Z``).

Cipher suite: the payload's ``suite`` (``intl``, the default when absent, or
``gm``) is chosen at ``gateway federation init --suite``; the authority key and
every member key are of that suite (gm keys are ``sm2:``-tagged), and a key or
bundle of the other suite is refused with a message naming both suites.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway import crypto, identifiers
from gateway.crypto import AnyVerifyKey, unb64
from gateway.domains import TRUST_BUNDLE
from gateway.errors import CryptoFailure, InvalidArgument, TrustBundleRejected
from gateway.identity import MAX_NAME_LEN
from gateway.keyring import KeyKind, RetiredKey
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.trust.model import (
    Member,
    TrustBundle,
    as_utc,
    authority_key_id,
    check_members,
    format_time,
)

_KEYID = re.compile(r"^[0-9a-f]{16}$")
_TIMESTAMP_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"


# --------------------------------------------------------------------------
# Wire models (strict; extra keys refused)
# --------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class _SignatureModel(_Strict):
    keyid: Annotated[str, Field(max_length=128)]
    sig: Annotated[str, Field(max_length=256)]


class _EnvelopeModel(_Strict):
    payloadType: str  # DSSE field name
    payload: str
    signatures: list[_SignatureModel]  # count checked against Limits


class _RetiredModel(_Strict):
    kind: KeyKind
    key: Annotated[str, Field(min_length=1)]  # size checked against Limits
    not_before: Annotated[str, Field(pattern=_TIMESTAMP_RE)] | None = None
    not_after: Annotated[str, Field(pattern=_TIMESTAMP_RE)]


class _MemberModel(_Strict):
    jurisdiction: identifiers.JurisdictionCode
    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME_LEN)]
    endpoint: Annotated[str, Field(min_length=3, max_length=300)]
    signing_key: Annotated[str, Field(max_length=128)]
    ledger_key: Annotated[str, Field(max_length=128)]
    seal_key: Annotated[str, Field(max_length=128)]
    tls_cert_pem: str  # size checked against Limits
    tls_fingerprint: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    datasets: list[str]  # count checked against Limits
    origin: Annotated[str, Field(min_length=1, max_length=255)]
    # Replicas of one gateway; count checked against Limits.
    endpoints: list[Annotated[str, Field(min_length=3, max_length=300)]] | None = None
    witness_key: Annotated[str, Field(max_length=128)] | None = None
    retired_keys: list[_RetiredModel] = []  # count and sizes checked against Limits


class _BundleModel(_Strict):
    federation: Annotated[str, Field(min_length=1, max_length=MAX_NAME_LEN)]
    version: Annotated[int, Field(ge=1, le=2**53 - 1)]
    issued_at: Annotated[str, Field(pattern=_TIMESTAMP_RE)]
    expires_at: Annotated[str, Field(pattern=_TIMESTAMP_RE)]
    members: list[_MemberModel]
    suite: Literal["intl", "gm"] = "intl"  # absent in bundles from before suites
    sm2_user_id: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")] = (
        "1234567812345678"
    )


def _malformed(exc: ValidationError, what: str) -> TrustBundleRejected:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "(top level)"
    value = repr(first.get("input"))
    if len(value) > 60:
        value = value[:57] + "..."
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return TrustBundleRejected(
        f"trust bundle malformed: {what} field {field}: {first['msg']}, got {value}{more}"
    )


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _json_loads(data: bytes, what: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except UnicodeDecodeError as exc:
        raise TrustBundleRejected(f"trust bundle malformed: {what} is not UTF-8") from exc
    except (ValueError, RecursionError) as exc:
        raise TrustBundleRejected(f"trust bundle malformed: {what} is not JSON ({exc})") from exc


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def _parse_time(text: str, what: str) -> _dt.datetime:
    try:
        return _dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=_dt.UTC)
    except ValueError as exc:
        raise TrustBundleRejected(
            f"trust bundle malformed: {what}: expected an RFC 3339 UTC time, got {text!r}"
        ) from exc


def parse_payload(payload: bytes, limits: Limits) -> TrustBundle:
    """Strictly parse signed payload bytes into a TrustBundle (no expiry/version checks)."""
    doc = _json_loads(payload, "payload")
    try:
        model = _BundleModel.model_validate(doc)
    except ValidationError as exc:
        raise _malformed(exc, "payload") from exc
    if len(model.members) > limits.max_bundle_members:
        raise TrustBundleRejected(
            f"trust bundle too large: {len(model.members)} members, "
            f"limit {limits.max_bundle_members}"
        )
    members: list[Member] = []
    suite = crypto.suite(model.suite)
    user_id = "" if model.sm2_user_id == crypto.gm.DEFAULT_USER_ID.decode() else model.sm2_user_id
    if user_id and suite.name != "gm":
        raise TrustBundleRejected("trust bundle malformed: sm2_user_id in a bundle of suite intl")
    uid = user_id.encode("ascii") or crypto.gm.DEFAULT_USER_ID
    for i, mm in enumerate(model.members):
        if len(mm.datasets) > limits.max_datasets_per_member:
            raise TrustBundleRejected(
                f"trust bundle malformed: members[{i}] ({mm.jurisdiction}): datasets count: "
                f"expected <= {limits.max_datasets_per_member}, got {len(mm.datasets)}"
            )
        if (
            mm.endpoints is not None
            and not 1 <= len(mm.endpoints) <= limits.max_endpoints_per_member
        ):
            raise TrustBundleRejected(
                f"trust bundle malformed: members[{i}] ({mm.jurisdiction}): endpoints count: "
                f"expected 1 to {limits.max_endpoints_per_member}, got {len(mm.endpoints)}"
            )
        if len(mm.tls_cert_pem) > limits.max_cert_pem_bytes:
            raise TrustBundleRejected(
                f"trust bundle malformed: members[{i}] ({mm.jurisdiction}): tls_cert_pem: "
                f"expected at most {limits.max_cert_pem_bytes} bytes, got {len(mm.tls_cert_pem)}"
            )
        if len(mm.retired_keys) > limits.max_retired_keys or any(
            len(r.key) > limits.max_cert_pem_bytes for r in mm.retired_keys
        ):
            raise TrustBundleRejected(
                f"trust bundle malformed: members[{i}] ({mm.jurisdiction}): retired_keys: "
                f"expected at most {limits.max_retired_keys} keys of at most "
                f"{limits.max_cert_pem_bytes} bytes"
            )
        try:
            members.append(
                Member(
                    jurisdiction=mm.jurisdiction,
                    name=mm.name,
                    endpoint=mm.endpoint,
                    signing_key=suite.decode_verify_key(mm.signing_key, "signing_key").with_user_id(
                        uid
                    ),
                    ledger_key=suite.decode_verify_key(mm.ledger_key, "ledger_key").with_user_id(
                        uid
                    ),
                    seal_key=suite.decode_seal_public_key(mm.seal_key, "seal_key"),
                    tls_cert_pem=mm.tls_cert_pem.encode("utf-8"),
                    tls_fingerprint=mm.tls_fingerprint,
                    datasets=tuple(mm.datasets),
                    origin=mm.origin,
                    endpoints=tuple(mm.endpoints or ()),
                    witness_key=(
                        suite.decode_verify_key(mm.witness_key, "witness_key").with_user_id(uid)
                        if mm.witness_key
                        else None
                    ),
                    retired=tuple(
                        RetiredKey(
                            kind=r.kind,
                            value=r.key,
                            not_after=_parse_time(r.not_after, "retired key not_after"),
                            not_before=(
                                _parse_time(r.not_before, "retired key not_before")
                                if r.not_before
                                else None
                            ),
                        )
                        for r in mm.retired_keys
                    ),
                )
            )
        except InvalidArgument as exc:
            raise TrustBundleRejected(
                f"trust bundle malformed: members[{i}] ({mm.jurisdiction}): {exc}"
            ) from exc
    try:
        check_members(members)
    except InvalidArgument as exc:
        raise TrustBundleRejected(f"trust bundle malformed: {exc}") from exc
    try:
        return TrustBundle(
            federation=model.federation,
            version=model.version,
            issued_at=_parse_time(model.issued_at, "issued_at"),
            expires_at=_parse_time(model.expires_at, "expires_at"),
            members=tuple(members),
            digest=suite.digest(payload).hex(),
            suite=suite.name,
            sm2_user_id=user_id,
        )
    except InvalidArgument as exc:
        raise TrustBundleRejected(f"trust bundle malformed: {exc}") from exc


# --------------------------------------------------------------------------
# Encode and verify (pure)
# --------------------------------------------------------------------------


def bundle_payload(
    federation: str,
    version: int,
    issued_at: _dt.datetime,
    expires_at: _dt.datetime,
    members: Iterable[Member],
    suite: str = crypto.DEFAULT_SUITE,
    sm2_user_id: str = "",
) -> bytes:
    """Canonical JSON payload bytes (times truncated to whole seconds, UTC).
    ``sm2_user_id`` "" (the default id) is left out of the payload."""
    ms = sorted(members, key=lambda m: m.jurisdiction)
    extra = {"sm2_user_id": sm2_user_id} if sm2_user_id else {}
    return canonical_json(
        {
            **extra,
            "suite": crypto.check_suite_name(suite),
            "federation": federation,
            "version": version,
            "issued_at": format_time(as_utc(issued_at, "issued_at")),
            "expires_at": format_time(as_utc(expires_at, "expires_at")),
            "members": [m.to_json() for m in ms],
        }
    )


def _claimed_suite(payload: bytes) -> str:
    """The suite an (unverified) payload names, only to word a refusal clearly."""
    try:
        doc = json.loads(payload.decode("utf-8"))
        suite = doc.get("suite", "intl") if isinstance(doc, dict) else "intl"
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "intl"
    return suite if suite in crypto.SUITE_NAMES else "intl"


def verified_payload(data: bytes, authority_key: AnyVerifyKey, limits: Limits) -> bytes:
    """Check the envelope and signature; return the exact signed payload bytes."""
    if len(data) > limits.max_bundle_bytes:
        raise TrustBundleRejected(
            f"trust bundle too large: {len(data)} bytes, limit {limits.max_bundle_bytes}"
        )
    doc = _json_loads(data, "envelope")
    try:
        env = _EnvelopeModel.model_validate(doc)
    except ValidationError as exc:
        raise _malformed(exc, "envelope") from exc
    if len(env.signatures) > limits.max_bundle_signatures:
        raise TrustBundleRejected(
            f"trust bundle malformed: {len(env.signatures)} signatures, "
            f"limit {limits.max_bundle_signatures}"
        )
    if env.payloadType != TRUST_BUNDLE:
        raise TrustBundleRejected(
            f"trust bundle malformed: payloadType: expected {TRUST_BUNDLE!r}, "
            f"got {env.payloadType[:80]!r}"
        )
    try:
        payload = unb64(env.payload, "payload")
    except InvalidArgument as exc:
        raise TrustBundleRejected("trust bundle malformed: payload is not valid base64") from exc
    present = [s for s in env.signatures if s.sig]
    if not present:
        raise TrustBundleRejected("trust bundle is unsigned (no signatures)")
    claimed = _claimed_suite(payload)
    if claimed != authority_key.suite:
        raise TrustBundleRejected(
            f"trust bundle is a suite {claimed} bundle, but this federation's authority key "
            f"is suite {authority_key.suite}; a gateway accepts bundles of its federation's "
            "suite only"
        )
    expected_id = authority_key_id(authority_key)
    candidates = [s for s in present if s.keyid == expected_id]
    if not candidates:
        found = ", ".join(
            sorted({s.keyid if _KEYID.fullmatch(s.keyid) else "(not a key id)" for s in present})
        )
        raise TrustBundleRejected(
            "trust bundle is not signed by this federation's authority: "
            f"expected key id {expected_id}, found {found}"
        )
    for s in candidates:
        try:
            authority_key.verify(TRUST_BUNDLE, payload, unb64(s.sig, "signature"))
        except (CryptoFailure, InvalidArgument):
            continue
        return payload
    raise TrustBundleRejected(
        "trust bundle signature does not verify with the federation authority key"
    )


def verify_bundle(
    data: bytes,
    authority_key: AnyVerifyKey,
    now: _dt.datetime,
    min_version: int = 0,
    limits: Limits = DEFAULT_LIMITS,
) -> TrustBundle:
    """Verify signed bundle bytes and return the bundle.

    Order: size, envelope shape, signature over the exact payload bytes, strict
    payload parsing, then validity window and version. Raises
    TrustBundleRejected naming the failed check.
    """
    bundle = parse_payload(verified_payload(data, authority_key, limits), limits)
    now = as_utc(now, "now")
    check_in_force(bundle, now)
    if bundle.issued_at > now + _dt.timedelta(seconds=limits.max_clock_skew_seconds):
        raise TrustBundleRejected(
            f"trust bundle version {bundle.version} is not yet valid: issued at "
            f"{format_time(bundle.issued_at)} (now {format_time(now)})"
        )
    if bundle.version < min_version:
        raise TrustBundleRejected(
            f"trust bundle version {bundle.version} is older than version {min_version} "
            "already accepted"
        )
    return bundle


def bundle_expired(bundle: TrustBundle, now: _dt.datetime) -> str | None:
    """Why ``bundle`` is no longer in force at ``now`` (None: it is), in words an
    operator can act on: one message for start-up, reload, readiness and every
    peer exchange a running gateway refuses once its bundle has expired."""
    now = as_utc(now, "now")
    if now < bundle.expires_at:
        return None
    return (
        f"trust bundle version {bundle.version} expired at {format_time(bundle.expires_at)} "
        f"(now {format_time(now)}); the operator must install a new bundle from the "
        "federation authority (`gateway federation renew` issues one)"
    )


def check_in_force(bundle: TrustBundle, now: _dt.datetime) -> None:
    """Refuse (``TrustBundleRejected``, FAILED_PRECONDITION) a bundle past its validity."""
    problem = bundle_expired(bundle, now)
    if problem is not None:
        raise TrustBundleRejected(problem)


def verify_bundle_for_reissue(
    data: bytes, authority_key: AnyVerifyKey, limits: Limits = DEFAULT_LIMITS
) -> TrustBundle:
    """Verify signature and structure but NOT expiry. For the authority's own
    tooling only (renewing or editing an expired bundle); gateways use
    :func:`verify_bundle`."""
    return parse_payload(verified_payload(data, authority_key, limits), limits)
