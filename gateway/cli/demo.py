"""``gateway demo``: the three-jurisdiction demo on loopback."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gateway.crypto import DEFAULT_SUITE, SUITE_NAMES


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo", help="run the Beijing–Tianjin–Hebei demo on loopback (three real gateways)"
    )
    p.add_argument("--dir", type=Path, default=Path("demo-run"), help="working folder (recreated)")
    p.add_argument("--rows", type=int, default=2000, help="synthetic rows per dataset")
    p.add_argument(
        "--suite",
        choices=SUITE_NAMES,
        default=DEFAULT_SUITE,
        help="the federation's cipher suite: intl or gm (国密 SM2/SM3/SM4)",
    )
    p.add_argument(
        "--source-url",
        help="keep the holders' registers in this database (a SQLAlchemy URL, e.g. "
        "postgresql+psycopg://postgres@127.0.0.1:5432/test or "
        "mysql+pymysql://root@127.0.0.1:3306/test); one schema per jurisdiction, "
        "gateway_demo_<code>, replaced",
    )
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    import gateway.demo.chapters  # noqa: F401  (registers statistics and ledger chapters)
    from gateway.demo.run import run_demo

    return run_demo(
        args.dir.resolve(), rows=args.rows, suite=args.suite, source_url=args.source_url
    )
