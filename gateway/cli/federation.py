"""`gateway federation ...`: the federation authority's trust bundle commands.

Owns: the command line only (init, add-member, remove-member, renew, show);
signing, verification and file formats are ``gateway.trust``. Every change
verifies the current bundle with the authority's key first and writes a new
signed bundle with version + 1.
"""

from __future__ import annotations

import argparse
import datetime as _dt
from pathlib import Path
from typing import Any

from gateway.crypto import DEFAULT_SUITE, SUITE_NAMES, AnySigningKey
from gateway.errors import InvalidArgument
from gateway.identity import key_id, load_public_descriptor
from gateway.limits import DEFAULT_LIMITS
from gateway.trust import (
    AUTHORITY_PUB_FILE,
    Member,
    TrustBundle,
    authority_key_id,
    init_federation,
    read_authority_key,
    read_authority_signing_key,
    read_bundle_for_reissue,
    reissue_bundle_file,
    rotated_member,
    verify_bundle,
    with_member,
    without_member,
)
from gateway.trust.files import read_limited


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "federation", help="manage the federation trust bundle (authority side)"
    )
    fsub = p.add_subparsers(dest="federation_command", metavar="SUBCOMMAND", required=True)

    init = fsub.add_parser(
        "init", help="create the authority key and an empty signed bundle (version 1)"
    )
    init.add_argument("--out", required=True, type=Path, help="folder for authority.* and bundle")
    init.add_argument("--name", required=True, help="federation name, e.g. 京津冀数据共享联盟")
    init.add_argument("--validity-days", type=int, default=365)
    init.add_argument(
        "--suite",
        choices=SUITE_NAMES,
        default=DEFAULT_SUITE,
        help="cipher suite of every key and message, fixed for the federation's life: "
        "intl (Ed25519, X25519, ChaCha20-Poly1305, SHA-256) or gm (国密 SM2, SM3, SM4)",
    )
    init.add_argument(
        "--sm2-user-id",
        default="",
        metavar="ID",
        help="gm only: the SM2 signer id in every member key's Z value "
        "(default the standard 1234567812345678)",
    )
    init.add_argument("--force", action="store_true", help="overwrite an existing federation")
    init.set_defaults(func=_init)

    add = fsub.add_parser("add-member", help="add a member; writes a new signed bundle")
    _bundle_args(add)
    add.add_argument(
        "--public", required=True, type=Path, help="the member's public.json (or its key dir)"
    )
    add.add_argument(
        "--endpoint",
        required=True,
        action="append",
        help="HOST:PORT of the member's peer port; repeat (or comma-separate) for the "
        "replicas of one gateway",
    )
    add.add_argument("--datasets", default="", help="comma-separated dataset codes offered")
    add.add_argument("--origin", default=None, help="ledger checkpoint origin (default derived)")
    add.add_argument("--replace", action="store_true", help="replace an existing member")
    add.set_defaults(func=_add_member)

    rot = fsub.add_parser(
        "rotate-keys",
        help="replace a member's keys with those of its new public.json; the old ones stay "
        "listed with a validity interval",
    )
    _bundle_args(rot)
    rot.add_argument(
        "--public", required=True, type=Path, help="the member's new public.json (or key dir)"
    )
    rot.add_argument(
        "--overlap-hours",
        type=float,
        default=24.0,
        help="how long peers still accept the old envelope key and TLS certificate, and "
        "the old ledger and witness keys for new signatures (default 24)",
    )
    rot.set_defaults(func=_rotate_keys)

    rm = fsub.add_parser("remove-member", help="remove a member; writes a new signed bundle")
    _bundle_args(rm)
    rm.add_argument("--jurisdiction", required=True)
    rm.set_defaults(func=_remove_member)

    renew = fsub.add_parser("renew", help="re-sign the same members with a new expiry")
    _bundle_args(renew)
    renew.set_defaults(func=_renew)

    show = fsub.add_parser("show", help="verify a bundle and print it")
    show.add_argument("--bundle", required=True, type=Path)
    show.add_argument(
        "--authority",
        type=Path,
        default=None,
        help=f"authority public key file (default: {AUTHORITY_PUB_FILE} next to the bundle)",
    )
    show.set_defaults(func=_show)


def _bundle_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", required=True, type=Path, help="bundle.json to update in place")
    p.add_argument("--authority-key", required=True, type=Path, help="authority.key")
    p.add_argument("--validity-days", type=int, default=365)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def _init(args: argparse.Namespace) -> int:
    pub, path = init_federation(
        args.out,
        args.name,
        validity_days=args.validity_days,
        force=args.force,
        suite=args.suite,
        sm2_user_id=args.sm2_user_id,
    )
    print(
        f"created federation {args.name} (suite {args.suite}): "
        f"authority key id {authority_key_id(pub)}"
    )
    print(f"  bundle version 1 (no members): {path}")
    print(
        f"  distribute {Path(args.out) / AUTHORITY_PUB_FILE} to every gateway; "
        "keep authority.key offline"
    )
    return 0


def _current(args: argparse.Namespace) -> tuple[AnySigningKey, TrustBundle]:
    authority = read_authority_signing_key(args.authority_key)
    return authority, read_bundle_for_reissue(args.bundle, authority.verify_key)


def _add_member(args: argparse.Namespace) -> int:
    public_path: Path = args.public
    desc = load_public_descriptor(public_path)
    datasets = tuple(d.strip() for d in args.datasets.split(",") if d.strip())
    endpoints = tuple(e.strip() for value in args.endpoint for e in value.split(",") if e.strip())
    member = Member.from_descriptor(
        desc,
        endpoints[0] if endpoints else "",
        datasets,
        origin=args.origin,
        source=str(public_path),
        endpoints=endpoints,
    )
    authority, current = _current(args)
    members = with_member(current, member, replace=args.replace)
    new = reissue_bundle_file(args.bundle, authority, members, args.validity_days, _now())
    print(
        f"added {member.jurisdiction} {member.name} at {', '.join(member.endpoints)}; "
        f"bundle version {new.version}, {len(new.members)} members"
    )
    return 0


def _rotate_keys(args: argparse.Namespace) -> int:
    public_path: Path = args.public
    desc = load_public_descriptor(public_path)
    if args.overlap_hours < 0:
        raise InvalidArgument.expected("--overlap-hours", ">= 0", args.overlap_hours)
    authority, current = _current(args)
    now = _now()
    member, kinds = rotated_member(
        current.member(desc.jurisdiction),
        desc,
        now,
        _dt.timedelta(hours=args.overlap_hours),
        source=str(public_path),
    )
    members = with_member(current, member, replace=True)
    new = reissue_bundle_file(args.bundle, authority, members, args.validity_days, now)
    until = now + _dt.timedelta(hours=args.overlap_hours)
    print(
        f"rotated {', '.join(kinds)} of {member.jurisdiction}; old keys valid until "
        f"{until.strftime('%Y-%m-%dT%H:%M:%SZ')} (and for verifying what they signed before); "
        f"bundle version {new.version}"
    )
    return 0


def _remove_member(args: argparse.Namespace) -> int:
    authority, current = _current(args)
    members = without_member(current, args.jurisdiction)
    new = reissue_bundle_file(args.bundle, authority, members, args.validity_days, _now())
    print(f"removed {args.jurisdiction}; bundle version {new.version}, {len(new.members)} members")
    return 0


def _renew(args: argparse.Namespace) -> int:
    authority, _current_bundle = _current(args)
    new = reissue_bundle_file(args.bundle, authority, None, args.validity_days, _now())
    print(f"renewed; bundle version {new.version}, expires {new.expires_at.isoformat()}")
    return 0


def _show(args: argparse.Namespace) -> int:
    # The bundle is read first, so a wrong --bundle is named as such (not as a
    # missing authority.pub next to it).
    data = read_limited(args.bundle, DEFAULT_LIMITS.max_bundle_bytes, "trust bundle")
    authority_path = args.authority or args.bundle.parent / AUTHORITY_PUB_FILE
    authority = read_authority_key(authority_path)
    b = verify_bundle(data, authority, _now())
    print(f"federation {b.federation}")
    print(f"  suite       {b.suite}")
    if b.suite == "gm":
        print(f"  SM2 user id {b.sm2_user_id or '1234567812345678 (default)'}")
    print(f"  version     {b.version}")
    print(f"  issued at   {b.issued_at.isoformat()}")
    print(f"  expires at  {b.expires_at.isoformat()}")
    print(f"  authority   key id {authority_key_id(authority)} (signature verified)")
    print(f"  digest      {b.digest}")
    print(f"  members     {len(b.members)}")
    for m in b.members:
        print(f"  - {m.jurisdiction} {m.name}")
        print(f"      endpoint  {', '.join(m.endpoints)}")
        print(f"      datasets  {', '.join(m.datasets) or '(none)'}")
        print(f"      origin    {m.origin}")
        print(
            f"      signing   id {key_id(m.signing_key)}  ledger id {key_id(m.ledger_key)}  "
            f"seal id {key_id(m.seal_key)}"
        )
        print(f"      witness   id {key_id(m.cosigner_key)}")
        print(f"      TLS       sha256 {m.tls_fingerprint}")
        for r in m.retired:
            since = f"from {r.not_before.isoformat()} " if r.not_before else ""
            print(f"      retired   {r.kind:<8} {since}until {r.not_after.isoformat()}")
    return 0
