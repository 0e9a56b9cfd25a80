"""Trust-bundle values: the federation's members and the bundle that lists them.

Owns: the frozen, validated ``Member`` and ``TrustBundle`` values and the rules
every value obeys on construction (identifiers, endpoint syntax, one PEM
certificate whose SHA-256 matches the pinned fingerprint, distinct keys,
members unique in every identifying attribute, a validity window, and one
cipher suite: the bundle's ``suite`` (``intl`` or ``gm``) is every member
key's, and a key of the other suite is a ``SuiteMismatch`` naming both).

Does not own: the bundle's file format or its verification
(``gateway.trust.verify``), size and count limits (``gateway.limits``, checked
where bytes are parsed), persisted state (``gateway.trust.state``) or the
authority's tooling (``gateway.trust.authority``).
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from gateway import crypto, identifiers
from gateway.crypto import AnySealPublicKey, AnyVerifyKey, cert_fingerprint, digest_equal
from gateway.errors import InvalidArgument, NotFound
from gateway.identity import PublicDescriptor, check_name, key_id
from gateway.keyring import KeyKind, KeyRing, RetiredKey, check_retired, ring_from

_ENDPOINT = re.compile(
    r"^(?:"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]{2,45}\]"
    r"):([0-9]{1,5})$"
)
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def is_sha256_hex(value: object) -> bool:
    """64 lowercase hex digits (a certificate fingerprint or a bundle digest)."""
    return isinstance(value, str) and _SHA256_HEX.fullmatch(value) is not None


def default_origin(jurisdiction: str) -> str:
    """Default ledger checkpoint origin of a member."""
    return f"{jurisdiction}.gateway.dataexchange.cn/ledger"


def authority_key_id(key: AnyVerifyKey) -> str:
    """The DSSE ``keyid`` of the authority: first 16 hex digits of SHA-256(public key)."""
    return key_id(key)


@dataclass(frozen=True)
class Member:
    """One federation member, as listed in the bundle. Validated on construction."""

    jurisdiction: str  # six-digit code
    name: str
    endpoint: str  # "host:port" of its PEER port
    signing_key: AnyVerifyKey
    ledger_key: AnyVerifyKey
    seal_key: AnySealPublicKey
    tls_cert_pem: bytes
    tls_fingerprint: str  # hex SHA-256 of the certificate's DER; must match the cert
    datasets: tuple[str, ...]
    origin: str = ""  # ledger checkpoint origin; "" means default_origin(jurisdiction)
    # Every peer endpoint of the member (replicas of one gateway), ``endpoint``
    # first; () means just ``endpoint``. Requesters spread calls over them
    # (their count is bounded by ``Limits.max_endpoints_per_member`` on parse).
    endpoints: tuple[str, ...] = ()
    # Key that cosigns peers' checkpoints (C2SP asks for a distinct cosigner
    # key); None in bundles made before it existed: the ledger key cosigns.
    witness_key: AnyVerifyKey | None = None
    # Keys this member used before a rotation, each with its validity
    # interval (``gateway.keyring``): old checkpoints, evidence and, during a
    # rotation's overlap, old envelopes and TLS handshakes still verify.
    retired: tuple[RetiredKey, ...] = ()

    def __post_init__(self) -> None:
        identifiers.jurisdiction(self.jurisdiction, "jurisdiction code")
        check_name(self.name)
        if not self.endpoints:
            object.__setattr__(self, "endpoints", (self.endpoint,))
        if not isinstance(self.endpoints, tuple):
            object.__setattr__(self, "endpoints", tuple(self.endpoints))
        if self.endpoints[0] != self.endpoint or len(set(self.endpoints)) != len(self.endpoints):
            raise InvalidArgument("endpoints must start with endpoint and not repeat")
        for endpoint in self.endpoints:
            m = _ENDPOINT.fullmatch(endpoint) if isinstance(endpoint, str) else None
            if m is None or not 1 <= int(m.group(1)) <= 65535:
                raise InvalidArgument.expected("endpoint", "host:port with port 1-65535", endpoint)
        keys = (self.signing_key, self.ledger_key, self.seal_key)
        suites = {getattr(k, "suite", None) for k in keys}
        if len(suites) != 1 or not suites <= set(crypto.SUITE_NAMES):
            raise InvalidArgument(
                "signing_key, ledger_key and seal_key must be public keys of one cipher suite"
            )
        if digest_equal(self.signing_key.raw, self.ledger_key.raw):
            raise InvalidArgument("signing_key and ledger_key must be different keys")
        if self.witness_key is not None:
            if getattr(self.witness_key, "suite", None) != self.signing_key.suite:
                raise InvalidArgument("witness_key must be a public key of the members' suite")
            if digest_equal(self.witness_key.raw, self.ledger_key.raw) or digest_equal(
                self.witness_key.raw, self.signing_key.raw
            ):
                raise InvalidArgument("witness_key must differ from signing_key and ledger_key")
        object.__setattr__(self, "retired", tuple(self.retired))
        try:
            check_retired(self.retired)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from exc
        for r in self.retired:
            if r.kind == "tls":
                check_single_cert_pem(r.value.encode("ascii", "replace"))
            elif r.kind == "sealing":
                self.suite_of_keys.decode_seal_public_key(r.value, "retired sealing key")
            else:
                self.suite_of_keys.decode_verify_key(r.value, f"retired {r.kind} key")
        check_single_cert_pem(self.tls_cert_pem)
        if not isinstance(self.tls_fingerprint, str) or not is_sha256_hex(self.tls_fingerprint):
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
        for code in self.datasets:
            identifiers.code(code, "dataset code")
        if len(set(self.datasets)) != len(self.datasets):
            raise InvalidArgument(f"datasets of {self.jurisdiction} repeat a code")
        if self.origin == "":
            object.__setattr__(self, "origin", default_origin(self.jurisdiction))
        identifiers.origin(self.origin)

    @property
    def suite(self) -> str:
        return self.signing_key.suite

    @property
    def witness_name(self) -> str:
        """Key name this member cosigns peers' checkpoints under (C2SP
        tlog-cosignature), verified with its witness key."""
        return f"{self.jurisdiction}.gateway.dataexchange.cn/witness"

    @property
    def cosigner_key(self) -> AnyVerifyKey:
        """The current key of this member's witness cosignatures."""
        return self.witness_key or self.ledger_key

    def ring(self, kind: KeyKind) -> KeyRing:
        """This member's Ed25519 keys of ``kind`` (envelope, ledger, witness) over
        time: ``ring.at(t)`` is the one lookup for "keys of kind K valid at T"."""
        current = {
            "envelope": self.signing_key,
            "ledger": self.ledger_key,
            "witness": self.cosigner_key,
        }.get(kind)
        if current is None:
            raise InvalidArgument.expected("key kind", "envelope | ledger | witness", kind)
        decode = crypto.suite_of(current).decode_verify_key
        uid = getattr(current, "user_id", None)  # a gm bundle's SM2 id, kept on retired keys

        def decode_key(text: str, what: str) -> AnyVerifyKey:
            key = decode(text, what)
            return key.with_user_id(uid) if uid is not None else key

        return ring_from(kind, current, self.retired, decode_key)

    @property
    def suite_of_keys(self) -> crypto.Suite:
        return crypto.suite_of(self.signing_key)

    def seal_keys_at(self, when: _dt.datetime) -> tuple[AnySealPublicKey, ...]:
        """The sealing keys of this member valid at ``when`` (current first)."""
        old = [
            self.suite_of_keys.decode_seal_public_key(r.value, "retired sealing key")
            for r in self.retired
            if r.kind == "sealing" and r.valid_at(when)
        ]
        return (self.seal_key, *old)

    def tls_certs_at(self, when: _dt.datetime) -> tuple[tuple[bytes, str], ...]:
        """(PEM, fingerprint) of the TLS certificates valid at ``when``: the
        current one and any retired one still inside its overlap window."""
        out = [(self.tls_cert_pem, self.tls_fingerprint)]
        for r in self.retired:
            if r.kind == "tls" and r.valid_at(when):
                pem = r.value.encode("ascii")
                out.append((pem, cert_fingerprint(pem)))
        return tuple(out)

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
            witness_key=desc.witness(source),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "jurisdiction": self.jurisdiction,
            "name": self.name,
            "endpoint": self.endpoint,
            "signing_key": self.signing_key.encode(),
            "ledger_key": self.ledger_key.encode(),
            "seal_key": self.seal_key.encode(),
            "tls_cert_pem": self.tls_cert_pem.decode("ascii"),
            "tls_fingerprint": self.tls_fingerprint,
            "datasets": list(self.datasets),
            "origin": self.origin,
            # Only when present, so bundles without them keep their bytes.
            **({"witness_key": self.witness_key.encode()} if self.witness_key else {}),
            **({"retired_keys": [_retired_json(r) for r in self.retired]} if self.retired else {}),
            **({"endpoints": list(self.endpoints)} if len(self.endpoints) > 1 else {}),
        }


def _retired_json(r: RetiredKey) -> dict[str, str]:
    out = {"kind": r.kind, "key": r.value, "not_after": format_time(r.not_after)}
    if r.not_before is not None:
        out["not_before"] = format_time(r.not_before)
    return out


_PEM_BEGIN: Final = b"-----BEGIN CERTIFICATE-----"
_PEM_END: Final = b"-----END CERTIFICATE-----"


def check_single_cert_pem(pem: bytes) -> None:
    """Exactly one PEM certificate block and nothing else: the whole value goes
    into gRPC's root certificates, so it must not smuggle in a second cert."""
    if not isinstance(pem, bytes):
        raise InvalidArgument.expected("tls_cert_pem", "PEM bytes", type(pem).__name__)
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


def check_members(members: Sequence[Member]) -> None:
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
            *((("public key", m.witness_key.raw),) if m.witness_key else ()),
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


def as_utc(value: _dt.datetime, what: str) -> _dt.datetime:
    if not isinstance(value, _dt.datetime) or value.tzinfo is None:
        raise InvalidArgument.expected(what, "a timezone-aware datetime", value)
    return value.astimezone(_dt.UTC).replace(microsecond=0)


def format_time(value: _dt.datetime) -> str:
    return value.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class TrustBundle:
    """A verified federation trust bundle. Obtain one from :func:`verify_bundle`."""

    federation: str
    version: int  # strictly increasing
    issued_at: _dt.datetime  # UTC
    expires_at: _dt.datetime  # UTC
    members: tuple[Member, ...]
    digest: str  # hex digest (the suite's hash) of the signed payload bytes
    suite: str = crypto.DEFAULT_SUITE  # "intl" or "gm": every key is of this suite
    # gm only: the SM2 signer id every member key's Z value uses; "" means the
    # standard default 1234567812345678 (the authority key always uses the default).
    sm2_user_id: str = ""

    def __post_init__(self) -> None:
        check_name(self.federation)
        crypto.check_suite_name(self.suite)
        if self.sm2_user_id and self.suite != "gm":
            raise InvalidArgument("sm2_user_id: only a gm bundle names an SM2 user id")
        for m in self.members:
            crypto.require_suite(f"member {m.jurisdiction}'s keys", m.suite, self.suite)
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise InvalidArgument.expected("bundle version", "an integer >= 1", self.version)
        object.__setattr__(self, "issued_at", as_utc(self.issued_at, "issued_at"))
        object.__setattr__(self, "expires_at", as_utc(self.expires_at, "expires_at"))
        if self.expires_at <= self.issued_at:
            raise InvalidArgument.expected(
                "expires_at",
                f"after issued_at {format_time(self.issued_at)}",
                format_time(self.expires_at),
            )
        object.__setattr__(self, "members", tuple(self.members))
        check_members(self.members)

    def member(self, jurisdiction: str) -> Member:
        for m in self.members:
            if m.jurisdiction == jurisdiction:
                return m
        raise NotFound(
            f"jurisdiction {jurisdiction} is not a member of federation {self.federation}"
        )

    def member_by_fingerprint(self, fp: str, now: _dt.datetime | None = None) -> Member | None:
        """The member whose pinned TLS certificate (current, or retired and
        still in its overlap window at ``now``) has SHA-256 fingerprint ``fp``."""
        fp = fp.lower().replace(":", "")
        now = now or _dt.datetime.now(_dt.UTC)
        for m in self.members:
            for _, known in m.tls_certs_at(now):
                if digest_equal(known, fp):
                    return m
        return None

    def root_certificates_pem(self, now: _dt.datetime | None = None) -> bytes:
        """All members' pinned TLS certificates valid at ``now`` (current ones,
        and retired ones inside their overlap window), concatenated (gRPC roots)."""
        now = now or _dt.datetime.now(_dt.UTC)
        pems = [pem for m in self.members for pem, _ in m.tls_certs_at(now)]
        return b"".join(p if p.endswith(b"\n") else p + b"\n" for p in pems)

    def tls_roots_change_after(self, now: _dt.datetime) -> _dt.datetime | None:
        """The next instant after ``now`` at which ``root_certificates_pem`` changes
        without a new bundle (a retired certificate's overlap starts or ends), or
        None if it never does."""
        edges = [
            t
            for m in self.members
            for r in m.retired
            if r.kind == "tls"
            for t in (r.not_before, r.not_after)
            if t is not None and t > now
        ]
        return min(edges, default=None)

    def keys_valid_at(
        self, jurisdiction: str, kind: KeyKind, when: _dt.datetime | int | None
    ) -> tuple[AnyVerifyKey, ...]:
        """The one lookup verifiers use: ``jurisdiction``'s keys of ``kind``
        (envelope, ledger, witness) valid at ``when`` (UTC datetime or Unix ms;
        None: every key it ever held), current first."""
        return self.member(jurisdiction).ring(kind).at(when)

    def jurisdictions(self) -> tuple[str, ...]:
        return tuple(m.jurisdiction for m in self.members)
