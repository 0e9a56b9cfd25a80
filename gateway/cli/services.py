"""``gateway service-system add|list``: register the local systems allowed to call.

A service system gets either a bearer token (printed once; only its SHA-256 is
stored in gateway.toml) or a TLS client certificate issued by this gateway's
own key (its fingerprint is stored). A running gateway picks up new
registrations on SIGHUP.
"""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path
from typing import Any

from gateway import crypto, identifiers
from gateway.config import load_config
from gateway.errors import InvalidArgument
from gateway.identity import load_keys, write_file_atomic


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "service-system", help="register local service systems (tokens or client certificates)"
    )
    s = p.add_subparsers(dest="action", required=True)
    add = s.add_parser("add", help="register a service system and print/write its credential")
    add.add_argument("--config", type=Path, required=True, help="the gateway's gateway.toml")
    add.add_argument("--id", required=True, help="service system id, e.g. hebei-housing-fund")
    kind = add.add_mutually_exclusive_group(required=True)
    kind.add_argument("--token", action="store_true", help="issue a bearer token (printed once)")
    kind.add_argument(
        "--cert-out", type=Path, help="issue a TLS client certificate into this folder"
    )
    add.set_defaults(func=_add)
    ls = s.add_parser("list", help="list registered service systems")
    ls.add_argument("--config", type=Path, required=True)
    ls.set_defaults(func=_list)


def _add(args: argparse.Namespace) -> int:
    identifiers.service_system(args.id, "--id")
    config = load_config(args.config)
    if config.service_system(args.id) is not None:
        raise InvalidArgument(f"service system {args.id} is already registered in {args.config}")
    if args.token:
        token = "svc_" + secrets.token_urlsafe(32)
        line = f'token_sha256 = "{crypto.sha256_hex(token.encode())}"'
        shown = (
            f"bearer token (shown once, store it in the service system's secret store):\n{token}"
        )
    else:
        keys = load_keys(config.key_dir, limits=config.limits)
        ident = crypto.issue_client_certificate(keys.tls, f"{args.id}@{config.jurisdiction}")
        out: Path = args.cert_out
        out.mkdir(parents=True, exist_ok=True)
        write_file_atomic(out / "client.key", ident.key_pem, 0o600)
        write_file_atomic(out / "client.crt", ident.cert_pem, 0o644)
        write_file_atomic(out / "gateway-ca.crt", keys.tls.cert_pem, 0o644)
        line = f'cert_fingerprint = "{crypto.cert_fingerprint(ident.cert_pem)}"'
        shown = (
            f"client certificate written to {out}/client.crt (key client.key, trust gateway-ca.crt)"
        )
    with args.config.open("a", encoding="utf-8") as f:
        f.write(f'\n[[service_systems]]\nid = "{args.id}"\n{line}\n')
    os.utime(args.config)
    load_config(args.config)  # the file must still be valid
    print(f"registered {args.id} in {args.config}; {shown}")
    print("a running gateway picks this up on SIGHUP (kill -HUP <pid>)")
    return 0


def _list(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    for s in config.service_systems:
        kinds = [
            k for k, v in (("token", s.token_sha256), ("client-cert", s.cert_fingerprint)) if v
        ]
        print(f"{s.id}\t{', '.join(kinds)}")
    return 0
