"""`gateway policy ...` commands: check (lint), digest, and a dry-run decide.

Owns: argument parsing and printing for the policy engine. Does not own any
behaviour: ``gateway.policy.lint`` checks, ``gateway.policy.loader`` loads,
``gateway.policy.engine`` decides.

    gateway policy check DIR        lint a holder folder or the whole policies/ tree;
                                    exit 0 if clean, 1 if any error or warning
    gateway policy digest DIR       print the policy-set digest of a holder folder
    gateway policy decide DIR ...   evaluate one request (quota usage taken as 0)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

from gateway.errors import InvalidArgument
from gateway.policy.api import AccessRequest
from gateway.policy.engine import PolicyEngine, system_clock_ms
from gateway.policy.lint import check_path
from gateway.policy.loader import load_policy_set
from gateway.policy.quota import QuotaKey


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "policy", help="sharing agreements: check, digest, dry-run decisions"
    )
    psub = p.add_subparsers(dest="policy_command", metavar="ACTION", required=True)

    c = psub.add_parser("check", help="lint agreement files (a holder folder or policies/)")
    c.add_argument("dir", type=Path)
    c.add_argument("--at", help="check validity as of this ISO date/time (default: now)")
    c.set_defaults(func=_check)

    d = psub.add_parser("digest", help="print the policy-set digest of a holder folder")
    d.add_argument("dir", type=Path)
    d.set_defaults(func=_digest)

    e = psub.add_parser("decide", help="evaluate one request against a holder folder (dry run)")
    e.add_argument("dir", type=Path)
    e.add_argument("--requester", required=True, help="requesting jurisdiction code")
    e.add_argument("--service-system", required=True)
    e.add_argument("--dataset", required=True)
    e.add_argument("--purpose", required=True)
    e.add_argument("--fields", default="", help="comma-separated; empty = all allowed")
    e.add_argument("--subjects", type=int, default=1, help="number of named subjects; 0 = bulk")
    e.add_argument("--at", help="evaluate as of this ISO date/time (default: now)")
    e.set_defaults(func=_decide)


def _at_ms(text: str | None) -> int:
    if not text:
        return system_clock_ms()
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidArgument.expected("--at", "an ISO date or date-time", text) from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone(dt.timedelta(hours=8)))
    return int(when.timestamp() * 1000)


def _check(args: argparse.Namespace) -> int:
    report = check_path(args.dir, now_ms=_at_ms(args.at))
    for problem in report.problems:
        print(f"error: {problem}")
    for h in report.holders:
        errors = sum(1 for f in h.findings if f.level == "error")
        warnings = sum(1 for f in h.findings if f.level == "warning")
        status = "FAILED" if h.failed else "ok"
        digest = f", policy set {h.digest}" if h.digest else ", does not load"
        print(
            f"{h.root}: {status} ({h.agreements} agreement(s), {errors} error(s), "
            f"{warnings} warning(s){digest})"
        )
        for f in h.findings:
            print(f"  {f}")
        for n in h.notes:
            print(f"  note: {n}")
    print("policy check passed" if report.ok else "policy check FAILED")
    return 0 if report.ok else 1


def _digest(args: argparse.Namespace) -> int:
    ps = load_policy_set(args.dir)
    print(ps.digest)
    return 0


class _NoUsage:
    """Quota store for dry runs: nothing used, nothing recorded."""

    def used(self, key: QuotaKey) -> int:
        return 0

    def reading(self, key: QuotaKey) -> int:
        return 0

    def consume(self, key: QuotaKey, count: int, limit: int) -> int:
        return count

    def refund(self, key: QuotaKey, count: int) -> int:
        return 0


def _decide(args: argparse.Namespace) -> int:
    ps = load_policy_set(args.dir)
    at = _at_ms(args.at)
    engine = PolicyEngine(ps, _NoUsage(), os.urandom(32), clock=lambda: at)
    fields = tuple(f.strip() for f in args.fields.split(",") if f.strip())
    req = AccessRequest(
        requester=args.requester,
        service_system=args.service_system,
        holder=ps.holder,
        dataset=args.dataset,
        purpose=args.purpose,
        fields=fields,
        subject_count=args.subjects,
        request_id="dry-run",
        timestamp_ms=at,
    )
    d = engine.decide(req)
    print(f"decision: {'ALLOW' if d.allowed else 'DENY ' + d.error_code}")
    print(f"reason: {d.reason}")
    if d.agreement_id:
        print(f"agreement: {d.agreement_id} sha256:{d.agreement_digest}")
    print(f"policy set: {d.policy_set_digest}")
    for rule in d.fields:
        print(f"  field {rule.name}: {rule.transform}")
    sys.stdout.flush()
    return 0 if d.allowed else 1
