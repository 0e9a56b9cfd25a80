"""``gateway service-system add|rotate|revoke|roles|list``: the local systems allowed to call.

A service system has roles (``exchange``, ``statistics``, ``audit``,
``subject_access``) and one or more credentials: a bearer token (printed
once; only its SHA-256 is stored in gateway.toml) or a TLS client certificate
issued by this gateway's service-system CA (its fingerprint is stored). Each
credential may expire; ``rotate`` issues a new one and lets the old ones run
out after an overlap window (a certificate goes to a new ``--cert-out`` folder:
``client.key``/``client.crt`` already there are never overwritten without
``--force``); ``revoke`` ends one or all at once. The file is
edited in place, comments and layout kept. A running gateway notices the
change at its next call: a revoked or expired credential is refused at once.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import re
import secrets
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, Table

from gateway import crypto, identifiers
from gateway.config import (
    DEFAULT_SERVICE_ROLES,
    SERVICE_ROLES,
    GatewayConfig,
    load_config,
)
from gateway.errors import InvalidArgument, StorageFailure
from gateway.identity import load_service_ca, write_file_atomic


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "service-system",
        help="register local service systems; rotate, revoke and expire their credentials",
    )
    s = p.add_subparsers(dest="action", required=True)

    def credential_args(q: argparse.ArgumentParser) -> None:
        kind = q.add_mutually_exclusive_group(required=True)
        kind.add_argument(
            "--token", action="store_true", help="issue a bearer token (printed once)"
        )
        kind.add_argument(
            "--cert-out", type=Path, help="issue a TLS client certificate into this folder"
        )
        q.add_argument(
            "--force",
            action="store_true",
            help="with --cert-out: write over a client.key and client.crt already in that "
            "folder (by default refused: the credential they hold may still be valid)",
        )
        q.add_argument(
            "--expires-days",
            type=float,
            default=None,
            help="the credential expires after this many days (default: token never, "
            "certificate when the certificate does, 397 days)",
        )

    add = s.add_parser("add", help="register a service system and print/write its credential")
    add.add_argument("--config", type=Path, required=True, help="the gateway's gateway.toml")
    add.add_argument("--id", required=True, help="service system id, e.g. hebei-housing-fund")
    add.add_argument(
        "--roles",
        default=",".join(DEFAULT_SERVICE_ROLES),
        help=f"comma-separated, of {', '.join(SERVICE_ROLES)} (default: %(default)s)",
    )
    credential_args(add)
    add.set_defaults(func=_add)

    rot = s.add_parser(
        "rotate", help="issue a new credential; the current ones stay valid for --overlap-hours"
    )
    rot.add_argument("--config", type=Path, required=True)
    rot.add_argument("--id", required=True)
    rot.add_argument(
        "--overlap-hours",
        type=float,
        default=24.0,
        help="how long the current credentials stay valid (default 24; 0 ends them now)",
    )
    credential_args(rot)
    rot.set_defaults(func=_rotate)

    rev = s.add_parser("revoke", help="revoke a service system's credentials now")
    rev.add_argument("--config", type=Path, required=True)
    rev.add_argument("--id", required=True)
    rev.add_argument(
        "--credential",
        help="only the credential whose SHA-256 starts with this (see `list`); default: all",
    )
    rev.set_defaults(func=_revoke)

    roles = s.add_parser("roles", help="set a service system's roles")
    roles.add_argument("--config", type=Path, required=True)
    roles.add_argument("--id", required=True)
    roles.add_argument(
        "--set", required=True, help=f"comma-separated, of {', '.join(SERVICE_ROLES)}"
    )
    roles.set_defaults(func=_roles)

    ls = s.add_parser("list", help="list registered service systems, roles and credentials")
    ls.add_argument("--config", type=Path, required=True)
    ls.set_defaults(func=_list)


# --------------------------------------------------------------------------
# Editing gateway.toml in place
# --------------------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _parse_roles(text: str) -> list[str]:
    roles = [r.strip() for r in text.split(",") if r.strip()]
    bad = [r for r in roles if r not in SERVICE_ROLES]
    if bad or not roles:
        raise InvalidArgument.expected("roles", " | ".join(SERVICE_ROLES), text)
    if len(set(roles)) != len(roles):
        raise InvalidArgument(f"roles: {text!r} repeats a role")
    return roles


def _check_id(sid: str) -> None:
    identifiers.service_system(sid, "--id")


class _ConfigFile:
    """gateway.toml as a style-preserving document; written back atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.config: GatewayConfig = load_config(path)  # must be valid before we edit it
        try:
            self.doc = tomlkit.parse(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise StorageFailure(f"{path}: cannot read: {exc.strerror}") from exc

    def systems(self) -> AoT:
        aot = self.doc.get("service_systems")
        if aot is None:
            aot = tomlkit.aot()
            self.doc.append("service_systems", aot)
        if not isinstance(aot, AoT):
            raise InvalidArgument(f"{self.path}: service_systems must be an array of tables")
        return aot

    def system(self, sid: str) -> Table:
        for t in self.systems():
            if t.get("id") == sid:
                return self._normalised(t)
        raise InvalidArgument(f"service system {sid} is not registered in {self.path}")

    @staticmethod
    def _normalised(t: Table) -> Table:
        """Turn the one-credential shorthand into the credentials list."""
        if "credentials" not in t:
            t.append("credentials", tomlkit.aot())
        creds = t["credentials"]
        for key, kind in (("token_sha256", "token"), ("cert_fingerprint", "cert")):
            if key in t:
                creds.append(_credential(kind, str(t[key])))
                del t[key]
        return t

    def save(self) -> None:
        # A blank line before each service-system table (tomlkit appends them tight).
        text = re.sub(r"(?<=[^\n])\n(?=\[\[service_systems)", "\n\n", tomlkit.dumps(self.doc))
        try:
            write_file_atomic(self.path, text.encode("utf-8"), self.path.stat().st_mode & 0o777)
        except OSError as exc:
            raise StorageFailure(f"{self.path}: cannot write: {exc.strerror}") from exc
        os.utime(self.path)
        load_config(self.path)  # the file must still be valid


def _credential(
    kind: str,
    sha256: str,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Table:
    t = tomlkit.table()
    t.append("kind", kind)
    t.append("sha256", sha256)
    if not_before is not None:
        t.append("not_before", not_before)
    if not_after is not None:
        t.append("not_after", not_after)
    return t


def _issue(args: argparse.Namespace, config: GatewayConfig, sid: str) -> tuple[Table, str]:
    """A new credential for ``sid`` and the line telling the operator where it is."""
    now = _now()
    days: float | None = args.expires_days
    if days is not None and days <= 0:
        raise InvalidArgument.expected("--expires-days", "a positive number", days)
    if args.token:
        token = "svc_" + secrets.token_urlsafe(32)
        not_after = now + dt.timedelta(days=days) if days is not None else None
        shown = (
            f"bearer token (shown once, store it in the service system's secret store):\n{token}"
        )
        return _credential("token", crypto.sha256_hex(token.encode()), now, not_after), shown
    out: Path = args.cert_out
    # The credential files in that folder may be the one still valid for the overlap
    # (or another system's): never replaced unless asked.
    there = [n for n in ("client.key", "client.crt") if (out / n).exists()]
    if there and not args.force:
        raise InvalidArgument(
            f"{out}: {' and '.join(there)} already there (a credential that may still be "
            "valid): give --cert-out a new folder, or --force to write over them"
        )
    ca = load_service_ca(config.key_dir, config.jurisdiction, create=True, limits=config.limits)
    cert_days = max(1, math.ceil(days)) if days is not None else 397
    ident = crypto.issue_client_certificate(
        ca, f"{sid}@{config.jurisdiction}", now=now, days=cert_days
    )
    out.mkdir(parents=True, exist_ok=True)
    write_file_atomic(out / "client.key", ident.key_pem, 0o600)
    write_file_atomic(out / "client.crt", ident.cert_pem, 0o644)
    keys_dir = config.key_dir
    write_file_atomic(out / "gateway.crt", (keys_dir / "tls.crt").read_bytes(), 0o644)
    # The certificate lasts whole days; the credential ends when asked, if sooner.
    not_after = crypto.cert_not_after(ident.cert_pem)
    if days is not None:
        not_after = min(not_after, now + dt.timedelta(days=days))
    cred = _credential("cert", crypto.cert_fingerprint(ident.cert_pem), now, not_after)
    shown = (
        f"client certificate written to {out}/client.crt (key client.key; "
        "trust gateway.crt for the gateway's server certificate)"
    )
    return cred, shown


def _done(args: argparse.Namespace, what: str, issued: str = "") -> int:
    print(f"{what} in {args.config}; a running gateway applies this at its next call")
    if issued:
        print(issued)
    return 0


def _add(args: argparse.Namespace) -> int:
    _check_id(args.id)
    roles = _parse_roles(args.roles)
    f = _ConfigFile(args.config)
    if f.config.service_system(args.id) is not None:
        raise InvalidArgument(f"service system {args.id} is already registered in {args.config}")
    cred, shown = _issue(args, f.config, args.id)
    t = tomlkit.table()
    t.append("id", args.id)
    t.append("roles", roles)
    creds = tomlkit.aot()
    creds.append(cred)
    t.append("credentials", creds)
    f.systems().append(t)
    f.save()
    return _done(args, f"registered {args.id} with roles {', '.join(roles)}", shown)


def _rotate(args: argparse.Namespace) -> int:
    _check_id(args.id)
    if args.overlap_hours < 0:
        raise InvalidArgument.expected("--overlap-hours", ">= 0", args.overlap_hours)
    f = _ConfigFile(args.config)
    t = f.system(args.id)
    now = _now()
    ends = now + dt.timedelta(hours=args.overlap_hours)
    kept = 0
    for c in t["credentials"]:
        if "revoked_at" in c:
            continue
        current = c.get("not_after")
        if current is None or current > ends:
            c["not_after"] = ends
            kept += 1
    cred, shown = _issue(args, f.config, args.id)
    t["credentials"].append(cred)
    f.save()
    return _done(
        args,
        f"rotated {args.id}: {kept} earlier credential(s) valid until {ends.isoformat()}",
        f"new {shown}",
    )


def _revoke(args: argparse.Namespace) -> int:
    _check_id(args.id)
    f = _ConfigFile(args.config)
    t = f.system(args.id)
    now = _now()
    prefix = (args.credential or "").lower()
    if prefix and not re.fullmatch(r"[0-9a-f]{4,64}", prefix):
        raise InvalidArgument.expected("--credential", "4 to 64 hex digits of a SHA-256", prefix)
    hits = [c for c in t["credentials"] if str(c["sha256"]).startswith(prefix)]
    if not hits:
        raise InvalidArgument(f"service system {args.id} has no credential starting {prefix}")
    for c in hits:
        if "revoked_at" not in c:
            c["revoked_at"] = now
    f.save()
    return _done(args, f"revoked {len(hits)} credential(s) of {args.id}")


def _roles(args: argparse.Namespace) -> int:
    _check_id(args.id)
    roles = _parse_roles(args.set)
    f = _ConfigFile(args.config)
    t = f.system(args.id)
    t["roles"] = roles
    f.save()
    return _done(args, f"{args.id} now has roles {', '.join(roles)}")


def _list(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    now = dt.datetime.now(dt.UTC)
    for s in config.service_systems:
        print(f"{s.id}\troles: {', '.join(s.roles)}")
        for c in s.all_credentials():
            until = f" until {c.not_after.isoformat()}" if c.not_after else ""
            print(f"  {c.kind}\t{c.sha256[:16]}\t{c.state(now)}{until}")
    return 0
