"""The ``gateway`` command. Each subcommand group lives in its own module.

Owns: argument parsing and turning GatewayError, and an OSError on a file the user
named, into a one-line message and exit status 2 (1 for verification failures, so
scripts can tell them apart).
Does not own: any behaviour; every command calls into the core.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

# gRPC core logs every failed TLS handshake (a load balancer's probe, a port
# scan) at INFO on stderr, in its own format. Before grpc is first imported:
# keep its errors only, unless the operator asks for more (GRPC_VERBOSITY=INFO).
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from gateway.errors import GatewayError, VerificationFailed

# Subcommand modules, each with ``register(subparsers) -> None``. A command's
# handler is stored as ``func`` and returns an exit status.
_MODULES = (
    "gateway.cli.keys",
    "gateway.cli.federation",
    "gateway.cli.serve",
    "gateway.cli.services",
    "gateway.cli.demo",
    "gateway.cli.policy",
    "gateway.cli.ledger",
    "gateway.cli.audit",
    "gateway.cli.stats",
    "gateway.cli.storage",
    "gateway.cli.call",
    "gateway.cli.backup",
)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Cross-jurisdiction data-exchange gateway: signed, encrypted, "
        "policy-checked, differentially private, verifiably ledgered.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except VerificationFailed as exc:
        print(f"gateway: verification FAILED: {exc}", file=sys.stderr)
        return 1
    except GatewayError as exc:
        print(f"gateway: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # A file the user named is missing, a folder, unreadable or unwritable: a mistake
        # to fix, said in one line naming the file (never a traceback).
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"gateway: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
