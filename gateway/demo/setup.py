"""Lay out a working multi-jurisdiction federation in one folder.

Owns: the demo cluster's layout (federation authority, one folder per gateway
with keys, config, seeded data source, service-system tokens), produced with
the same operator commands a bureau runs (``gateway keygen``,
``gateway federation init`` / ``add-member``). The demo and the end-to-end
tests both use it.

Does not own: running gateways (``gateway.server.app``), the demo's story
(``gateway.demo.run``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import secrets
import shutil
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import yaml

from gateway import crypto
from gateway.catalogue import load_catalogue
from gateway.demo.seed import seed_database
from gateway.demo.sqlseed import seed_sql_database
from gateway.errors import ConfigurationError
from gateway.identity import PUBLIC_FILE, generate_keys, load_public_descriptor
from gateway.trust import (
    AUTHORITY_KEY_FILE,
    BUNDLE_FILE,
    Member,
    init_federation,
    read_authority_signing_key,
    read_bundle_for_reissue,
    reissue_bundle_file,
    with_member,
)

REPO_POLICIES = Path(__file__).resolve().parents[2] / "policies"

FEDERATION_NAME = "京津冀数据共享联盟"


@dataclass(frozen=True)
class MemberSpec:
    code: str
    name: str
    service_systems: tuple[str, ...]  # roles exchange and statistics
    auditor: str = ""  # a service system with the role audit only (reads the ledger)
    portal: str = ""  # a citizen portal with the role subject_access only


CLUSTER: tuple[MemberSpec, ...] = (
    MemberSpec(
        "110000",
        "北京市大数据中心",
        ("beijing-housing-fund", "beijing-procurement", "beijing-planning"),
        "beijing-audit",
    ),
    MemberSpec(
        "120000", "天津市数据局", ("tianjin-procurement", "tianjin-planning"), "tianjin-audit"
    ),
    MemberSpec(
        "130000",
        "河北省数据和政务服务局",
        ("hebei-housing-fund", "hebei-planning"),
        "hebei-audit",
        "hebei-citizen-portal",
    ),
)


@dataclass(frozen=True)
class GatewaySite:
    code: str
    name: str
    root: Path
    config: Path
    peer_port: int
    service_port: int
    service_mtls_port: int
    tokens: dict[str, str]  # service system id -> bearer token (demo clients only)
    data_source: Path
    ops_port: int = 0  # operations listener (/metrics, /healthz, /readyz)

    @property
    def ops_url(self) -> str:
        return f"http://127.0.0.1:{self.ops_port}"

    @property
    def service_address(self) -> str:
        return f"127.0.0.1:{self.service_port}"

    @property
    def tls_cert(self) -> Path:
        return self.root / "keys" / "tls.crt"


@dataclass(frozen=True)
class Federation:
    root: Path
    authority_key: Path
    authority_pub: Path
    bundle: Path
    sites: dict[str, GatewaySite]

    def authority_pub_key(self) -> crypto.AnyVerifyKey:
        from gateway.trust import read_authority_key

        return read_authority_key(self.authority_pub)


_ports_lock = threading.Lock()
_ports_handed: set[int] = set()
_ports_rng = random.Random()  # noqa: S311 (spreads test ports; protects nothing)


def _ephemeral_start() -> int:
    """Where the kernel starts picking ports for outgoing connections."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text(encoding="ascii")
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


PORT_RANGE_ENV = "GATEWAY_DEMO_PORT_RANGE"


def port_range() -> tuple[int, int]:
    """Where ``free_port`` picks: ``GATEWAY_DEMO_PORT_RANGE`` ("LO-HI", set by a test
    runner to give each of its parallel workers, and their subprocesses, ports of
    their own), else from 10000 to just below the kernel's ephemeral range."""
    text = os.environ.get(PORT_RANGE_ENV, "")
    if text:
        lo, sep, hi = text.partition("-")
        if not (sep and lo.isdigit() and hi.isdigit() and 1024 <= int(lo) < int(hi) <= 65535):
            raise ConfigurationError(
                f"{PORT_RANGE_ENV}={text[:40]!r}: expected LO-HI, 1024 <= LO < HI <= 65535"
            )
        return int(lo), int(hi)
    return 10000, _ephemeral_start() - 1


def free_port() -> int:
    """A loopback port to listen on, never handed out twice by this process. It is
    taken below the kernel's ephemeral range: a port picked there could be taken
    by any outgoing connection (a database client, a gRPC channel) before the
    gateway binds it."""
    lo, top = port_range()
    with _ports_lock:
        if top > lo + 2000:
            for _ in range(200):
                port = _ports_rng.randint(lo, top)
                if port in _ports_handed:
                    continue
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    try:
                        s.bind(("127.0.0.1", port))
                    except OSError:
                        continue
                _ports_handed.add(port)
                return port
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        _ports_handed.add(port)
        return port


def _add_member(fed: Path, keys: Path, endpoint: str, datasets: tuple[str, ...]) -> None:
    """What ``gateway federation add-member`` does, through the library."""
    member = Member.from_descriptor(load_public_descriptor(keys / PUBLIC_FILE), endpoint, datasets)
    authority = read_authority_signing_key(fed / AUTHORITY_KEY_FILE)
    current = read_bundle_for_reissue(fed / BUNDLE_FILE, authority.verify_key)
    reissue_bundle_file(fed / BUNDLE_FILE, authority, with_member(current, member), 365)


def build_federation(
    root: Path,
    *,
    rows: int = 2000,
    ports: dict[str, tuple[int, int]] | None = None,
    policies: Path = REPO_POLICIES,
    members: tuple[MemberSpec, ...] = CLUSTER,
    seed: int = 20260101,
    suite: str = "intl",
    sm2_user_id: str = "",
    source_url: str | None = None,
    source_schema: str = "gateway_demo",
) -> Federation:
    """Create keys (of cipher suite ``suite``), the signed bundle, configs and data under ``root``.

    With ``source_url`` (a SQLAlchemy URL), each holder's registers are also
    written to that database, one schema (or MySQL database) per jurisdiction
    named ``<source_schema>_<code>``, and the gateway serves them from there:
    its policies are copied under its folder with ``source:`` mappings added
    to the catalogue."""
    root.mkdir(parents=True, exist_ok=True)
    fed = root / "federation"
    init_federation(fed, FEDERATION_NAME, validity_days=365, suite=suite, sm2_user_id=sm2_user_id)
    sites: dict[str, GatewaySite] = {}
    for i, spec in enumerate(members):
        site = root / spec.code
        keys = site / "keys"
        generate_keys(keys, spec.code, spec.name, hostnames=("localhost",), suite=suite)
        peer_port, service_port = (ports or {}).get(spec.code) or (free_port(), free_port())
        mtls_port = free_port()
        ops_port = free_port()
        catalogue = load_catalogue(policies / spec.code)
        data = site / "data"
        counts = seed_database(data / "source.sqlite", catalogue, rows=rows, seed=seed + i)
        holder_policies = policies / spec.code
        if source_url is not None:
            holder_policies = _with_sources(
                policies / spec.code,
                site / "policies",
                seed_sql_database(
                    source_url, f"{source_schema}_{spec.code}", catalogue, rows=rows, seed=seed + i
                ),
            )
        _add_member(
            fed,
            keys,
            f"127.0.0.1:{peer_port}",
            tuple(d.code for d in catalogue.datasets if d.code in counts),
        )
        systems = (*spec.service_systems, *(s for s in (spec.auditor, spec.portal) if s))
        tokens = {sid: "svc_" + secrets.token_urlsafe(24) for sid in systems}
        token_file = site / "service-tokens.json"
        token_file.write_text(json.dumps(tokens, indent=2))
        os.chmod(token_file, 0o600)
        config = site / "gateway.toml"
        config.write_text(
            _config_text(
                spec,
                peer_port,
                service_port,
                mtls_port,
                holder_policies,
                fed,
                tokens,
                ops_port,
            )
        )
        sites[spec.code] = GatewaySite(
            spec.code,
            spec.name,
            site,
            config,
            peer_port,
            service_port,
            mtls_port,
            tokens,
            data / "source.sqlite",
            ops_port,
        )
    return Federation(
        root, fed / "authority.key", fed / "authority.pub", fed / "bundle.json", sites
    )


def _with_sources(src: Path, dst: Path, mappings: dict[str, dict[str, object]]) -> Path:
    """Copy a holder's policy folder, adding each dataset's ``source:`` mapping."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    path = dst / "catalogue.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    for ds in doc["datasets"]:
        if ds["code"] in mappings:
            ds["source"] = mappings[ds["code"]]
    path.write_text(
        "# Generated by the demo: the registers are read from a database (source:).\n"
        + yaml.safe_dump(doc, allow_unicode=True, sort_keys=False),
        encoding="utf-8",
    )
    return dst


def _config_text(
    spec: MemberSpec,
    peer_port: int,
    service_port: int,
    mtls_port: int,
    policies: Path,
    fed: Path,
    tokens: dict[str, str],
    ops_port: int = 0,
) -> str:
    def roles(sid: str) -> str:
        wanted = (
            ["audit"]
            if sid == spec.auditor
            else ["subject_access"]
            if sid == spec.portal
            else ["exchange", "statistics"]
        )
        return "[" + ", ".join(f'"{r}"' for r in wanted) + "]"

    services = "\n".join(
        f'[[service_systems]]\nid = "{sid}"\nroles = {roles(sid)}\n'
        f'token_sha256 = "{crypto.sha256_hex(tok.encode())}"\n'
        for sid, tok in tokens.items()
    )
    return f"""# Gateway of {spec.name} ({spec.code}). Paths are relative to this file.
jurisdiction = "{spec.code}"
name = "{spec.name}"
key_dir = "keys"
data_dir = "data"
data_source = "data/source.sqlite"
policies = "{policies.resolve()}"
trust_bundle = "{(fed / "bundle.json").resolve()}"
authority_key = "{(fed / "authority.pub").resolve()}"

[listen]
peer = "127.0.0.1:{peer_port}"
service = "127.0.0.1:{service_port}"
service_mtls = "127.0.0.1:{mtls_port}"
ops = "127.0.0.1:{ops_port}"       # plain HTTP /metrics, /healthz, /readyz

[ledger]
checkpoint_every_entries = 16
checkpoint_every_seconds = 5
witness_every_seconds = 5

{services}"""


def use_storage(config: Path, url: str, schema: str, pool_size: int = 16) -> None:
    """Point a gateway.toml at a PostgreSQL database (and schema) for its state."""
    with config.open("a", encoding="utf-8") as f:
        f.write(f'\n[storage]\nurl = "{url}"\nschema = "{schema}"\npool_size = {pool_size}\n')


def add_replicas(
    fed: Federation, code: str, url: str, schema: str, count: int = 2
) -> list[GatewaySite]:
    """Run gateway ``code`` as ``count`` replicas on one PostgreSQL schema.

    Each replica gets its own config (same keys, data source and database; its
    own ports); the bundle is re-signed listing every replica's peer endpoint,
    as ``gateway federation add-member --replace --endpoint A,B`` does.
    Returns the replicas' sites; the first is the original site.
    """
    site = fed.sites[code]
    base = site.config.read_text(encoding="utf-8")
    if "\n[storage]\n" not in base:
        use_storage(site.config, url, schema)
        base = site.config.read_text(encoding="utf-8")
    replicas = [site]
    for n in range(1, count):
        peer, service, mtls, ops = free_port(), free_port(), free_port(), free_port()
        text = (
            base.replace(f"127.0.0.1:{site.peer_port}", f"127.0.0.1:{peer}")
            .replace(f"127.0.0.1:{site.service_port}", f"127.0.0.1:{service}")
            .replace(f"127.0.0.1:{site.service_mtls_port}", f"127.0.0.1:{mtls}")
            .replace(f"127.0.0.1:{site.ops_port}", f"127.0.0.1:{ops}")
        )
        config = site.root / f"gateway-replica{n}.toml"
        config.write_text(text, encoding="utf-8")
        replicas.append(
            GatewaySite(
                code,
                site.name,
                site.root,
                config,
                peer,
                service,
                mtls,
                site.tokens,
                site.data_source,
                ops,
            )
        )
    authority = read_authority_signing_key(fed.authority_key)
    current = read_bundle_for_reissue(fed.bundle, authority.verify_key)
    endpoints = tuple(f"127.0.0.1:{r.peer_port}" for r in replicas)
    relisted = dataclasses.replace(current.member(code), endpoint=endpoints[0], endpoints=endpoints)
    reissue_bundle_file(fed.bundle, authority, with_member(current, relisted, replace=True), 365)
    return replicas
