"""The federation trust bundle: who the members are, signed by the federation authority.

Owns: the ``Member`` and ``TrustBundle`` values; the signed bundle file format
(a DSSE envelope over canonical JSON, signed with ``gateway.domains.TRUST_BUNDLE``);
producing it (``sign_bundle``) and verifying it (``verify_bundle``, a pure
function over bytes: signature over the exact payload bytes first, then strict
parsing, then expiry and version checks); the highest-version store that makes
a gateway refuse an older bundle even after a restart; and the small file
helpers the ``gateway federation`` commands use.

Does not own: key generation (``gateway.identity``), TLS channel setup or peer
authentication (the server/client modules use ``TrustBundle.member_by_fingerprint``
and ``root_certificates_pem``), or which datasets a member may actually read
(``gateway.policy``).

File format (``bundle.json``)::

    {"payloadType": "cn.dataexchange.gateway.v1.TrustBundle",
     "payload": base64(canonical JSON of the bundle),
     "signatures": [{"keyid": sha256_hex(authority public key)[:16], "sig": base64}]}

Canonical JSON: ``sort_keys``, separators ``(",", ":")``, ``ensure_ascii=False``,
UTF-8. Timestamps are RFC 3339 UTC with second precision (``2025-01-01T00:00:00Z``).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.catalogue import CODE_RE, JURISDICTION_RE
from gateway.crypto import (
    Rng,
    SealPublicKey,
    SigningKey,
    VerifyKey,
    b64,
    cert_fingerprint,
    digest_equal,
    sha256_hex,
    unb64,
)
from gateway.domains import TRUST_BUNDLE
from gateway.errors import (
    CryptoFailure,
    InvalidArgument,
    NotFound,
    StorageFailure,
    TrustBundleRejected,
)
from gateway.identity import (
    MAX_NAME_LEN,
    PublicDescriptor,
    check_jurisdiction,
    check_name,
    key_id,
    write_file_atomic,
)
from gateway.limits import DEFAULT_LIMITS, Limits

BUNDLE_FILE: Final = "bundle.json"
AUTHORITY_KEY_FILE: Final = "authority.key"
AUTHORITY_PUB_FILE: Final = "authority.pub"
VERSION_STATE_FILE: Final = "trust_bundle_state.json"

# A bundle issued this far in the future (clock skew) is still accepted.
MAX_CLOCK_SKEW: Final = _dt.timedelta(minutes=5)
MAX_SIGNATURES: Final = 8
MAX_DATASETS_PER_MEMBER: Final = 1024
MAX_ENDPOINTS_PER_MEMBER: Final = 16  # replicas of one gateway listed in the bundle
MAX_CERT_PEM_BYTES: Final = 16 * 1024

_ENDPOINT = re.compile(
    r"^(?:"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]{2,45}\]"
    r"):([0-9]{1,5})$"
)
_ORIGIN = re.compile(r"^[\x21-\x7e]{1,255}$")
_DATASET = re.compile(CODE_RE)
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
_KEYID = re.compile(r"^[0-9a-f]{16}$")
_TIMESTAMP_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"


def default_origin(jurisdiction: str) -> str:
    """Default ledger checkpoint origin of a member."""
    return f"{jurisdiction}.gateway.dataexchange.cn/ledger"


def authority_key_id(key: VerifyKey) -> str:
    """The DSSE ``keyid`` of the authority: first 16 hex digits of SHA-256(public key)."""
    return key_id(key)


# --------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One federation member, as listed in the bundle. Validated on construction."""

    jurisdiction: str  # six-digit code
    name: str
    endpoint: str  # "host:port" of its PEER port
    signing_key: VerifyKey
    ledger_key: VerifyKey
    seal_key: SealPublicKey
    tls_cert_pem: bytes
    tls_fingerprint: str  # hex SHA-256 of the certificate's DER; must match the cert
    datasets: tuple[str, ...]
    origin: str = ""  # ledger checkpoint origin; "" means default_origin(jurisdiction)
    # Every peer endpoint of the member (replicas of one gateway), ``endpoint``
    # first; () means just ``endpoint``. Requesters spread calls over them.
    endpoints: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_jurisdiction(self.jurisdiction)
        check_name(self.name)
        if not self.endpoints:
            object.__setattr__(self, "endpoints", (self.endpoint,))
        if not isinstance(self.endpoints, tuple):
            object.__setattr__(self, "endpoints", tuple(self.endpoints))
        if len(self.endpoints) > MAX_ENDPOINTS_PER_MEMBER:
            raise InvalidArgument.expected(
                "endpoints count", f"<= {MAX_ENDPOINTS_PER_MEMBER}", len(self.endpoints)
            )
        if self.endpoints[0] != self.endpoint or len(set(self.endpoints)) != len(self.endpoints):
            raise InvalidArgument("endpoints must start with endpoint and not repeat")
        for endpoint in self.endpoints:
            m = _ENDPOINT.fullmatch(endpoint) if isinstance(endpoint, str) else None
            if m is None or not 1 <= int(m.group(1)) <= 65535:
                raise InvalidArgument.expected("endpoint", "host:port with port 1-65535", endpoint)
        if not isinstance(self.signing_key, VerifyKey) or not isinstance(
            self.ledger_key, VerifyKey
        ):
            raise InvalidArgument("signing_key and ledger_key must be Ed25519 public keys")
        if not isinstance(self.seal_key, SealPublicKey):
            raise InvalidArgument("seal_key must be an X25519 public key")
        if digest_equal(self.signing_key.raw, self.ledger_key.raw):
            raise InvalidArgument("signing_key and ledger_key must be different keys")
        _check_single_cert_pem(self.tls_cert_pem)
        if not isinstance(self.tls_fingerprint, str) or not _FINGERPRINT.fullmatch(
            self.tls_fingerprint
        ):
            raise InvalidArgument.expected(
                "tls_fingerprint", "64 lowercase hex digits", self.tls_fingerprint
            )
        actual = cert_fingerprint(self.tls_cert_pem)
        if not digest_equal(actual, self.tls_fingerprint):
            raise InvalidArgument.expected(
                f"tls_fingerprint of {self.jurisdiction}",
                f"the certificate's SHA-256 {actual}",
                self.tls_fingerprint,
            )
        if not isinstance(self.datasets, tuple):
            object.__setattr__(self, "datasets", tuple(self.datasets))
        if len(self.datasets) > MAX_DATASETS_PER_MEMBER:
            raise InvalidArgument.expected(
                "datasets count", f"<= {MAX_DATASETS_PER_MEMBER}", len(self.datasets)
            )
        for code in self.datasets:
            if not isinstance(code, str) or not _DATASET.fullmatch(code):
                raise InvalidArgument.expected("dataset code", CODE_RE, code)
        if len(set(self.datasets)) != len(self.datasets):
            raise InvalidArgument(f"datasets of {self.jurisdiction} repeat a code")
        if self.origin == "":
            object.__setattr__(self, "origin", default_origin(self.jurisdiction))
        if not isinstance(self.origin, str) or not _ORIGIN.fullmatch(self.origin):
            raise InvalidArgument.expected(
                "origin", "1-255 printable ASCII characters without spaces", self.origin
            )

    @property
    def witness_name(self) -> str:
        """Key name this member cosigns peers' checkpoints under (C2SP
        tlog-cosignature), verified with its ``ledger_key``."""
        return f"{self.jurisdiction}.gateway.dataexchange.cn/witness"

    @classmethod
    def from_descriptor(
        cls,
        desc: PublicDescriptor,
        endpoint: str,
        datasets: Sequence[str],
        origin: str | None = None,
        source: str = "public.json",
        endpoints: Sequence[str] = (),
    ) -> Member:
        """Build a member from a ``public.json`` descriptor plus what the authority adds."""
        signing, ledger, seal = desc.keys(source)
        return cls(
            jurisdiction=desc.jurisdiction,
            name=desc.name,
            endpoint=endpoint,
            signing_key=signing,
            ledger_key=ledger,
            seal_key=seal,
            tls_cert_pem=desc.tls_cert_pem.encode("utf-8"),
            tls_fingerprint=desc.tls_fingerprint,
            datasets=tuple(datasets),
            origin=origin or default_origin(desc.jurisdiction),
            endpoints=tuple(endpoints),
        )

    def to_json(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if len(self.endpoints) > 1:  # single-endpoint members keep the original form
            extra["endpoints"] = list(self.endpoints)
        return extra | {
            "jurisdiction": self.jurisdiction,
            "name": self.name,
            "endpoint": self.endpoint,
            "signing_key": self.signing_key.b64(),
            "ledger_key": self.ledger_key.b64(),
            "seal_key": self.seal_key.b64(),
            "tls_cert_pem": self.tls_cert_pem.decode("ascii"),
            "tls_fingerprint": self.tls_fingerprint,
            "datasets": list(self.datasets),
            "origin": self.origin,
        }


_PEM_BEGIN: Final = b"-----BEGIN CERTIFICATE-----"
_PEM_END: Final = b"-----END CERTIFICATE-----"


def _check_single_cert_pem(pem: bytes) -> None:
    """Exactly one PEM certificate block and nothing else: the whole value goes
    into gRPC's root certificates, so it must not smuggle in a second cert."""
    if not isinstance(pem, bytes) or len(pem) > MAX_CERT_PEM_BYTES:
        raise InvalidArgument.expected(
            "tls_cert_pem", f"PEM bytes, at most {MAX_CERT_PEM_BYTES}", type(pem).__name__
        )
    body = pem.strip()
    if (
        not body.isascii()
        or not body.startswith(_PEM_BEGIN)
        or not body.endswith(_PEM_END)
        or body.count(b"-----BEGIN") != 1
        or body.count(b"-----END") != 1
    ):
        raise InvalidArgument.expected(
            "tls_cert_pem", "exactly one PEM CERTIFICATE block", "other content"
        )


def _check_members(members: Sequence[Member]) -> None:
    """Members must be unique in every identifying attribute."""
    seen: dict[str, dict[object, str]] = {
        "jurisdiction": {},
        "TLS certificate": {},
        "ledger origin": {},
        "public key": {},
    }
    for m in members:
        attrs: list[tuple[str, object]] = [
            ("jurisdiction", m.jurisdiction),
            ("TLS certificate", m.tls_fingerprint),
            ("ledger origin", m.origin),
            ("public key", m.signing_key.raw),
            ("public key", m.ledger_key.raw),
            ("public key", m.seal_key.raw),
        ]
        for what, value in attrs:
            table = seen[what]
            if value in table and not (what == "public key" and table[value] == m.jurisdiction):
                if what == "jurisdiction":
                    raise InvalidArgument(f"duplicate jurisdiction {m.jurisdiction}")
                raise InvalidArgument(
                    f"members {table[value]} and {m.jurisdiction} share the same {what}"
                )
            table[value] = m.jurisdiction


def _utc(value: _dt.datetime, what: str) -> _dt.datetime:
    if not isinstance(value, _dt.datetime) or value.tzinfo is None:
        raise InvalidArgument.expected(what, "a timezone-aware datetime", value)
    return value.astimezone(_dt.UTC).replace(microsecond=0)


def _fmt_time(value: _dt.datetime) -> str:
    return value.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class TrustBundle:
    """A verified federation trust bundle. Obtain one from :func:`verify_bundle`."""

    federation: str
    version: int  # strictly increasing
    issued_at: _dt.datetime  # UTC
    expires_at: _dt.datetime  # UTC
    members: tuple[Member, ...]
    digest: str  # hex SHA-256 of the signed payload bytes

    def __post_init__(self) -> None:
        check_name(self.federation)
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise InvalidArgument.expected("bundle version", "an integer >= 1", self.version)
        object.__setattr__(self, "issued_at", _utc(self.issued_at, "issued_at"))
        object.__setattr__(self, "expires_at", _utc(self.expires_at, "expires_at"))
        if self.expires_at <= self.issued_at:
            raise InvalidArgument.expected(
                "expires_at",
                f"after issued_at {_fmt_time(self.issued_at)}",
                _fmt_time(self.expires_at),
            )
        object.__setattr__(self, "members", tuple(self.members))
        _check_members(self.members)

    def member(self, jurisdiction: str) -> Member:
        for m in self.members:
            if m.jurisdiction == jurisdiction:
                return m
        raise NotFound(
            f"jurisdiction {jurisdiction} is not a member of federation {self.federation}"
        )

    def member_by_fingerprint(self, fp: str) -> Member | None:
        """The member whose pinned TLS certificate has SHA-256 fingerprint ``fp``."""
        fp = fp.lower().replace(":", "")
        for m in self.members:
            if digest_equal(m.tls_fingerprint, fp):
                return m
        return None

    def root_certificates_pem(self) -> bytes:
        """All members' pinned TLS certificates, concatenated (gRPC root certificates)."""
        return b"".join(
            m.tls_cert_pem if m.tls_cert_pem.endswith(b"\n") else m.tls_cert_pem + b"\n"
            for m in self.members
        )

    def jurisdictions(self) -> tuple[str, ...]:
        return tuple(m.jurisdiction for m in self.members)


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
    signatures: Annotated[list[_SignatureModel], Field(max_length=MAX_SIGNATURES)]


class _MemberModel(_Strict):
    jurisdiction: Annotated[str, Field(pattern=JURISDICTION_RE)]
    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME_LEN)]
    endpoint: Annotated[str, Field(min_length=3, max_length=300)]
    signing_key: Annotated[str, Field(max_length=64)]
    ledger_key: Annotated[str, Field(max_length=64)]
    seal_key: Annotated[str, Field(max_length=64)]
    tls_cert_pem: Annotated[str, Field(max_length=MAX_CERT_PEM_BYTES)]
    tls_fingerprint: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    datasets: Annotated[list[str], Field(max_length=MAX_DATASETS_PER_MEMBER)]
    origin: Annotated[str, Field(min_length=1, max_length=255)]
    endpoints: (
        Annotated[
            list[Annotated[str, Field(min_length=3, max_length=300)]],
            Field(min_length=1, max_length=MAX_ENDPOINTS_PER_MEMBER),
        ]
        | None
    ) = None


class _BundleModel(_Strict):
    federation: Annotated[str, Field(min_length=1, max_length=MAX_NAME_LEN)]
    version: Annotated[int, Field(ge=1, le=2**53 - 1)]
    issued_at: Annotated[str, Field(pattern=_TIMESTAMP_RE)]
    expires_at: Annotated[str, Field(pattern=_TIMESTAMP_RE)]
    members: list[_MemberModel]


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


def _parse_payload(payload: bytes, limits: Limits) -> TrustBundle:
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
    for i, mm in enumerate(model.members):
        try:
            members.append(
                Member(
                    jurisdiction=mm.jurisdiction,
                    name=mm.name,
                    endpoint=mm.endpoint,
                    signing_key=VerifyKey(unb64(mm.signing_key, "signing_key")),
                    ledger_key=VerifyKey(unb64(mm.ledger_key, "ledger_key")),
                    seal_key=SealPublicKey(unb64(mm.seal_key, "seal_key")),
                    tls_cert_pem=mm.tls_cert_pem.encode("utf-8"),
                    tls_fingerprint=mm.tls_fingerprint,
                    datasets=tuple(mm.datasets),
                    origin=mm.origin,
                    endpoints=tuple(mm.endpoints or ()),
                )
            )
        except InvalidArgument as exc:
            raise TrustBundleRejected(
                f"trust bundle malformed: members[{i}] ({mm.jurisdiction}): {exc}"
            ) from exc
    try:
        _check_members(members)
    except InvalidArgument as exc:
        raise TrustBundleRejected(f"trust bundle malformed: {exc}") from exc
    try:
        return TrustBundle(
            federation=model.federation,
            version=model.version,
            issued_at=_parse_time(model.issued_at, "issued_at"),
            expires_at=_parse_time(model.expires_at, "expires_at"),
            members=tuple(members),
            digest=sha256_hex(payload),
        )
    except InvalidArgument as exc:
        raise TrustBundleRejected(f"trust bundle malformed: {exc}") from exc


# --------------------------------------------------------------------------
# Sign and verify (pure)
# --------------------------------------------------------------------------


def bundle_payload(
    federation: str,
    version: int,
    issued_at: _dt.datetime,
    expires_at: _dt.datetime,
    members: Iterable[Member],
) -> bytes:
    """Canonical JSON payload bytes (times truncated to whole seconds, UTC)."""
    ms = sorted(members, key=lambda m: m.jurisdiction)
    return canonical_json(
        {
            "federation": federation,
            "version": version,
            "issued_at": _fmt_time(_utc(issued_at, "issued_at")),
            "expires_at": _fmt_time(_utc(expires_at, "expires_at")),
            "members": [m.to_json() for m in ms],
        }
    )


def sign_bundle(
    federation: str,
    version: int,
    issued_at: _dt.datetime,
    expires_at: _dt.datetime,
    members: Iterable[Member],
    authority: SigningKey,
    limits: Limits = DEFAULT_LIMITS,
) -> bytes:
    """Produce the signed bundle file bytes.

    The payload is parsed back with the verifier's own rules before signing, so
    the authority never signs a bundle a gateway would reject as malformed.
    Members are listed sorted by jurisdiction.
    """
    payload = bundle_payload(federation, version, issued_at, expires_at, members)
    if len(payload) > limits.max_bundle_bytes:
        raise TrustBundleRejected(
            f"trust bundle too large: {len(payload)} bytes, limit {limits.max_bundle_bytes}"
        )
    _parse_payload(payload, limits)
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


def _verified_payload(data: bytes, authority_key: VerifyKey, limits: Limits) -> bytes:
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
    authority_key: VerifyKey,
    now: _dt.datetime,
    min_version: int = 0,
    limits: Limits = DEFAULT_LIMITS,
) -> TrustBundle:
    """Verify signed bundle bytes and return the bundle.

    Order: size, envelope shape, signature over the exact payload bytes, strict
    payload parsing, then validity window and version. Raises
    TrustBundleRejected naming the failed check.
    """
    bundle = _parse_payload(_verified_payload(data, authority_key, limits), limits)
    now = _utc(now, "now")
    if now >= bundle.expires_at:
        raise TrustBundleRejected(
            f"trust bundle version {bundle.version} expired at {_fmt_time(bundle.expires_at)} "
            f"(now {_fmt_time(now)})"
        )
    if bundle.issued_at > now + MAX_CLOCK_SKEW:
        raise TrustBundleRejected(
            f"trust bundle version {bundle.version} is not yet valid: issued at "
            f"{_fmt_time(bundle.issued_at)} (now {_fmt_time(now)})"
        )
    if bundle.version < min_version:
        raise TrustBundleRejected(
            f"trust bundle version {bundle.version} is older than version {min_version} "
            "already accepted"
        )
    return bundle


def verify_bundle_for_reissue(
    data: bytes, authority_key: VerifyKey, limits: Limits = DEFAULT_LIMITS
) -> TrustBundle:
    """Verify signature and structure but NOT expiry. For the authority's own
    tooling only (renewing or editing an expired bundle); gateways use
    :func:`verify_bundle`."""
    return _parse_payload(_verified_payload(data, authority_key, limits), limits)


# --------------------------------------------------------------------------
# Highest accepted version (survives restarts)
# --------------------------------------------------------------------------


class BundleVersionStore(Protocol):
    def highest(self) -> int: ...

    def record(self, version: int) -> None: ...


@runtime_checkable
class _DigestAware(Protocol):
    def highest_digest(self) -> str | None: ...

    def record_with_digest(self, version: int, digest: str) -> None: ...


class FileVersionStore:
    """Highest accepted bundle version (and its digest) in a small JSON state
    file, written atomically. A missing file means nothing accepted yet; a
    corrupt one is an error (never silently reset to 0)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    @classmethod
    def in_dir(cls, data_dir: Path) -> FileVersionStore:
        return cls(Path(data_dir) / VERSION_STATE_FILE)

    def _load(self) -> tuple[int, str | None]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return 0, None
        except OSError as exc:
            raise StorageFailure(f"{self.path}: cannot read: {exc.strerror}") from exc
        try:
            doc = json.loads(raw.decode("utf-8"))
            version = doc["highest_version"]
            digest = doc.get("digest")
            if isinstance(version, bool) or not isinstance(version, int) or version < 0:
                raise ValueError("highest_version")
            if digest is not None and not (
                isinstance(digest, str) and _FINGERPRINT.fullmatch(digest)
            ):
                raise ValueError("digest")
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StorageFailure(
                f"{self.path}: trust bundle state file is corrupt; refusing to reset it"
            ) from exc
        return version, digest

    def highest(self) -> int:
        return self._load()[0]

    def highest_digest(self) -> str | None:
        return self._load()[1]

    def record(self, version: int) -> None:
        self._record(version, None)

    def record_with_digest(self, version: int, digest: str) -> None:
        self._record(version, digest)

    def _record(self, version: int, digest: str | None) -> None:
        with self._lock:
            current, current_digest = self._load()
            if version < current:
                raise TrustBundleRejected(
                    f"trust bundle version {version} is older than version {current} "
                    "already accepted"
                )
            if version == current and digest is None:
                digest = current_digest
            doc = {"highest_version": version, "digest": digest}
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                write_file_atomic(self.path, canonical_json(doc) + b"\n", 0o600)
            except OSError as exc:
                raise StorageFailure(f"{self.path}: cannot write: {exc.strerror}") from exc


def accept_bundle(bundle: TrustBundle, store: BundleVersionStore) -> None:
    """Record ``bundle`` as accepted; refuse an older version, and (if the store
    keeps digests) a different bundle under the version already accepted."""
    highest = store.highest()
    if bundle.version < highest:
        raise TrustBundleRejected(
            f"trust bundle version {bundle.version} is older than version {highest} "
            "already accepted"
        )
    if isinstance(store, _DigestAware):
        known = store.highest_digest()
        if (
            bundle.version == highest
            and known is not None
            and not digest_equal(known, bundle.digest)
        ):
            raise TrustBundleRejected(
                f"trust bundle version {bundle.version} differs from the version "
                f"{highest} already accepted (digest {bundle.digest[:16]} != {known[:16]})"
            )
        store.record_with_digest(bundle.version, bundle.digest)
    else:
        store.record(bundle.version)


# --------------------------------------------------------------------------
# Files (the edge)
# --------------------------------------------------------------------------


def _read_limited(path: Path, limit: int, what: str) -> bytes:
    try:
        with Path(path).open("rb") as fh:
            data = fh.read(limit + 1)
    except FileNotFoundError as exc:
        raise StorageFailure(f"{path}: {what} not found") from exc
    except OSError as exc:
        raise StorageFailure(f"{path}: cannot read {what}: {exc.strerror}") from exc
    if len(data) > limit:
        raise TrustBundleRejected(f"{path}: {what} too large: more than {limit} bytes")
    return data


def _read_b64_key(path: Path, what: str) -> bytes:
    data = _read_limited(path, 4096, what)
    try:
        raw = unb64(data.decode("ascii").strip(), str(path))
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{path}: {what}: expected one line of base64") from exc
    if len(raw) != 32:
        raise InvalidArgument.expected(f"{path}: {what} length", 32, len(raw))
    return raw


def read_authority_key(path: Path) -> VerifyKey:
    """Read the federation authority's public key (``authority.pub``: base64 line)."""
    return VerifyKey(_read_b64_key(Path(path), "authority public key"))


def read_authority_signing_key(path: Path) -> SigningKey:
    """Read the federation authority's private key (``authority.key``: base64 seed)."""
    return SigningKey(_read_b64_key(Path(path), "authority private key"))


def load_bundle(
    path: Path,
    authority_key: VerifyKey | None = None,
    now: _dt.datetime | None = None,
    min_version: int = 0,
    limits: Limits = DEFAULT_LIMITS,
) -> TrustBundle:
    """Read and verify a bundle file.

    ``authority_key`` None reads ``authority.pub`` from the bundle's folder: a
    convenience for offline tools only. A gateway must pass the authority key
    from its own configuration, never from next to the bundle it verifies.
    """
    path = Path(path)
    if authority_key is None:
        authority_key = read_authority_key(path.parent / AUTHORITY_PUB_FILE)
    data = _read_limited(path, limits.max_bundle_bytes, "trust bundle")
    return verify_bundle(data, authority_key, now or _dt.datetime.now(_dt.UTC), min_version, limits)


def init_federation(
    out_dir: Path,
    name: str,
    validity_days: int = 365,
    now: _dt.datetime | None = None,
    rng: Rng = os.urandom,
    force: bool = False,
) -> tuple[VerifyKey, Path]:
    """Create ``authority.key`` (0600), ``authority.pub`` and a version-1 bundle
    with no members in ``out_dir``. Refuses to overwrite unless ``force``."""
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
    authority = SigningKey.generate(rng)
    data = sign_bundle(name, 1, now, now + _dt.timedelta(days=validity_days), (), authority)
    try:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_file_atomic(
            out_dir / AUTHORITY_KEY_FILE, (b64(authority.seed()) + "\n").encode(), 0o600
        )
        write_file_atomic(
            out_dir / AUTHORITY_PUB_FILE, (authority.verify_key.b64() + "\n").encode(), 0o644
        )
        write_file_atomic(out_dir / BUNDLE_FILE, data, 0o644)
    except OSError as exc:
        raise StorageFailure(f"{out_dir}: cannot write: {exc.strerror}") from exc
    return authority.verify_key, out_dir / BUNDLE_FILE


def reissue_bundle_file(
    bundle_path: Path,
    authority: SigningKey,
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
    )
    try:
        write_file_atomic(bundle_path, data, 0o644)
    except OSError as exc:
        raise StorageFailure(f"{bundle_path}: cannot write: {exc.strerror}") from exc
    return verify_bundle(data, authority.verify_key, now)


def read_bundle_for_reissue(path: Path, authority_key: VerifyKey) -> TrustBundle:
    """Read a bundle file and verify it with :func:`verify_bundle_for_reissue`
    (signature and structure, not expiry). Authority tooling only."""
    return verify_bundle_for_reissue(
        _read_limited(Path(path), DEFAULT_LIMITS.max_bundle_bytes, "trust bundle"), authority_key
    )


def with_member(bundle: TrustBundle, member: Member, replace: bool = False) -> tuple[Member, ...]:
    """Members of ``bundle`` plus ``member``.

    Refuses a duplicate jurisdiction unless ``replace``."""
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
