"""Log formatters: one record is one line in both formats, fields survive, context is per RPC."""

from __future__ import annotations

import io
import json
import logging

from gateway.ops.logs import HumanFormatter, JsonFormatter, annotate, current_fields, rpc_context


def _record(exc: bool = False) -> logging.LogRecord:
    logger = logging.getLogger("test.formats")
    try:
        if exc:
            raise ValueError("boom\nsecond line")
        exc_info = None
    except ValueError:
        import sys

        exc_info = sys.exc_info()
    return logger.makeRecord(
        "test.formats", logging.WARNING, __file__, 1, "multi\nline %s", ("message",), exc_info,
        extra={"event": "rpc", "request_id": "r-1", "latency_ms": 1.5},
    )  # fmt: skip


def test_json_formatter_writes_one_object_per_line_even_with_a_traceback() -> None:
    out = JsonFormatter().format(_record(exc=True))
    assert "\n" not in out
    obj = json.loads(out)
    assert obj["event"] == "rpc" and obj["request_id"] == "r-1" and obj["latency_ms"] == 1.5
    assert obj["level"] == "warning" and obj["ts"].endswith("Z")
    assert "ValueError" in obj["exception"]


def test_human_formatter_keeps_a_record_with_a_traceback_on_one_line() -> None:
    out = HumanFormatter().format(_record(exc=True))
    assert "\n" not in out and "multi\\nline message" in out
    assert "request_id=r-1" in out and "ValueError" in out and " | " in out


def test_setup_logging_auto_picks_json_when_not_a_terminal() -> None:
    from gateway.ops.logs import setup_logging

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    buf = io.StringIO()
    try:
        setup_logging("INFO", "auto", stream=buf)
        logging.getLogger("gateway.test").info("hello", extra={"event": "x", "dataset": "d"})
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    obj = json.loads(buf.getvalue())
    assert obj["event"] == "x" and obj["dataset"] == "d" and obj["message"] == "hello"


def test_rpc_context_is_per_rpc_and_first_value_wins_except_counterparty_accumulates() -> None:
    annotate(request_id="outside")  # no RPC: ignored
    assert current_fields() == {}
    with rpc_context():
        annotate(request_id="a", counterparty="110000")
        annotate(request_id="b", counterparty="120000")
        annotate(counterparty="110000")
        assert current_fields() == {"request_id": "a", "counterparty": "110000,120000"}
    assert current_fields() == {}
