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

    [[service_systems]]
    id = "beijing-housing-fund"
    token_sha256 = "9f86d0..."   # hex SHA-256 of the bearer token (the token itself is never stored)

    [ledger]
    checkpoint_every_entries = 64
    checkpoint_every_seconds = 30
    witness_every_seconds = 30

    [limits]                     # optional; any field of gateway.limits.Limits
    replay_window_seconds = 300
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.errors import PolicyFileError
from gateway.identifiers import Code, JurisdictionCode, ServiceSystemId
from gateway.limits import Limits

_HOSTPORT = r"^[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}$"
_HEX64 = r"^[0-9a-f]{64}$"


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


class ServiceSystem(_Model):
    id: ServiceSystemId
    # One or both credentials.
    token_sha256: Annotated[str, Field(pattern=_HEX64)] | None = None
    cert_fingerprint: Annotated[str, Field(pattern=_HEX64)] | None = None

    @model_validator(mode="after")
    def _one_credential(self) -> ServiceSystem:
        if not (self.token_sha256 or self.cert_fingerprint):
            raise ValueError(f"service system {self.id}: give token_sha256 or cert_fingerprint")
        return self


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
