"""The federation authority's tooling: signing bundles and editing membership.

Owns: ``sign_bundle`` (the authority never signs a payload the verifier would
refuse), creating a federation (``init_federation``: authority key pair and a
version-1 bundle), re-issuing the bundle file with version+1 (renewal, adding
or removing a member) and reading the authority's private key. Used by the
``gateway federation`` commands; gateways never sign bundles.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

from gateway import crypto
from gateway.crypto import AnySigningKey, AnyVerifyKey, Rng, b64
from gateway.domains import TRUST_BUNDLE
from gateway.errors import InvalidArgument, StorageFailure, SuiteMismatch, TrustBundleRejected
from gateway.identity import PublicDescriptor, check_name, write_file_atomic
from gateway.keyring import KeyKind, RetiredKey
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.trust.files import AUTHORITY_PUB_FILE, BUNDLE_FILE, read_key_line, read_limited
from gateway.trust.model import Member, TrustBundle, as_utc, authority_key_id
from gateway.trust.verify import (
    bundle_payload,
    parse_payload,
    verify_bundle,
    verify_bundle_for_reissue,
)

AUTHORITY_KEY_FILE: Final = "authority.key"


def read_authority_signing_key(path: Path, limits: Limits = DEFAULT_LIMITS) -> AnySigningKey:
    """Read the federation authority's private key (``authority.key``: one line)."""
    path = Path(path)
    suite, text = read_key_line(path, "authority private key", limits)
    return suite.signing_key(suite.decode_secret(text, f"{path}: authority private key"))


def sign_bundle(
    federation: str,
    version: int,
    issued_at: _dt.datetime,
    expires_at: _dt.datetime,
    members: Iterable[Member],
    authority: AnySigningKey,
    limits: Limits = DEFAULT_LIMITS,
    sm2_user_id: str = "",
) -> bytes:
    """Produce the signed bundle file bytes.

    The payload is parsed back with the verifier's own rules before signing, so
    the authority never signs a bundle a gateway would reject as malformed.
    Members are listed sorted by jurisdiction. The bundle's suite is the
    authority key's; a member of another suite is refused.
    """
    members = tuple(members)
    for m in members:
        crypto.require_suite(f"member {m.jurisdiction}'s keys", m.suite, authority.suite)
    payload = bundle_payload(
        federation, version, issued_at, expires_at, members, authority.suite, sm2_user_id
    )
    if len(payload) > limits.max_bundle_bytes:
        raise TrustBundleRejected(
            f"trust bundle too large: {len(payload)} bytes, limit {limits.max_bundle_bytes}"
        )
    parse_payload(payload, limits)
    envelope = {
        "payloadType": TRUST_BUNDLE,
        "payload": b64(payload),
        "signatures": [
            {
                "keyid": authority_key_id(authority.verify_key),
                "sig": b64(authority.sign(TRUST_BUNDLE, payload)),
            }
        ],
    }
    return json.dumps(envelope, indent=2).encode("ascii") + b"\n"


def init_federation(
    out_dir: Path,
    name: str,
    validity_days: int = 365,
    now: _dt.datetime | None = None,
    rng: Rng = os.urandom,
    force: bool = False,
    suite: str = crypto.DEFAULT_SUITE,
    sm2_user_id: str = "",
) -> tuple[AnyVerifyKey, Path]:
    """Create ``authority.key`` (0600), ``authority.pub`` and a version-1 bundle
    with no members in ``out_dir``, all of cipher suite ``suite`` (``intl`` or
    ``gm``, fixed for the federation's life; a gm federation may name another
    SM2 signer id than the default for its members' keys). Refuses to overwrite
    unless ``force``."""
    cs = crypto.suite(suite)
    out_dir = Path(out_dir)
    check_name(name)
    if validity_days < 1:
        raise InvalidArgument.expected("validity days", ">= 1", validity_days)
    files = (AUTHORITY_KEY_FILE, AUTHORITY_PUB_FILE, BUNDLE_FILE)
    existing = [f for f in files if (out_dir / f).exists()]
    if existing and not force:
        raise InvalidArgument(
            f"{out_dir}: refusing to overwrite existing {', '.join(existing)}; "
            "pass --force to replace them"
        )
    now = now or _dt.datetime.now(_dt.UTC)
    authority = cs.generate_signing_key(rng)
    data = sign_bundle(
        name, 1, now, now + _dt.timedelta(days=validity_days), (), authority,
        sm2_user_id=sm2_user_id,
    )  # fmt: skip
    try:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_file_atomic(
            out_dir / AUTHORITY_KEY_FILE,
            (cs.encode_secret(authority.secret()) + "\n").encode(),
            0o600,
        )
        write_file_atomic(
            out_dir / AUTHORITY_PUB_FILE, (authority.verify_key.encode() + "\n").encode(), 0o644
        )
        write_file_atomic(out_dir / BUNDLE_FILE, data, 0o644)
    except OSError as exc:
        raise StorageFailure(f"{out_dir}: cannot write: {exc.strerror}") from exc
    return authority.verify_key, out_dir / BUNDLE_FILE


def reissue_bundle_file(
    bundle_path: Path,
    authority: AnySigningKey,
    members: Sequence[Member] | None = None,
    validity_days: int = 365,
    now: _dt.datetime | None = None,
) -> TrustBundle:
    """Verify the current bundle file with ``authority``'s public key, then
    replace it with version+1 listing ``members`` (unchanged if None), issued
    now and valid for ``validity_days``. Returns the new bundle."""
    if validity_days < 1:
        raise InvalidArgument.expected("validity days", ">= 1", validity_days)
    bundle_path = Path(bundle_path)
    now = now or _dt.datetime.now(_dt.UTC)
    current = read_bundle_for_reissue(bundle_path, authority.verify_key)
    new_members = current.members if members is None else tuple(members)
    data = sign_bundle(
        current.federation,
        current.version + 1,
        now,
        now + _dt.timedelta(days=validity_days),
        new_members,
        authority,
        sm2_user_id=current.sm2_user_id,
    )
    try:
        write_file_atomic(bundle_path, data, 0o644)
    except OSError as exc:
        raise StorageFailure(f"{bundle_path}: cannot write: {exc.strerror}") from exc
    return verify_bundle(data, authority.verify_key, now)


def read_bundle_for_reissue(
    path: Path, authority_key: AnyVerifyKey, limits: Limits = DEFAULT_LIMITS
) -> TrustBundle:
    """Read a bundle file and verify it with :func:`verify_bundle_for_reissue`
    (signature and structure, not expiry). Authority tooling only."""
    return verify_bundle_for_reissue(
        read_limited(Path(path), limits.max_bundle_bytes, "trust bundle"), authority_key, limits
    )


def with_member(bundle: TrustBundle, member: Member, replace: bool = False) -> tuple[Member, ...]:
    """Members of ``bundle`` plus ``member``.

    Refuses a duplicate jurisdiction unless ``replace``, and a member whose keys
    are of another cipher suite than the federation's."""
    if member.suite != bundle.suite:
        raise SuiteMismatch(
            f"{member.jurisdiction}'s keys are suite {member.suite}, but federation "
            f"{bundle.federation} uses suite {bundle.suite}; run `gateway keygen --suite "
            f"{bundle.suite}` and send the new public.json"
        )
    others = tuple(m for m in bundle.members if m.jurisdiction != member.jurisdiction)
    if len(others) != len(bundle.members) and not replace:
        raise InvalidArgument(
            f"jurisdiction {member.jurisdiction} is already a member of {bundle.federation}; "
            "pass --replace to replace it"
        )
    return (*others, member)


def without_member(bundle: TrustBundle, jurisdiction: str) -> tuple[Member, ...]:
    """Members of ``bundle`` minus ``jurisdiction``; NotFound if it is not a member."""
    bundle.member(jurisdiction)
    return tuple(m for m in bundle.members if m.jurisdiction != jurisdiction)


def rotated_member(
    current: Member,
    desc: PublicDescriptor,
    now: _dt.datetime,
    overlap: _dt.timedelta,
    source: str = "public.json",
) -> tuple[Member, tuple[KeyKind, ...]]:
    """``current`` with the keys of ``desc`` (a bureau's new ``public.json``).

    Every key that changed is kept as a retired key valid until
    ``now + overlap``: checkpoints, cosignatures and evidence it signed keep
    verifying for good, and during the overlap peers still accept it for new
    envelopes and TLS handshakes. Returns the member and the kinds rotated.
    """
    if desc.jurisdiction != current.jurisdiction:
        raise InvalidArgument.expected(
            f"{source}: jurisdiction", current.jurisdiction, desc.jurisdiction
        )
    if overlap < _dt.timedelta(0):
        raise InvalidArgument.expected("overlap", ">= 0", overlap)
    until = as_utc(now, "now") + overlap
    fresh = Member.from_descriptor(
        desc,
        current.endpoint,
        current.datasets,
        origin=current.origin,
        source=source,
        endpoints=current.endpoints,  # every replica stays listed
    )
    retired = list(current.retired)
    changed: list[KeyKind] = []
    pairs: list[tuple[KeyKind, str, str]] = [
        ("envelope", current.signing_key.encode(), fresh.signing_key.encode()),
        ("ledger", current.ledger_key.encode(), fresh.ledger_key.encode()),
        ("witness", current.cosigner_key.encode(), fresh.cosigner_key.encode()),
        ("sealing", current.seal_key.encode(), fresh.seal_key.encode()),
        ("tls", current.tls_cert_pem.decode("ascii"), fresh.tls_cert_pem.decode("ascii")),
    ]
    for kind, old, new in pairs:
        if old != new:
            retired.append(RetiredKey(kind=kind, value=old, not_after=until))
            changed.append(kind)
    if not changed:
        raise InvalidArgument(
            f"{source}: no key differs from the bundle's keys for {desc.jurisdiction}"
        )
    return (
        Member(
            jurisdiction=fresh.jurisdiction,
            name=fresh.name,
            endpoint=fresh.endpoint,
            signing_key=fresh.signing_key,
            ledger_key=fresh.ledger_key,
            seal_key=fresh.seal_key,
            tls_cert_pem=fresh.tls_cert_pem,
            tls_fingerprint=fresh.tls_fingerprint,
            datasets=fresh.datasets,
            origin=fresh.origin,
            endpoints=fresh.endpoints,
            witness_key=fresh.witness_key,
            retired=tuple(retired),
        ),
        tuple(changed),
    )
