"""`gateway keygen`: make a gateway's signing, ledger, sealing, pseudonym and TLS keys.

Owns: the command line only; key generation and file layout are
``gateway.identity``. Prints public fingerprints, never private material.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gateway.crypto import DEFAULT_SUITE, SUITE_NAMES
from gateway.errors import InvalidArgument
from gateway.identity import (
    PUBLIC_FILE,
    ROTATABLE,
    finish_rotation,
    generate_keys,
    key_id,
    load_keys,
    rotate_keys,
    tls_server_name,
)


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "keygen",
        help="make a gateway's signing, ledger, sealing and TLS keys (intl or gm suite)",
        description="Write signing.key, ledger.key, seal.key, pseudonym.key, tls.key (all 0600), "
        "tls.crt and public.json (the member descriptor for the federation authority) to --out.",
    )
    p.add_argument("--jurisdiction", help="six-digit code, e.g. 110000 (not with --rotate)")
    p.add_argument("--name", help="gateway name, e.g. 北京市大数据中心 (not with --rotate)")
    p.add_argument("--out", required=True, type=Path, help="key directory to create")
    p.add_argument(
        "--rotate",
        metavar="KINDS",
        help="replace these keys in the existing --out directory (comma-separated of "
        f"{', '.join(ROTATABLE)}, or all); old private files are kept as *.retired-<time>; "
        "send the new public.json to the federation authority (federation rotate-keys). "
        "Run again after a crash midway: it finishes that rotation",
    )
    p.add_argument(
        "--host",
        action="append",
        default=None,
        metavar="H",
        help="extra DNS name for the TLS certificate (repeatable; default localhost)",
    )
    p.add_argument(
        "--suite",
        choices=SUITE_NAMES,
        default=DEFAULT_SUITE,
        help="the federation's cipher suite: intl (Ed25519/X25519) or gm (SM2)",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing keys")
    p.set_defaults(func=_keygen)


def _keygen(args: argparse.Namespace) -> int:
    if args.rotate:
        kinds = list(ROTATABLE) if args.rotate == "all" else args.rotate.split(",")
        finished = finish_rotation(args.out)
        if finished is not None:
            # A rotation a crash interrupted: completed, and nothing more rotated
            # (its public.json was never sent; run again to rotate once more).
            keys = load_keys(args.out)
            print(
                f"finished the interrupted rotation of {', '.join(finished)} of "
                f"{keys.jurisdiction} in {args.out} (nothing else rotated)"
            )
        else:
            keys = rotate_keys(args.out, [k.strip() for k in kinds if k.strip()])
            print(f"rotated {', '.join(kinds)} of {keys.jurisdiction} in {args.out}")
    else:
        if not args.jurisdiction or not args.name:
            raise InvalidArgument("keygen: give --jurisdiction and --name (or --rotate KINDS)")
        hosts = tuple(args.host) if args.host else ("localhost",)
        keys = generate_keys(
            args.out,
            args.jurisdiction,
            args.name,
            hostnames=hosts,
            force=args.force,
            suite=args.suite,
        )
    sig, seal = ("SM2", "SM2") if keys.suite.name == "gm" else ("Ed25519", "X25519")
    rows = [
        (f"signing key ({sig})", keys.signing.verify_key.encode(), key_id(keys.signing.verify_key)),
        (f"ledger key ({sig})", keys.ledger.verify_key.encode(), key_id(keys.ledger.verify_key)),
        (
            f"witness key ({sig})",
            keys.cosigner.verify_key.encode(),
            key_id(keys.cosigner.verify_key),
        ),
        (f"seal key ({seal})", keys.seal.public_key.encode(), key_id(keys.seal.public_key)),
    ]
    print(f"wrote keys for {keys.jurisdiction} {keys.name} to {args.out}")
    for label, value, kid in rows:
        print(f"  {label:<24} {value}  id {kid}")
    print(f"  {'TLS certificate SHA-256':<24} {keys.tls_fingerprint}")
    print(f"  {'TLS server name':<24} {tls_server_name(keys.jurisdiction)}")
    print(f"  {'public descriptor':<24} {Path(args.out) / PUBLIC_FILE}")
    return 0
