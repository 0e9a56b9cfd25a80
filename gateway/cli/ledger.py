"""`gateway ledger ...` commands (placeholder until implemented)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("ledger", help="(not yet implemented)")
    p.set_defaults(func=lambda _args: 2)
