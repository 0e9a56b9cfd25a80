"""The shipped systemd unit starts the real command with options that exist."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

from gateway.cli import build_parser

UNIT = Path(__file__).resolve().parents[2] / "scripts" / "systemd" / "jurisdiction-gateway.service"


def _unit() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(UNIT.read_text())
    return cp


def test_unit_execstart_parses_with_the_gateway_command_line() -> None:
    unit = _unit()
    argv = shlex.split(unit["Service"]["ExecStart"])
    assert argv[0].endswith("/gateway")
    args = build_parser().parse_args(argv[1:])
    assert args.command == "serve" and args.log_format == "json"
    assert str(args.config).endswith("gateway.toml")


def test_unit_reloads_with_sighup_and_keeps_the_data_folder_the_only_writable_path() -> None:
    s = _unit()["Service"]
    assert s["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert s["ProtectSystem"] == "strict" and s["NoNewPrivileges"] == "yes"
    assert s["ReadWritePaths"].endswith("/data") and s["User"] != "root"
