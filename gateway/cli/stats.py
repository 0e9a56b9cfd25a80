"""`gateway stats ...`: operator views of privacy budgets and statistics agreements.

Owns: argument parsing and printing for ``gateway stats budget`` (spent and
remaining epsilon per dataset and requester), ``gateway stats spends`` (recent
spend rows) and ``gateway stats check`` (validate a statistics agreement
against its catalogue). Does not own: any accounting (``gateway.stats.budget``)
or validation (``gateway.stats.agreements``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gateway.errors import NotFound


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "stats", help="differentially private statistics: budgets and agreements"
    )
    s = p.add_subparsers(dest="stats_command", metavar="SUBCOMMAND", required=True)

    b = s.add_parser("budget", help="spent and remaining privacy budget per dataset and requester")
    _store_args(b)
    b.add_argument(
        "--policies",
        type=Path,
        help="policies/<code> directory; adds caps and remaining budget from statistics.yaml",
    )
    b.set_defaults(func=_budget)

    sp = s.add_parser(
        "spends", help="most recent spends (one row per release or refusal after reservation)"
    )
    _store_args(sp)
    sp.add_argument("--limit", type=int, default=50)
    sp.set_defaults(func=_spends)

    c = s.add_parser(
        "check", help="validate policies/<code>/statistics.yaml against catalogue.yaml"
    )
    c.add_argument("policies", type=Path, help="policies/<code> directory")
    c.set_defaults(func=_check)


def _store_args(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--db", type=Path, help="budget store (SQLite file)")
    where.add_argument(
        "--config",
        type=Path,
        help="gateway.toml: its configured store (SQLite in data_dir, or [storage] PostgreSQL)",
    )


def _store(args: argparse.Namespace) -> Any:
    if args.config is not None:
        from gateway.config import load_config
        from gateway.storage.backend import BUDGET_FILE, open_budget_store

        config = load_config(args.config)
        if config.storage.url is None and not (config.data_dir / BUDGET_FILE).is_file():
            raise NotFound(f"no budget store at {config.data_dir / BUDGET_FILE}")
        return open_budget_store(config)
    from gateway.stats.budget import SqliteBudgetStore

    path: Path = args.db
    if not path.is_file():
        raise NotFound(f"no budget store at {path}")
    return SqliteBudgetStore(path)


def _budget(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from gateway.stats.budget import Caps, UsageRow, requester_key

    store = _store(args)
    caps: dict[str, Caps] = {}
    # Every requester the agreement names, spent or not: before its first release a
    # requester has its whole budget left, and the operator must see it (the
    # spends table alone lists nothing on a new gateway).
    named: list[tuple[str, str]] = []
    if args.policies is not None:
        from gateway.stats.agreements import load_agreement

        for t in load_agreement(args.policies).agreement.datasets:
            b = t.budget
            caps[t.dataset] = Caps(b.epsilon_per_requester, b.epsilon_total)
            named += [
                (t.dataset, requester_key(r.jurisdiction, s))
                for r in t.requesters
                for s in r.service_systems
            ]
    where = args.db or args.config
    table = Table(title=f"Privacy budget spent ({where})", title_justify="left")
    for col in ("dataset", "requester", "releases", "epsilon spent", "delta spent"):
        table.add_column(
            col, justify="right" if col != "dataset" and col != "requester" else "left"
        )
    if caps:
        table.add_column("requester left", justify="right")
        table.add_column("dataset left", justify="right")
    totals = store.totals()
    spent = {(r.dataset, r.requester) for r in totals}
    unspent = [UsageRow(d, r, 0.0, 0.0, 0) for d, r in dict.fromkeys(named) if (d, r) not in spent]
    for row in sorted([*totals, *unspent], key=lambda r: (r.dataset, r.requester)):
        cells = [
            row.dataset,
            row.requester,
            str(row.releases),
            f"{row.epsilon:g}",
            f"{row.delta:g}",
        ]
        if caps:
            cap = caps.get(row.dataset)
            if cap is None:
                cells += ["-", "-"]
            else:
                req_left, tot_left = store.usage(row.dataset, row.requester).remaining(cap)
                cells += [
                    f"{req_left:g} of {cap.epsilon_per_requester:g}",
                    f"{tot_left:g} of {cap.epsilon_total:g}",
                ]
        table.add_row(*cells)
    Console(width=140).print(table)
    return 0


def _spends(args: argparse.Namespace) -> int:
    store = _store(args)
    for r in store.spends(max(1, min(args.limit, 100_000))):
        print(
            f"{r.at_ms}\t{r.dataset}\t{r.requester}\tepsilon={r.epsilon:g}\tdelta={r.delta:g}\t"
            f"{r.status}\t{r.request_id}\t{r.query_digest}"
        )
    return 0


def _check(args: argparse.Namespace) -> int:
    from gateway.catalogue import load_catalogue
    from gateway.stats.agreements import STATISTICS_FILE, validate_file

    problems = validate_file(args.policies / STATISTICS_FILE, load_catalogue(args.policies))
    for p in problems:
        print(p)
    if not problems:
        print(f"{args.policies / STATISTICS_FILE}: ok")
    return 2 if problems else 0
