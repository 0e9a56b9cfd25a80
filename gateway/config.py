"""A gateway's configuration file (TOML), validated on load.

Owns: the schema of ``gateway.toml`` and resolving its relative paths against
the file's folder. Does not own: key material (``gateway.identity``), the trust
bundle (``gateway.trust``), policies (``gateway.policy``).

Example::

    jurisdiction = "110000"
    name = "北京市大数据中心"
    key_dir = "keys"
    data_dir = "data"
    data_source = "data/source.sqlite"
    policies = "../../policies/110000"
    trust_bundle = "../federation/bundle.json"
    authority_key = "../federation/authority.pub"

    [listen]
    peer = "127.0.0.1:7101"          # mutual TLS, federation members only
    service = "127.0.0.1:7201"       # TLS + bearer token of a registered service system
    service_mtls = "127.0.0.1:7301"  # optional: TLS + client certificate issued by this gateway
    ops = "127.0.0.1:9464"           # plain HTTP /metrics /healthz /readyz (default; "off")

    [[service_systems]]
    id = "beijing-housing-fund"
    roles = ["exchange"]         # exchange, statistics, audit, subject_access (default: the first two)
    [[service_systems.credentials]]
    kind = "token"               # or "cert" (sha256 = the client certificate's fingerprint)
    sha256 = "9f86d0..."         # hex SHA-256 of the bearer token (the token itself is never stored)
    not_after = 2027-12-01T00:00:00Z   # optional expiry; revoked_at = ... revokes

    [ledger]
    checkpoint_every_entries = 64
    checkpoint_every_seconds = 30
    witness_every_seconds = 30

    [limits]                     # optional; any field of gateway.limits.Limits
    replay_window_seconds = 300
"""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.errors import PolicyFileError
from gateway.identifiers import Code, JurisdictionCode, ServiceSystemId
from gateway.limits import Limits

_HOSTPORT = r"^[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}$"
_HEX64 = r"^[0-9a-f]{64}$"
DEFAULT_OPS_ADDRESS = "127.0.0.1:9464"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Listen(_Model):
    # Peer port: mutual TLS, federation members only.
    peer: Annotated[str, Field(pattern=_HOSTPORT)]
    # Service port: TLS; callers present a registered bearer token.
    service: Annotated[str, Field(pattern=_HOSTPORT)]
    # Optional service port requiring a client certificate issued by this
    # gateway (`gateway service-system add --cert-out`); same API.
    service_mtls: Annotated[str, Field(pattern=_HOSTPORT)] | None = None
    # Operations listener: plain HTTP /metrics, /healthz, /readyz. Keep it on
    # loopback or a management network; "off" disables it.
    ops: Annotated[str, Field(pattern=_HOSTPORT + "|^off$")] = DEFAULT_OPS_ADDRESS


# What a service system may do on the service port (``gateway.server.access``
# maps each method to the role it needs). Deny by default: ``audit`` (reading
# the ledger) and ``subject_access`` are granted only when listed.
ServiceRole = Literal["exchange", "statistics", "audit", "subject_access"]
SERVICE_ROLES: tuple[ServiceRole, ...] = ("exchange", "statistics", "audit", "subject_access")
DEFAULT_SERVICE_ROLES: tuple[ServiceRole, ...] = ("exchange", "statistics")


class Credential(_Model):
    """One credential of a service system: a bearer token's SHA-256 or a client
    certificate's fingerprint, with its validity. Several may be valid at once
    (the overlap of a rotation)."""

    kind: Literal["token", "cert"]
    sha256: Annotated[str, Field(pattern=_HEX64)]
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    revoked_at: dt.datetime | None = None

    @model_validator(mode="after")
    def _aware(self) -> Credential:
        for name in ("not_before", "not_after", "revoked_at"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"credential {name}: give a UTC offset (e.g. ...Z)")
        return self

    def valid_at(self, now: dt.datetime) -> bool:
        if self.revoked_at is not None and now >= self.revoked_at:
            return False
        if self.not_before is not None and now < self.not_before:
            return False
        return self.not_after is None or now < self.not_after

    def state(self, now: dt.datetime) -> str:
        if self.revoked_at is not None and now >= self.revoked_at:
            return "revoked"
        if self.not_before is not None and now < self.not_before:
            return "not yet valid"
        if self.not_after is not None and now >= self.not_after:
            return "expired"
        return "valid"


class ServiceSystem(_Model):
    id: ServiceSystemId
    roles: tuple[ServiceRole, ...] = DEFAULT_SERVICE_ROLES
    # Shorthand for one credential that never expires (older configs).
    token_sha256: Annotated[str, Field(pattern=_HEX64)] | None = None
    cert_fingerprint: Annotated[str, Field(pattern=_HEX64)] | None = None
    credentials: tuple[Credential, ...] = ()

    @model_validator(mode="after")
    def _one_credential(self) -> ServiceSystem:
        if not (self.token_sha256 or self.cert_fingerprint or self.credentials):
            raise ValueError(
                f"service system {self.id}: give token_sha256, cert_fingerprint or credentials"
            )
        if len(set(self.roles)) != len(self.roles):
            raise ValueError(f"service system {self.id}: roles repeat")
        return self

    def all_credentials(self) -> tuple[Credential, ...]:
        legacy = [
            Credential(kind=k, sha256=v)  # type: ignore[arg-type]
            for k, v in (("token", self.token_sha256), ("cert", self.cert_fingerprint))
            if v
        ]
        return (*legacy, *self.credentials)


class LedgerSettings(_Model):
    checkpoint_every_entries: Annotated[int, Field(ge=1)] = 64
    checkpoint_every_seconds: Annotated[float, Field(gt=0)] = 30.0
    witness_every_seconds: Annotated[float, Field(gt=0)] = 30.0


class GatewayConfig(_Model):
    jurisdiction: JurisdictionCode
    name: str
    key_dir: Path
    data_dir: Path
    data_source: Path
    policies: Path
    trust_bundle: Path
    authority_key: Path
    listen: Listen
    service_systems: tuple[ServiceSystem, ...] = ()
    ledger: LedgerSettings = LedgerSettings()
    limits: Limits = Limits()
    # Datasets this gateway serves; default: every dataset in its catalogue.
    datasets: tuple[Code, ...] | None = None
    # The file this was read from (set by load_config, never by the file): a
    # running gateway re-reads its service systems from it when it changes.
    config_path: Path | None = None

    @model_validator(mode="after")
    def _unique_services(self) -> GatewayConfig:
        ids = [s.id for s in self.service_systems]
        if len(set(ids)) != len(ids):
            raise ValueError("service_systems: ids repeat")
        return self

    def service_system(self, sid: str) -> ServiceSystem | None:
        for s in self.service_systems:
            if s.id == sid:
                return s
        return None


_PATH_FIELDS = ("key_dir", "data_dir", "data_source", "policies", "trust_bundle", "authority_key")


def load_config(path: Path) -> GatewayConfig:
    """Read and validate ``path``; relative paths resolve against its folder."""
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyFileError(f"{path}: cannot read: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PolicyFileError(f"{path}: not valid TOML: {exc}") from exc
    base = path.resolve().parent
    raw["config_path"] = path.resolve()
    for key in _PATH_FIELDS:
        if isinstance(raw.get(key), str):
            raw[key] = (base / raw[key]).resolve()
    if isinstance(raw.get("limits"), dict):
        try:
            raw["limits"] = Limits(**raw["limits"])
        except TypeError as exc:
            raise PolicyFileError(f"{path}: [limits]: {exc}") from exc
    try:
        return GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise PolicyFileError(f"{path}: field {field}: {first['msg']}") from exc
