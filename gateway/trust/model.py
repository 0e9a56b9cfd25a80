"""Trust-bundle values: the federation's members and the bundle that lists them.

Owns: the frozen, validated ``Member`` and ``TrustBundle`` values and the rules
every value obeys on construction (identifiers, endpoint syntax, one PEM
certificate whose SHA-256 matches the pinned fingerprint, distinct keys,
members unique in every identifying attribute, a validity window).

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

from gateway import identifiers
from gateway.crypto import SealPublicKey, VerifyKey, cert_fingerprint, digest_equal
from gateway.errors import InvalidArgument, NotFound
from gateway.identity import PublicDescriptor, check_name, key_id

_ENDPOINT = re.compile(
    r"^(?:"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]{2,45}\]"
    r"):([0-9]{1,5})$"
)
_ORIGIN = re.compile(r"^[\x21-\x7e]{1,255}$")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def is_sha256_hex(value: object) -> bool:
    """64 lowercase hex digits (a certificate fingerprint or a bundle digest)."""
    return isinstance(value, str) and _SHA256_HEX.fullmatch(value) is not None


def default_origin(jurisdiction: str) -> str:
    """Default ledger checkpoint origin of a member."""
    return f"{jurisdiction}.gateway.dataexchange.cn/ledger"


def authority_key_id(key: VerifyKey) -> str:
    """The DSSE ``keyid`` of the authority: first 16 hex digits of SHA-256(public key)."""
    return key_id(key)


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

    def __post_init__(self) -> None:
        identifiers.jurisdiction(self.jurisdiction, "jurisdiction code")
        check_name(self.name)
        m = _ENDPOINT.fullmatch(self.endpoint) if isinstance(self.endpoint, str) else None
        if m is None or not 1 <= int(m.group(1)) <= 65535:
            raise InvalidArgument.expected("endpoint", "host:port with port 1-65535", self.endpoint)
        if not isinstance(self.signing_key, VerifyKey) or not isinstance(
            self.ledger_key, VerifyKey
        ):
            raise InvalidArgument("signing_key and ledger_key must be Ed25519 public keys")
        if not isinstance(self.seal_key, SealPublicKey):
            raise InvalidArgument("seal_key must be an X25519 public key")
        if digest_equal(self.signing_key.raw, self.ledger_key.raw):
            raise InvalidArgument("signing_key and ledger_key must be different keys")
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
        )

    def to_json(self) -> dict[str, Any]:
        return {
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
    digest: str  # hex SHA-256 of the signed payload bytes

    def __post_init__(self) -> None:
        check_name(self.federation)
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
