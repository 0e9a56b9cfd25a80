"""``gateway serve --config gateway.toml``: run one gateway until SIGTERM/SIGINT.

SIGHUP reloads the policy set, the trust bundle and the registered service
systems (a bad set or an older, expired or unsigned bundle is refused and the
one in force is kept). SIGUSR1 issues a ledger checkpoint now and has every
peer cosign it.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

log = logging.getLogger("gateway.serve")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "serve", help="run a gateway (peer port: mutual TLS; service port: TLS + credentials)"
    )
    p.add_argument("--config", type=Path, required=True, help="path to gateway.toml")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument(
        "--log-format",
        default="auto",
        choices=["auto", "json", "human"],
        help="json: one JSON object per line (default when stderr is not a terminal); "
        "human: one readable line per record (default on a terminal)",
    )
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from gateway.ops.logs import setup_logging
    from gateway.server.app import from_config_file

    setup_logging(args.log_level, args.log_format)
    gw = from_config_file(args.config)
    ports = gw.start()
    print(
        f"gateway {gw.me} ({gw.config.name}) serving: peer :{ports.peer} service :{ports.service}"
        + (f" ops :{ports.ops}" if ports.ops else ""),
        flush=True,
    )
    done = threading.Event()

    def stop(sig: int, _frame: FrameType | None) -> None:
        log.info("%s: stopping", signal.Signals(sig).name, extra={"event": "signal", "signal": sig})
        done.set()

    def reload(_sig: int, _frame: FrameType | None) -> None:
        threading.Thread(target=gw.reload_all, name="sighup-reload", daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def witness(_sig: int, _frame: FrameType | None) -> None:
        threading.Thread(
            target=gw.checkpoint_and_witness, name="sigusr1-witness", daemon=True
        ).start()

    signal.signal(signal.SIGHUP, reload)
    signal.signal(signal.SIGUSR1, witness)
    # Wake regularly: CPython runs signal handlers only when the main thread
    # runs, and a bare wait() would hold SIGHUP/SIGUSR1 until the next signal.
    while not done.wait(0.2):
        pass
    gw.stop(grace=2.0)
    return 0
