"""Logging for a running gateway: one JSON object per line, or a human format.

Owns: the formatters (``JsonFormatter``, ``HumanFormatter``), ``setup_logging``
(what ``gateway serve --log-format`` calls), and the per-RPC log context: the
observing interceptor opens a context for each RPC, the core annotates it
(``annotate(request_id=..., counterparty=..., dataset=...)``) and the
interceptor writes the RPC's single line with every field gathered.

Fields are metadata only. Callers put identifiers, codes, counts and timings
in ``extra=``; never subject ids, record values, tokens or keys. Messages of
errors raised for a caller's input never echo subject ids (see
``gateway.exchange.records``); tests grep the logs for known subject ids.

Stdlib logging throughout, so every module's ``logging.getLogger(...)`` lines
come out in the same format; structured fields ride on ``extra``.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final, TextIO

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD: Final = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))
) | {"message", "asctime", "taskName"}

# Field order in both formats: the ones an operator filters on come first.
FIELD_ORDER: Final = (
    "event",
    "api",
    "port",
    "caller",
    "request_id",
    "counterparty",
    "service_system",
    "dataset",
    "purpose",
    "outcome",
    "code",
    "latency_ms",
)

_RPC: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "rpc_log_fields", default=None
)


# Fields that gather every distinct value instead of keeping the first.
_ACCUMULATE: Final = frozenset({"counterparty"})


@contextmanager
def rpc_context() -> Iterator[dict[str, Any]]:
    """Open the log context of one RPC; yields the dict the core annotates."""
    fields: dict[str, Any] = {}
    token = _RPC.set(fields)
    try:
        yield fields
    finally:
        _RPC.reset(token)


def annotate(**fields: Any) -> None:
    """Add fields to the current RPC's log line (no-op outside an RPC).

    The first value given for a field wins, so an outer call's request id is
    not overwritten by a nested one (e.g. a local statistics part).
    """
    ctx = _RPC.get()
    if ctx is None:
        return
    for key, value in fields.items():
        if value in (None, ""):
            continue
        if key not in ctx:
            ctx[key] = value
        elif key in _ACCUMULATE and str(value) not in str(ctx[key]).split(","):
            ctx[key] = f"{ctx[key]},{value}"  # a federated statistic asks several holders


def current_fields() -> dict[str, Any]:
    ctx = _RPC.get()
    return dict(ctx) if ctx else {}


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    extra = {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
    ordered: dict[str, Any] = {k: extra.pop(k) for k in FIELD_ORDER if k in extra}
    ordered.update(sorted(extra.items()))
    return ordered


def _timestamp(record: logging.LogRecord) -> str:
    when = dt.datetime.fromtimestamp(record.created, dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, message, fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _extra_fields(record)
        out: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": fields.pop("event", None) or "log",
            "message": record.getMessage(),
        }
        out.update({k: _jsonable(v) for k, v in fields.items()})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


class HumanFormatter(logging.Formatter):
    """``2026-12-01T21:00:00.123Z INFO gateway.rpc  message  key=value ...`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _extra_fields(record)
        message = record.getMessage().replace("\r", "\\r").replace("\n", "\\n")
        parts = [_timestamp(record), f"{record.levelname:<7}", record.name, message]
        line = " ".join(parts)
        if fields:
            line += "  " + " ".join(f"{k}={v}" for k, v in fields.items())
        if record.exc_info:
            # Keep one record on one line: the traceback's newlines are escaped.
            line += " | " + self.formatException(record.exc_info).replace("\n", " | ")
        return line


LOG_FORMATS: Final = ("json", "human", "auto")


def setup_logging(level: str = "INFO", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure the root logger once for a gateway process.

    ``auto`` writes the human format to a terminal and JSON lines otherwise
    (journald, files, log shippers).
    """
    stream = stream if stream is not None else sys.stderr
    if fmt == "auto":
        fmt = "human" if stream.isatty() else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else HumanFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Python warnings become records too, so every line on stderr is one format.
    logging.captureWarnings(True)
